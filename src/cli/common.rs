//! Arguments and helpers shared by the sampling commands (`generate`, `transform`).
use crate::device::{DeviceSpec, Precision};
use crate::imageio;
use crate::pipelines::{LoadOptions, StableDiffusion};
use crate::schedulers::{self, Scheduler};
use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// A diffusers-layout folder or a single-file CompVis .safetensors.
    #[arg(long)]
    pub model: PathBuf,
    /// For a single-file checkpoint: a diffusers-layout folder with its configs and tokenizer.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Weight variant to read (e.g. fp16).
    #[arg(long)]
    pub variant: Option<String>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// fp32, fp16 or bf16 (default: fp32 on CPU, fp16 on CUDA).
    #[arg(long)]
    pub precision: Option<String>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct SamplingArgs {
    #[arg(long)]
    pub prompt: String,
    #[arg(long, default_value = "")]
    pub negative_prompt: String,
    /// pndm, ddim, euler, euler-a, dpmpp-2m, dpmpp-2m-karras or lms (default: the model's own scheduler).
    #[arg(long)]
    pub sampler: Option<String>,
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    #[arg(long, default_value_t = 7.5)]
    pub guidance: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl ModelArgs {
    pub fn load(
        &self,
        unet: Option<PathBuf>,
        text_encoder: Option<PathBuf>,
    ) -> Result<StableDiffusion> {
        let (device, precision) = device_and_precision(&self.device, self.precision.as_deref())?;
        let opts = LoadOptions {
            device,
            precision,
            variant: self.variant.clone(),
            config_dir: self.config.clone(),
            unet_override: unet,
            text_encoder_override: text_encoder,
        };
        let spinner = spinner(&format!("loading {}", self.model.display()));
        let sd = StableDiffusion::load(&self.model, &opts);
        spinner.finish_and_clear();
        sd
    }
}

/// `--device` and `--precision` resolved: the device must exist, and the precision defaults to
/// fp32 on CPU and fp16 on CUDA.
pub fn device_and_precision(
    device: &str,
    precision: Option<&str>,
) -> Result<(tch::Device, Precision)> {
    let device = device.parse::<DeviceSpec>()?.resolve()?;
    let precision = match precision {
        Some(p) => p.parse::<Precision>()?,
        None => Precision::default_for(device),
    };
    Ok((device, precision))
}

/// The scheduler asked for, or the model's own, as diffusers' Stable Diffusion pipelines run
/// it ([`schedulers::for_pipeline`]); warns about the outdated values they rewrite.
pub fn make_scheduler(
    sd: &StableDiffusion,
    name: Option<&str>,
) -> Result<(Box<dyn Scheduler>, String)> {
    let Some(cfg) = &sd.scheduler_config else {
        bail!("the model has no scheduler/scheduler_config.json");
    };
    let (scheduler, name, rewrites) = schedulers::for_pipeline(cfg, name)?;
    for r in rewrites {
        eprintln!(
            "warning: {}: {} {} is outdated; using {}, as diffusers' StableDiffusionPipeline does",
            cfg.source_name(),
            r.key,
            r.from,
            r.to
        );
    }
    Ok((scheduler, name))
}

pub fn spinner(msg: &str) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("valid template"),
    );
    pb.set_message(msg.to_string());
    pb.enable_steady_tick(std::time::Duration::from_millis(200));
    pb
}

pub fn step_bar(total: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} steps {per_sec} eta {eta} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.set_prefix(what.to_string());
    pb
}

/// Where the images of one batch go.
pub enum OutTarget {
    /// `--out x.png`: exactly this file (only for a single image).
    File(PathBuf),
    /// `--out folder/`: named files plus a contact sheet.
    Folder(PathBuf),
}

impl OutTarget {
    /// A path with an image extension names a file; anything else a folder.
    pub fn parse(out: &Path, images: usize) -> Result<Self> {
        let ext = out
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("png" | "jpg" | "jpeg" | "webp") if images == 1 => {
                Ok(Self::File(out.to_path_buf()))
            }
            Some("png" | "jpg" | "jpeg" | "webp") => bail!(
                "--out {} names one file, but {images} images will be made; give a folder instead",
                out.display()
            ),
            _ => Ok(Self::Folder(out.to_path_buf())),
        }
    }

    /// Writes one batch of images made from `stem` with `seed`; returns the written paths.
    pub fn write(
        &self,
        stem: &str,
        seed: u64,
        images: &[image::RgbImage],
        params: &serde_json::Value,
    ) -> Result<Vec<PathBuf>> {
        match self {
            Self::File(path) => {
                let mut p = params.clone();
                p["index"] = 0.into();
                imageio::save_with_params(path, &images[0], &p)?;
                Ok(vec![path.clone()])
            }
            Self::Folder(dir) => {
                let mut written = Vec::new();
                for (i, img) in images.iter().enumerate() {
                    let path = dir.join(format!("{stem}-s{seed}-{i:03}.png"));
                    let mut p = params.clone();
                    p["index"] = i.into();
                    imageio::save_with_params(&path, img, &p)?;
                    written.push(path);
                }
                let sheet =
                    imageio::contact_sheet(images, (images.len() as f64).sqrt().ceil() as usize);
                let path = dir.join(format!("{stem}-s{seed}-sheet.png"));
                let mut p = params.clone();
                p["contact_sheet"] = images.len().into();
                imageio::save_with_params(&path, &sheet, &p)?;
                written.push(path);
                Ok(written)
            }
        }
    }
}

/// A file-name-safe slug of a prompt, for generated images' names.
pub fn slug(text: &str, max: usize) -> String {
    let mut s = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.ends_with('-') && !s.is_empty() {
            s.push('-');
        }
        if s.len() >= max {
            break;
        }
    }
    let s = s.trim_end_matches('-').to_string();
    if s.is_empty() {
        "image".into()
    } else {
        s
    }
}
