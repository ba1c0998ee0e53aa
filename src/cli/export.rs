//! `studioize export MODEL --out model.safetensors [--dtype fp16] [--unet DIR]
//! [--text-encoder DIR]`: one original single-file checkpoint (CompVis/LDM names) for A1111,
//! ComfyUI and diffusers' `from_single_file`.
//!
//! MODEL is a diffusers folder, a single-file checkpoint (with `--config DIR`), or a training
//! checkpoint folder (`runs/x/checkpoints/step-N`): its `unet/` and, when present,
//! `text_encoder/` replace those of the run's base model, read from the run's `config.toml`
//! (`[model] base`, `config`, `variant`) as `compare` does (the checkpoint's `unet_ema/`, if
//! any, is taken only when named with `--unet`). `--unet` / `--text-encoder` replace components
//! explicitly (over a checkpoint's own).
//!
//! The file holds `model.diffusion_model.*`, `first_stage_model.*` and
//! `cond_stage_model.transformer.text_model.*` and nothing else (see
//! [`crate::weights::compvis::plan_export`] for the names). What the consumers were checked to
//! need (their sources, read through the search tools):
//! - ComfyUI (`comfy/model_detection.py`, `supported_models.py`) finds the UNet by the
//!   `model.diffusion_model.input_blocks.0.0.weight` key and derives its config from key shapes
//!   (model channels, transformer depths, `context_dim` from `attn2.to_k`, linear vs conv
//!   `proj_in`); SD 1.x is `context_dim` 768 with 320 channels. Its SD 1.x CLIP loader moves
//!   `cond_stage_model.transformer.*` under `text_model.` if needed and accepts a missing
//!   `position_ids`; the VAE is LDM's `AttnBlock` with 1x1 conv projections.
//! - A1111 (`modules/sd_models_config.py`) picks the YAML config from keys
//!   (`cond_stage_model.model.*` means SD 2, `input_blocks.0.0.weight` with 9 / 8 input channels
//!   means inpainting / pix2pix, else v1-inference.yaml) and loads with
//!   `load_state_dict(strict=False)` (`modules/sd_models.py`).
//! - Neither reads the noise-schedule buffers (`betas`, `alphas_cumprod`, ...): ComfyUI builds
//!   its schedule from the model type, A1111's LatentDiffusion registers them from the YAML
//!   (SD 1.x's scaled-linear 0.00085..0.012, the schedule of SD 1.x's `scheduler_config.json`).
//!   So they are not written; `position_ids` neither.
//!
//! `--dtype` defaults to fp16, as distributed A1111 / ComfyUI checkpoints usually are (half the
//! size; both UIs, and diffusers, load fp16 files and cast to their working precision). fp32
//! keeps the weights bit for bit; a value beyond fp16's range is an error, not an infinity.
//!
//! The output goes through a temporary file renamed into place, tensor by tensor from the
//! memory-mapped inputs (one tensor in memory at a time), with a progress bar.
use super::args::{ModelFiles, Named};
use crate::device::Precision;
use crate::models::unet::UNetConfig;
use crate::models::vae::VaeConfig;
use crate::weights::component_files;
use crate::weights::compvis::{
    export_data_bytes, plan_export, split_refs, write_export, Components, LazyFiles, TensorRef,
    UNetLayout, VaeLayout,
};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A diffusers folder, a single-file .safetensors (with --config) or a training checkpoint
    /// folder (runs/x/checkpoints/step-N).
    pub model: PathBuf,
    /// The single file to write (.safetensors).
    #[arg(long)]
    pub out: PathBuf,
    /// The dtype of the written tensors.
    #[arg(long, default_value = "fp16", ignore_case = true,
          value_parser = Named::<Precision>::new("precision"))]
    pub dtype: Precision,
    /// A UNet folder (config.json + weights, e.g. a checkpoint's unet/ or unet_ema/) that
    /// replaces the model's.
    #[arg(long)]
    pub unet: Option<PathBuf>,
    /// A text-encoder folder (config.json + model.safetensors) that replaces the model's.
    #[arg(long)]
    pub text_encoder: Option<PathBuf>,
    #[command(flatten)]
    pub files: ModelFiles,
}

/// Where the base model's networks are.
#[derive(Debug)]
enum Base {
    Folder(PathBuf),
    SingleFile { file: PathBuf, config_dir: PathBuf },
}

