//! `studioize lora merge`: a full diffusers folder with LoRAs folded into the base weights
//! (`W += scale * alpha / rank * B A` per adapted layer), which `generate`, diffusers'
//! `from_pretrained` and `studioize export` (one single file for A1111 / ComfyUI) then load
//! like any model. The folder is written into a staging folder and renamed into place.
use super::args::{LoraArgs, ModelArgs, Named};
use crate::device::Precision;
use crate::pipelines::{lora, StableDiffusion};
use crate::pretrain::output::{write_json, Staging};
use crate::weights::{hub, write_safetensors, SaveOptions};
use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Fold LoRAs into a base model and write a full diffusers folder.
    Merge(MergeArgs),
}

#[derive(clap::Args, Debug)]
pub struct MergeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub lora: LoraArgs,
    /// The diffusers folder to write (new or empty).
    #[arg(long)]
    pub out: PathBuf,
    /// Dtype of the written weights (as `export --dtype`).
    #[arg(long, default_value = "fp32", ignore_case = true,
          value_parser = Named::<Precision>::new("precision"))]
    pub save_dtype: Precision,
}

pub fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Merge(a) => merge(a),
    }
}

fn merge(args: MergeArgs) -> Result<()> {
    if args.lora.loras.is_empty() {
        bail!("--lora: give at least one LoRA to merge");
    }
    let staging = Staging::new(&args.out)?;
    let pipeline = hub::Pipeline::StableDiffusion {
        variant: args.model.files.variant.clone(),
    };
    let root = hub::resolve(&args.model.model, &pipeline)?;
    let configs = match (&args.model.files.config, root.is_dir()) {
        (Some(c), _) => c.clone(),
        (None, true) => root.clone(),
        (None, false) => bail!(
            "{}: a single file carries no tokenizer or scheduler; pass --config DIR (a diffusers folder of the same model)",
            root.display()
        ),
    };
    let sd = args.model.load(None, None)?;
    args.lora.apply(&sd)?;
    lora::merge(&sd);
    let kind = args.save_dtype.kind();
    write_model(&sd, &configs, staging.path(), kind)?;
    let record = serde_json::json!({
        "base": args.model.model, "loras": args.lora.params(),
        "save_dtype": args.save_dtype.to_possible_value().map(|v| v.get_name().to_string()),
        "studioize": env!("CARGO_PKG_VERSION"),
    });
    write_json(&staging.path().join("lora_merge.json"), &record)?;
    let out = staging.finish()?;
    eprintln!(
        "merged {} LoRA(s) into {}",
        args.lora.loras.len(),
        out.display()
    );
    Ok(())
}

/// The model's weights (merged) and the base folder's configs, tokenizer and scheduler.
fn write_model(sd: &StableDiffusion, configs: &Path, dir: &Path, kind: tch::Kind) -> Result<()> {
    let opts = SaveOptions::pt(Some(kind));
    let parts = [
        ("unet", "diffusion_pytorch_model.safetensors", &sd.unet_vs),
        ("text_encoder", "model.safetensors", &sd.text_encoder_vs),
        ("vae", "diffusion_pytorch_model.safetensors", &sd.vae_vs),
    ];
    for (name, file, vs) in parts {
        let folder = dir.join(name);
        std::fs::create_dir_all(&folder)
            .with_context(|| format!("{}: cannot create", folder.display()))?;
        copy(
            &configs.join(name).join("config.json"),
            &folder.join("config.json"),
        )?;
        let mut tensors: Vec<_> = vs.variables().into_iter().collect();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        write_safetensors(&folder.join(file), &tensors, &opts)?;
    }
    copy(
        &configs.join("model_index.json"),
        &dir.join("model_index.json"),
    )?;
    for sub in ["tokenizer", "scheduler"] {
        let from = configs.join(sub);
        let entries = std::fs::read_dir(&from)
            .with_context(|| format!("{}: cannot read the base model's {sub}", from.display()))?;
        std::fs::create_dir_all(dir.join(sub))?;
        for e in entries {
            let p = e
                .with_context(|| format!("{}: cannot read", from.display()))?
                .path();
            if p.is_file() {
                copy(&p, &dir.join(sub).join(p.file_name().expect("a file name")))?;
            }
        }
    }
    Ok(())
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    let bytes = std::fs::read(from).with_context(|| format!("{}: cannot read", from.display()))?;
    crate::fsutil::write_atomic(to, &bytes)
}
