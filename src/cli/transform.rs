//! `studioize transform`: img2img over photos (files, folders, globs).
use super::args::{EmbeddingArgs, LoraArgs, ModelArgs, SamplingArgs};
use super::common::{
    check_not_inputs, input_images, make_scheduler, step_bar, unique_stems, OutTarget,
};
use super::flags::{flag, one_line};
use crate::imageio;
use crate::pipelines::img2img::{image_to_image, ImageToImage};
use crate::pipelines::request::Param;
use crate::pipelines::sampling::to_rgb8;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub lora: LoraArgs,
    #[command(flatten)]
    pub embedding: EmbeddingArgs,
    /// A fine-tuned UNet folder (config.json + weights), e.g. runs/x/checkpoints/step-N/unet.
    #[arg(long)]
    pub unet: Option<PathBuf>,
    /// A fine-tuned text-encoder folder, e.g. runs/x/checkpoints/step-N/text_encoder.
    #[arg(long)]
    pub text_encoder: Option<PathBuf>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// How far to move from the photo, in (0, 1].
    #[arg(long, default_value_t = 0.6)]
    pub strength: f64,
    /// Variations per input.
    #[arg(long, default_value_t = 1)]
    pub variations: i64,
    /// Resize so the long side has this many pixels (keeping aspect); sides are then rounded
    /// down to multiples of 8.
    #[arg(long)]
    pub size: Option<u32>,
    /// An image file (one input, one variation) or a folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Input images: files, folders (recursive) or glob patterns.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let p0 = args.sampling.img2img(args.strength, args.variations);
    p0.validate()?;
    let inputs = input_images(&args.inputs)?;
    let target = OutTarget::parse(&args.out, inputs.len() * args.variations.max(1) as usize)?;
    let stems = unique_stems(&inputs);
    let outputs: Vec<PathBuf> = stems
        .iter()
        .flat_map(|s| target.paths(s, p0.seed, args.variations as usize))
        .collect();
    check_not_inputs(&outputs, &inputs)?;
    let existing = outputs.iter().filter(|p| p.exists()).count();
    if existing > 0 {
        eprintln!("note: {existing} existing output file(s) will be replaced");
    }
    let mut sd = args
        .model
        .load(args.unet.clone(), args.text_encoder.clone())?;
    args.lora.apply(&sd)?;
    let embeddings = crate::pipelines::embedding::params(&args.embedding.apply(&mut sd)?);
    let (mut scheduler, sampler_name) = make_scheduler(&sd, args.sampling.sampler)?;
    let per_input = p0.denoising_steps() as u64;
    let bar = step_bar(per_input * inputs.len() as u64, "transform");
    let mut failures: Vec<String> = Vec::new();
    for (k, (input, stem)) in inputs.iter().zip(&stems).enumerate() {
        bar.set_message(format!("image {}/{}", k + 1, inputs.len()));
        let job = Job {
            sd: &sd,
            p: &p0,
            args: &args,
            sampler_name: &sampler_name,
            target: &target,
            bar: &bar,
            embeddings: &embeddings,
        };
        if let Err(e) = job.run(scheduler.as_mut(), input, stem) {
            let e = one_line(&e, flag);
            bar.println(format!("error: {e}"));
            failures.push(e);
        }
    }
    bar.finish_and_clear();
    if let Some(first) = failures.first() {
        bail!(
            "{} of {} input(s) failed (the others were written); first: {first}",
            failures.len(),
            inputs.len()
        );
    }
    eprintln!(
        "transformed {} image(s) into {}",
        inputs.len(),
        args.out.display()
    );
    Ok(())
}

/// What every input of a `transform` run shares.
struct Job<'a> {
    sd: &'a crate::pipelines::StableDiffusion,
    p: &'a ImageToImage,
    args: &'a Args,
    sampler_name: &'a str,
    target: &'a OutTarget,
    bar: &'a indicatif::ProgressBar,
    /// The embeddings' parameters record.
    embeddings: &'a serde_json::Value,
}

impl Job<'_> {
    fn run(
        &self,
        scheduler: &mut dyn crate::schedulers::Scheduler,
        input: &Path,
        stem: &Path,
    ) -> Result<()> {
        let (sd, p, args) = (self.sd, self.p, self.args);
        let stage = crate::profile::scope("read image");
        let img = imageio::read_rgb_upright(input)?;
        let (w, h) = imageio::target_size(img.width(), img.height(), args.size, 8)
            .with_context(|| input.display().to_string())?;
        sd.check_image_budget(w as i64, h as i64, p.variations, Param::Variations)
            .with_context(|| input.display().to_string())?;
        let img = imageio::resize(&img, w, h);
        let x = imageio::to_model_input(&img);
        drop(stage);
        let images = image_to_image(sd, scheduler, p, &x, |_, _| self.bar.inc(1))?;
        let images = to_rgb8(&images)?;
        let params = serde_json::json!({
            "task": "transform", "input": input.to_string_lossy(), "prompt": p.prompt,
            "negative_prompt": p.negative_prompt, "sampler": self.sampler_name, "steps": p.steps,
            "guidance": p.guidance, "seed": p.seed, "strength": p.strength,
            "variations": p.variations, "width": w, "height": h,
            "model": args.model.model.to_string_lossy(),
            "config": args.model.files.config.as_ref().map(|c| c.to_string_lossy()),
            "unet": args.unet.as_ref().map(|c| c.to_string_lossy()),
            "text_encoder": args.text_encoder.as_ref().map(|c| c.to_string_lossy()),
            "loras": args.lora.params(), "embeddings": self.embeddings,
            "device": format!("{:?}", sd.device), "precision": format!("{:?}", sd.kind),
            "studioize": env!("CARGO_PKG_VERSION"),
        });
        crate::profile::time("write images", || {
            self.target.write(stem, p.seed, &images, &params)
        })?;
        Ok(())
    }
}