impl Base {
    /// The folder with the components' configs.
    fn config_root(&self) -> &Path {
        match self {
            Base::Folder(root) => root,
            Base::SingleFile { config_dir, .. } => config_dir,
        }
    }
}

/// MODEL and the flags resolved: the base model and the component folders replacing its own.
#[derive(Debug)]
struct Sources {
    base: Base,
    variant: Option<String>,
    unet: Option<PathBuf>,
    text_encoder: Option<PathBuf>,
}

/// Stems of the weight files in a component folder.
const UNET_STEM: &str = "diffusion_pytorch_model";
const TEXT_STEM: &str = "model";

fn resolve(args: &Args) -> Result<Sources> {
    let m = &args.model;
    let (base, config, variant, mut unet, mut text_encoder) = if m.is_dir() {
        if m.join("model_index.json").is_file() {
            (m.clone(), None, None, None, None)
        } else if m.join("unet").join("config.json").is_file() {
            let run = m.parent().and_then(Path::parent).unwrap_or(Path::new("."));
            let toml = run.join(crate::monitor::run::CONFIG_TOML);
            if !toml.is_file() {
                bail!(
                    "{}: a training checkpoint, but {} is missing (the base model is read from its \
                     [model] base); pass the base model as MODEL and {} as --unet",
                    m.display(),
                    toml.display(),
                    m.join("unet").display()
                );
            }
            let (base, config, variant) =
                super::compare::run_model(run).with_context(|| format!("{}", m.display()))?;
            let te = m.join("text_encoder");
            (
                base,
                config,
                variant,
                Some(m.join("unet")),
                te.is_dir().then_some(te),
            )
        } else {
            bail!(
                "{}: not a model (no model_index.json, no unet/config.json); expected a \
                 diffusers folder, a single-file .safetensors with --config, or a training \
                 checkpoint folder (runs/x/checkpoints/step-N)",
                m.display()
            );
        }
    } else if m.is_file() {
        (m.clone(), None, None, None, None)
    } else {
        bail!("{}: no such file or folder", m.display());
    };
    unet = args.unet.clone().or(unet);
    text_encoder = args.text_encoder.clone().or(text_encoder);
    let config = args.files.config.clone().or(config);
    let base = if base.is_dir() {
        check_model_index(&base)?;
        Base::Folder(base)
    } else if base.is_file() {
        let is_safetensors = base
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
        if !is_safetensors {
            bail!(
                "{}: not a .safetensors file (pickle checkpoints are not read, because \
                 unpickling can run code; convert it to safetensors first)",
                base.display()
            );
        }
        let config_dir = config.with_context(|| {
            format!(
                "{}: a single-file checkpoint carries no configs; pass --config DIR, a \
                 diffusers-layout folder of the same model",
                base.display()
            )
        })?;
        Base::SingleFile {
            file: base,
            config_dir,
        }
    } else {
        bail!("{}: base model: no such file or folder", base.display());
    };
    Ok(Sources {
        base,
        variant: args.files.variant.clone().or(variant),
        unet,
        text_encoder,
    })
}

/// A diffusers folder must be a Stable Diffusion 1.x pipeline (the classes `load` accepts).
fn check_model_index(root: &Path) -> Result<()> {
    let index = root.join("model_index.json");
    if !index.is_file() {
        bail!(
            "{}: not a model folder (no model_index.json; expected a diffusers-layout Stable \
             Diffusion folder)",
            root.display()
        );
    }
    // export reads the three model components (no tokenizer)
    crate::weights::layout::check_model_index(
        &index,
        &index.display().to_string(),
        &crate::weights::layout::SD_COMPONENTS[..3],
    )
}

/// The weight files of a component folder, with the variant if it has one (as the loader).
fn files_of(dir: &Path, stem: &str, variant: Option<&str>) -> Result<Vec<PathBuf>> {
    component_files(dir, stem, variant).or_else(|e| match variant {
        Some(_) if dir.is_dir() => component_files(dir, stem, None).map_err(|_| e),
        _ => Err(e),
    })
}

/// A component folder's tensors, under their own names.
fn read_dir(
    files: &mut LazyFiles,
    dir: &Path,
    stem: &str,
    variant: Option<&str>,
) -> Result<Vec<(String, TensorRef)>> {
    let refs = files.open_all(&files_of(dir, stem, variant)?)?;
    Ok(refs.into_iter().map(|r| (r.name.clone(), r)).collect())
}

