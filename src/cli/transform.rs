//! `studioize transform`: img2img over photos (files, folders, globs).
use super::common::{make_scheduler, step_bar, ModelArgs, OutTarget, SamplingArgs};
use crate::imageio;
use crate::pipelines::img2img::{image_to_image, ImageToImage};
use crate::pipelines::sampling::to_rgb8;
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
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
    pub inputs: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    let p0 = ImageToImage {
        prompt: args.sampling.prompt.clone(),
        negative_prompt: args.sampling.negative_prompt.clone(),
        steps: args.sampling.steps,
        guidance: args.sampling.guidance,
        seed: args.sampling.seed,
        strength: args.strength,
        variations: args.variations,
    };
    p0.validate()?;
    let inputs = imageio::collect_inputs(&args.inputs)?;
    if inputs.is_empty() {
        bail!("no input images found in {}", args.inputs.join(", "));
    }
    let target = OutTarget::parse(&args.out, inputs.len() * args.variations.max(1) as usize)?;
    let sd = args
        .model
        .load(args.unet.clone(), args.text_encoder.clone())?;
    let (mut scheduler, sampler_name) = make_scheduler(&sd, args.sampling.sampler.as_deref())?;
    let per_input = ((args.sampling.steps as f64 * args.strength).floor() as u64)
        .clamp(1, args.sampling.steps as u64);
    let bar = step_bar(per_input * inputs.len() as u64, "transform");
    let mut failures: Vec<String> = Vec::new();
    for (k, input) in inputs.iter().enumerate() {
        bar.set_message(format!("image {}/{}", k + 1, inputs.len()));
        if let Err(e) = transform_one(
            &sd,
            scheduler.as_mut(),
            &p0,
            input,
            &args,
            &sampler_name,
            &target,
            &bar,
        ) {
            bar.println(format!("error: {e:#}"));
            failures.push(format!("{e:#}"));
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

#[allow(clippy::too_many_arguments)]
fn transform_one(
    sd: &crate::pipelines::StableDiffusion,
    scheduler: &mut dyn crate::schedulers::Scheduler,
    p: &ImageToImage,
    input: &Path,
    args: &Args,
    sampler_name: &str,
    target: &OutTarget,
    bar: &indicatif::ProgressBar,
) -> Result<()> {
    let img = imageio::read_rgb_upright(input)?;
    let (w, h) = imageio::target_size(img.width(), img.height(), args.size, 8)
        .map_err(|e| anyhow::anyhow!("{}: {e}", input.display()))?;
    let img = imageio::resize(&img, w, h);
    let x = imageio::to_model_input(&img);
    let images = image_to_image(sd, scheduler, p, &x, |_, _| bar.inc(1))?;
    let images = to_rgb8(&images)?;
    let params = serde_json::json!({
        "task": "transform", "input": input, "prompt": p.prompt, "negative_prompt": p.negative_prompt,
        "sampler": sampler_name, "steps": p.steps, "guidance": p.guidance, "seed": p.seed,
        "strength": p.strength, "variations": p.variations, "width": w, "height": h,
        "model": args.model.model, "config": args.model.config, "unet": args.unet,
        "text_encoder": args.text_encoder,
        "device": format!("{:?}", sd.device), "precision": format!("{:?}", sd.kind),
        "studioize": env!("CARGO_PKG_VERSION"),
    });
    let stem = input
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("image");
    target.write(stem, p.seed, &images, &params)?;
    Ok(())
}
