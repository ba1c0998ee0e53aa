//! `studioize pretrain --catalogue DIR --out DIR`: trains the tiny SD 1.x model from scratch
//! on a synthetic catalogue (see `pretrain`).
use crate::pretrain::{run as pretrain, PretrainConfig};
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The catalogue (from `studioize make-catalogue`): studio/, casual/, general/.
    #[arg(long)]
    pub catalogue: PathBuf,
    /// The model folder to write (new or empty).
    #[arg(long)]
    pub out: PathBuf,
    /// A TOML file of pretraining settings (fields of `PretrainConfig`); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Image side in pixels.
    #[arg(long)]
    pub size: Option<u32>,
    /// Torch threads (fixed, so that a seed gives the same weights).
    #[arg(long)]
    pub threads: Option<i32>,
    /// Share of the studio photos used in pretraining (the first pairs).
    #[arg(long)]
    pub studio_share: Option<f64>,
    #[arg(long)]
    pub vae_steps: Option<u64>,
    #[arg(long)]
    pub vae_batch_size: Option<i64>,
    #[arg(long)]
    pub vae_lr: Option<f64>,
    #[arg(long)]
    pub unet_steps: Option<u64>,
    #[arg(long)]
    pub unet_batch_size: Option<i64>,
    #[arg(long)]
    pub unet_lr: Option<f64>,
}

/// The config file's settings (or the defaults) with the flags applied.
pub fn config(a: &Args) -> Result<PretrainConfig> {
    let mut c = match &a.config {
        Some(p) => PretrainConfig::from_toml_file(p)?,
        None => PretrainConfig::default(),
    };
    c.catalogue = a.catalogue.clone();
    c.out = a.out.clone();
    macro_rules! set {
        ($($flag:ident => $($field:ident).+),* $(,)?) => {
            $(if let Some(v) = a.$flag { c.$($field).+ = v; })*
        };
    }
    set!(seed => seed, size => size, threads => threads, studio_share => studio_share,
        vae_steps => vae.steps, vae_batch_size => vae.batch_size, vae_lr => vae.lr,
        unet_steps => unet.steps, unet_batch_size => unet.batch_size, unet_lr => unet.lr);
    Ok(c)
}

pub fn run(a: Args) -> Result<()> {
    let s = pretrain(&config(&a)?)?;
    eprintln!(
        "wrote {} in {:.0}s: VAE PSNR {:.2} dB, scaling factor {:.5}, UNet loss {:.4}",
        s.out.display(),
        s.seconds,
        s.vae.psnr_all,
        s.vae.scaling_factor,
        s.unet.final_loss
    );
    Ok(())
}