fn unet_layout(dir: &Path) -> Result<UNetLayout> {
    let cfg = UNetConfig::from_file(&dir.join("config.json"))?;
    Ok(UNetLayout {
        levels: cfg.block_out_channels.len(),
        layers_per_block: cfg.layers_per_block_uniform()?,
    })
}

fn vae_layout(dir: &Path) -> Result<VaeLayout> {
    let cfg = VaeConfig::from_file(&dir.join("config.json"))?;
    Ok(VaeLayout {
        levels: cfg.block_out_channels.len(),
        layers_per_block: cfg.layers_per_block,
    })
}

/// The three networks to export (their tensors' headers) and the UNet's and VAE's geometry.
fn gather(s: &Sources, files: &mut LazyFiles) -> Result<(Components, UNetLayout, VaeLayout)> {
    let root = s.base.config_root();
    let vae = vae_layout(&root.join("vae"))?;
    let variant = s.variant.as_deref();
    let mut parts = match &s.base {
        Base::Folder(root) => Components {
            unet: match &s.unet {
                Some(_) => Vec::new(),
                None => read_dir(files, &root.join("unet"), UNET_STEM, variant)?,
            },
            vae: read_dir(files, &root.join("vae"), UNET_STEM, variant)?,
            text_encoder: match &s.text_encoder {
                Some(_) => Vec::new(),
                None => read_dir(files, &root.join("text_encoder"), TEXT_STEM, variant)?,
            },
        },
        Base::SingleFile { file, config_dir } => {
            let own_unet = unet_layout(&config_dir.join("unet"))?;
            split_refs(files.open(file)?, &own_unet, &vae)?
        }
    };
    if let Some(dir) = &s.unet {
        parts.unet = read_dir(files, dir, UNET_STEM, None)?;
    }
    if let Some(dir) = &s.text_encoder {
        parts.text_encoder = read_dir(files, dir, TEXT_STEM, None)?;
    }
    let unet_dir = s.unet.clone().unwrap_or_else(|| root.join("unet"));
    Ok((parts, unet_layout(&unet_dir)?, vae))
}

/// `--out` must name a new or replaceable `.safetensors` file that is none of the inputs.
fn check_out(out: &Path, inputs: &[&Path]) -> Result<()> {
    let ok_ext = out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    if !ok_ext {
        bail!(
            "--out {}: the exported file must end in .safetensors",
            out.display()
        );
    }
    if out.is_dir() {
        bail!(
            "--out {}: is a folder; name the file to write",
            out.display()
        );
    }
    if let Ok(target) = out.canonicalize() {
        for input in inputs {
            if input.canonicalize().is_ok_and(|i| i == target) {
                bail!(
                    "--out {}: is an input of this export ({}); write it elsewhere",
                    out.display(),
                    input.display()
                );
            }
        }
    }
    Ok(())
}

fn byte_bar(total: u64) -> ProgressBar {
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(
            "export [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb
}

pub fn run(args: Args) -> Result<()> {
    let precision = args.dtype;
    let kind = precision.kind();
    let sources = resolve(&args)?;
    let mut files = LazyFiles::new();
    let (parts, unet, vae) = gather(&sources, &mut files)?;
    let entries = plan_export(&parts, &unet, &vae)?;
    let mut inputs: Vec<&Path> = entries.iter().map(|e| e.source.file.as_path()).collect();
    inputs.push(&args.model);
    inputs.sort();
    inputs.dedup();
    check_out(&args.out, &inputs)?;

    let total = export_data_bytes(&entries, kind);
    let bar = byte_bar(total);
    crate::fsutil::write_atomic_with(&args.out, |w| {
        write_export(w, &entries, kind, &files, |n| bar.inc(n))
    })
    .with_context(|| format!("--out {}", args.out.display()))?;
    bar.finish_and_clear();
    let count = |prefix: &str| {
        entries
            .iter()
            .filter(|e| e.name.starts_with(prefix))
            .count()
    };
    eprintln!(
        "exported {} tensors (unet {}, vae {}, text encoder {}) as {}, {:.1} MiB: {}",
        entries.len(),
        count(crate::weights::compvis::UNET_PREFIX),
        count(crate::weights::compvis::VAE_PREFIX),
        count(crate::weights::compvis::TEXT_ENCODER_PREFIX),
        match precision {
            Precision::F32 => "fp32",
            Precision::F16 => "fp16",
            Precision::Bf16 => "bf16",
        },
        total as f64 / (1024.0 * 1024.0),
        args.out.display()
    );
    Ok(())
}
