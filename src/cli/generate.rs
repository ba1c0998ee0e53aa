//! `studioize generate`: many options from one prompt.
use super::args::{EmbeddingArgs, LoraArgs, ModelArgs, SamplingArgs};
use super::common::{make_scheduler, slug, step_bar, OutTarget};
use crate::pipelines::request::Param;
use crate::pipelines::sampling::to_rgb8;
use crate::pipelines::text2img::{text_to_image, TextToImage};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub lora: LoraArgs,
    #[command(flatten)]
    pub embedding: EmbeddingArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Image width in pixels (default: the UNet's sample size times the VAE scale factor).
    #[arg(long)]
    pub width: Option<i64>,
    #[arg(long)]
    pub height: Option<i64>,
    /// How many images to make.
    #[arg(long, default_value_t = 1)]
    pub num_images: i64,
    /// Images per batch (default: up to 8). Batch b uses seed + b, so every image stays
    /// reproducible from the seed and index in its metadata.
    #[arg(long)]
    pub batch_size: Option<i64>,
    /// An image file (.png/.jpg/.webp; one image only) or a folder.
    #[arg(long)]
    pub out: PathBuf,
}

/// Images per batch when `--batch-size` is not given.
pub const DEFAULT_BATCH: i64 = 8;

/// `generate`'s flags for request fields: a request is one batch, so its `num_images` is
/// `--batch-size`.
pub fn flag(p: Param) -> String {
    match p {
        Param::NumImages => "--batch-size".into(),
        p => super::flags::flag(p),
    }
}

pub fn run(args: Args) -> Result<()> {
    if args.num_images < 1 {
        bail!("--num-images must be at least 1");
    }
    let batch = match args.batch_size {
        Some(b) if b < 1 => bail!("--batch-size must be at least 1"),
        Some(b) => b.min(args.num_images),
        None => DEFAULT_BATCH.min(args.num_images),
    };
    let batches = (args.num_images + batch - 1) / batch;
    if args.sampling.seed.checked_add(batches as u64 - 1).is_none() {
        bail!(
            "--seed {}: batch {} would use seed {} + {}, past the largest seed {}",
            args.sampling.seed,
            batches,
            args.sampling.seed,
            batches - 1,
            u64::MAX
        );
    }
    let target = OutTarget::parse(&args.out, args.num_images as usize)?;
    let mut sd = args.model.load(None, None)?;
    args.lora.apply(&sd)?;
    let embeddings = crate::pipelines::embedding::params(&args.embedding.apply(&mut sd)?);
    let (mut scheduler, sampler_name) = make_scheduler(&sd, args.sampling.sampler)?;
    let default_side = sd.unet.config().sample_size * sd.vae.scale_factor();
    let s = &args.sampling;
    let bar = step_bar((s.steps as i64 * batches) as u64, "generate");
    let stem = slug(&s.prompt, 40);
    let mut made = 0;
    for b in 0..batches {
        let n = batch.min(args.num_images - b * batch);
        let p = TextToImage {
            prompt: s.prompt.clone(),
            negative_prompt: s.negative_prompt.clone(),
            steps: s.steps,
            guidance: s.guidance,
            seed: s.seed + b as u64,
            width: args.width.unwrap_or(default_side),
            height: args.height.unwrap_or(default_side),
            num_images: n,
        };
        bar.set_message(format!("batch {}/{batches}", b + 1));
        let images = text_to_image(&sd, scheduler.as_mut(), &p, |_, _| bar.inc(1))?;
        let images = to_rgb8(&images)?;
        let params = serde_json::json!({
            "task": "generate", "prompt": p.prompt, "negative_prompt": p.negative_prompt,
            "sampler": sampler_name, "steps": p.steps, "guidance": p.guidance, "seed": p.seed,
            "num_images": n, "width": p.width, "height": p.height,
            "model": args.model.model.to_string_lossy(),
            "config": args.model.files.config.as_ref().map(|c| c.to_string_lossy()), "unet": null,
            "loras": args.lora.params(), "embeddings": embeddings,
            "device": format!("{:?}", sd.device), "precision": format!("{:?}", sd.kind),
            "studioize": env!("CARGO_PKG_VERSION"),
        });
        let written = target.write(Path::new(&stem), p.seed, &images, &params)?;
        made += images.len();
        bar.println(format!(
            "wrote {} file(s), first {}",
            written.len(),
            written[0].display()
        ));
    }
    bar.finish_and_clear();
    eprintln!("generated {made} image(s) into {}", args.out.display());
    Ok(())
}
