//! Text-to-image, as diffusers' `StableDiffusionPipeline`.
use super::request::{Param, RequestError};
use super::sampling::cpu_randn;
use super::StableDiffusion;
use crate::schedulers::Scheduler;
use anyhow::{bail, Result};

/// What to generate.
#[derive(Debug, Clone)]
pub struct TextToImage {
    pub prompt: String,
    pub negative_prompt: String,
    pub steps: usize,
    pub guidance: f64,
    pub seed: u64,
    pub width: i64,
    pub height: i64,
    /// Images drawn together from one seed (diffusers' `num_images_per_prompt`).
    pub num_images: i64,
}

impl TextToImage {
    /// Refuses a request the model cannot sample (see [`RequestError`] for the wording).
    pub fn validate(&self, sd: &StableDiffusion) -> Result<()> {
        let f = sd.vae.scale_factor().max(8);
        if self.steps == 0 {
            bail!(RequestError::BelowOne(Param::Steps));
        }
        if self.width <= 0 || self.height <= 0 || self.width % f != 0 || self.height % f != 0 {
            bail!(
                "image size {}x{} must be positive multiples of {f}",
                self.width,
                self.height
            );
        }
        if self.num_images < 1 {
            bail!(RequestError::BelowOne(Param::NumImages));
        }
        if !self.guidance.is_finite() {
            bail!(RequestError::NotFinite(Param::Guidance));
        }
        sd.check_image_budget(self.width, self.height, self.num_images, Param::NumImages)
    }
}

/// Generates `p.num_images` images, `[N, 3, H, W]` in [0, 1] on the CPU.
pub fn text_to_image(
    sd: &StableDiffusion,
    scheduler: &mut dyn Scheduler,
    p: &TextToImage,
    on_step: impl FnMut(usize, usize),
) -> Result<tch::Tensor> {
    p.validate(sd)?;
    let _stage = crate::profile::scope("text-to-image");
    let cond = sd.conditioning(&p.prompt, &p.negative_prompt, p.guidance, p.num_images)?;
    scheduler.set_timesteps(p.steps)?;
    tch::manual_seed(p.seed as i64);
    let f = sd.vae.scale_factor();
    let channels = sd.unet.config().in_channels;
    let latents = cpu_randn(
        &[p.num_images, channels, p.height / f, p.width / f],
        sd.device,
        sd.kind,
    ) * scheduler.init_noise_sigma();
    let latents = sd.denoise(scheduler, &cond, p.guidance, latents, 0, on_step)?;
    sd.decode_latents(&latents)
}
