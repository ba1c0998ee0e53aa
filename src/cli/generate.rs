//! `studioize generate`: many options from one prompt, or from every prompt of a file
//! (`--prompts`, see `prompt_matrix.rs`).
use super::args::{EmbeddingArgs, LoraArgs, ModelArgs, SamplingArgs};
use super::common::{make_scheduler, slug, step_bar, OutTarget};
use super::prompt_matrix::{self, PromptLine};
use crate::pipelines::request::Param;
use crate::pipelines::sampling::to_rgb8;
use crate::pipelines::text2img::{text_to_image, TextToImage};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
// `--prompt` or `--prompts`, one of them: `--prompt` is not required on its own here (its
// empty default is never used, since clap's group and conflict checks ignore defaults).
#[command(mut_arg("prompt", |a| a.required(false).default_value("").hide_default_value(true)))]
#[command(group(clap::ArgGroup::new("prompt_source").args(["prompt", "prompts"]).required(true)))]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub lora: LoraArgs,
    #[command(flatten)]
    pub embedding: EmbeddingArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// A file of prompts, one a line (UTF-8; blank lines and lines starting with # skipped):
    /// each prompt gets --num-images images from the same --seed, a contact sheet and a row of
    /// OUT/prompts.csv. Instead of --prompt.
    #[arg(long, value_name = "FILE")]
    pub prompts: Option<PathBuf>,
    /// Image width in pixels (default: the UNet's sample size times the VAE scale factor).
    #[arg(long)]
    pub width: Option<i64>,
    #[arg(long)]
    pub height: Option<i64>,
    /// How many images to make (per prompt).
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
    // The prompts: `--prompt` alone (no line number), or a file's (read before the model).
    let prompts = match &args.prompts {
        Some(file) => prompt_matrix::read(file)?,
        None => vec![PromptLine {
            line: 0,
            text: args.sampling.prompt.clone(),
        }],
    };
    let matrix = args.prompts.is_some();
    let target = OutTarget::parse(&args.out, prompts.len() * args.num_images as usize)?;
    if let (Some(file), OutTarget::Folder(dir)) = (&args.prompts, &target) {
        prompt_matrix::check_not_index(file, dir)?;
    } else if matrix {
        bail!(
            "--out {}: --prompts writes a folder (images, a contact sheet per prompt, {}); give a folder",
            args.out.display(),
            prompt_matrix::INDEX
        );
    }
    let mut sd = args.model.load(None, None)?;
    args.lora.apply(&sd)?;
    let embeddings = crate::pipelines::embedding::params(&args.embedding.apply(&mut sd)?);
    let (mut scheduler, sampler_name) = make_scheduler(&sd, args.sampling.sampler)?;
    let default_side = sd.unet.config().sample_size * sd.vae.scale_factor();
    let s = &args.sampling;
    let total = (s.steps as i64 * batches) as u64 * prompts.len() as u64;
    let bar = step_bar(total, "generate");
    let mut index = prompt_matrix::Index::new(&args.out);
    let mut made = 0;
    for (k, prompt) in prompts.iter().enumerate() {
        let stem = match matrix {
            true => prompt.stem(),
            false => slug(&prompt.text, 40),
        };
        // A matrix keeps each prompt's images for its sheet, written after its last batch.
        let (mut images_all, mut paths_all) = (Vec::new(), Vec::new());
        let mut first_params = serde_json::Value::Null;
        for b in 0..batches {
            let n = batch.min(args.num_images - b * batch);
            let p = TextToImage {
                prompt: prompt.text.clone(),
                negative_prompt: s.negative_prompt.clone(),
                steps: s.steps,
                guidance: s.guidance,
                seed: s.seed + b as u64,
                width: args.width.unwrap_or(default_side),
                height: args.height.unwrap_or(default_side),
                num_images: n,
            };
            bar.set_message(match matrix {
                true => format!(
                    "prompt {}/{} (line {}), batch {}/{batches}",
                    k + 1,
                    prompts.len(),
                    prompt.line,
                    b + 1
                ),
                false => format!("batch {}/{batches}", b + 1),
            });
            let images = text_to_image(&sd, scheduler.as_mut(), &p, |_, _| bar.inc(1))?;
            let images = to_rgb8(&images)?;
            let mut params = serde_json::json!({
                "task": "generate", "prompt": p.prompt, "negative_prompt": p.negative_prompt,
                "sampler": sampler_name, "steps": p.steps, "guidance": p.guidance, "seed": p.seed,
                "num_images": n, "width": p.width, "height": p.height,
                "model": args.model.model.to_string_lossy(),
                "config": args.model.files.config.as_ref().map(|c| c.to_string_lossy()), "unet": null,
                "loras": args.lora.params(), "embeddings": embeddings,
                "device": format!("{:?}", sd.device), "precision": format!("{:?}", sd.kind),
                "studioize": env!("CARGO_PKG_VERSION"),
            });
            if let Some(file) = &args.prompts {
                params["prompts_file"] = file.to_string_lossy().into();
                params["prompt_line"] = prompt.line.into();
            }
            let stage = crate::profile::scope("write images");
            let written = if matrix {
                target.write_images(Path::new(&stem), p.seed, &images, &params)?
            } else {
                target.write(Path::new(&stem), p.seed, &images, &params)?
            };
            drop(stage);
            made += images.len();
            bar.println(format!(
                "wrote {} file(s), first {}",
                written.len(),
                written[0].display()
            ));
            if matrix {
                if b == 0 {
                    first_params = params;
                }
                images_all.extend(images);
                paths_all.extend(written);
            }
        }
        if matrix {
            let sheet = prompt_matrix::write_sheet(&args.out, prompt, &images_all, &first_params)?;
            index.add(prompt, &sheet, &paths_all)?;
            bar.println(format!("line {}: sheet {}", prompt.line, sheet.display()));
        }
    }
    bar.finish_and_clear();
    match matrix {
        true => eprintln!(
            "generated {made} image(s) of {} prompt(s) into {} (index: {})",
            prompts.len(),
            args.out.display(),
            args.out.join(prompt_matrix::INDEX).display()
        ),
        false => eprintln!("generated {made} image(s) into {}", args.out.display()),
    }
    Ok(())
}
