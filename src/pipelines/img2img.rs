//! Image-to-image (SDEdit), as diffusers' `StableDiffusionImg2ImgPipeline`: encode the photo,
//! noise it to the timestep that `strength` selects, and denoise from there.
use super::request::{Param, RequestError};
use super::sampling::cpu_randn;
use super::StableDiffusion;
use crate::schedulers::Scheduler;
use anyhow::{bail, Result};
use tch::{Kind, Tensor};

#[derive(Debug, Clone)]
pub struct ImageToImage {
    pub prompt: String,
    pub negative_prompt: String,
    pub steps: usize,
    pub guidance: f64,
    pub seed: u64,
    /// In (0, 1]: how far into the noise schedule the photo is pushed (1 = ignore the photo).
    pub strength: f64,
    /// Variations drawn together from one seed (diffusers' `num_images_per_prompt`).
    pub variations: i64,
}

impl ImageToImage {
    /// Refuses values no image can be made with (see [`RequestError`] for the wording).
    pub fn validate(&self) -> Result<()> {
        if !(self.strength > 0.0 && self.strength <= 1.0) {
            bail!(RequestError::StrengthRange(self.strength));
        }
        if self.steps == 0 {
            bail!(RequestError::BelowOne(Param::Steps));
        }
        if self.variations < 1 {
            bail!(RequestError::BelowOne(Param::Variations));
        }
        if !self.guidance.is_finite() {
            bail!(RequestError::NotFinite(Param::Guidance));
        }
        Ok(())
    }

    /// The denoising steps a run of `steps` at `strength` takes, as the schedulers count them
    /// (`floor(steps * strength)`, at least 1): for progress bars.
    pub fn denoising_steps(&self) -> usize {
        ((self.steps as f64 * self.strength).floor() as usize).clamp(1, self.steps.max(1))
    }
}

/// Transforms one image `[1, 3, H, W]` in [-1, 1] (H, W multiples of 8) into `p.variations`
/// images `[N, 3, H, W]` in [0, 1] on the CPU.
pub fn image_to_image(
    sd: &StableDiffusion,
    scheduler: &mut dyn Scheduler,
    p: &ImageToImage,
    image: &Tensor,
    on_step: impl FnMut(usize, usize),
) -> Result<Tensor> {
    p.validate()?;
    let size = image.size();
    let f = sd.vae.scale_factor().max(8);
    if size.len() != 4 || size[0] != 1 || size[1] != 3 || size[2] % f != 0 || size[3] % f != 0 {
        bail!("input image of shape {size:?}: expected [1, 3, H, W] with H and W multiples of {f}");
    }
    sd.check_image_budget(size[3], size[2], p.variations, Param::Variations)?;
    let _stage = crate::profile::scope("image-to-image");
    let cond = sd.conditioning(&p.prompt, &p.negative_prompt, p.guidance, p.variations)?;
    scheduler.set_timesteps(p.steps)?;
    let start = scheduler.begin_index_for_strength(p.strength);
    if start >= scheduler.timesteps().len() {
        bail!(RequestError::NoDenoisingStep {
            strength: p.strength,
            steps: p.steps,
        });
    }
    tch::manual_seed(p.seed as i64);
    let encode = crate::profile::scope("vae encode");
    let posterior = tch::no_grad(|| {
        sd.vae
            .encode(&image.to_device(sd.device).to_kind(sd.vae_kind))
    });
    let init = posterior.sample().to_kind(Kind::Float) * sd.vae.scaling_factor();
    let init = init.repeat([p.variations, 1, 1, 1]).to_kind(sd.kind);
    drop(encode);
    let noise = cpu_randn(&init.size(), sd.device, sd.kind);
    let latents = scheduler.add_noise(&init, &noise, start);
    let latents = sd.denoise(scheduler, &cond, p.guidance, latents, start, on_step)?;
    sd.decode_latents(&latents)
}
