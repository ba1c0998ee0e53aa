//! Samplers: one trait, one file per sampler, each equal to its diffusers namesake.
//!
//! Random draws (ancestral noise, DDIM with eta > 0) come from the CPU default generator, in the
//! order and shapes diffusers draws from its `generator`, so that seeded runs reproduce
//! diffusers' images.
mod betas;
mod config;
mod ddim;
mod dpmpp_2m;
mod euler;
mod euler_ancestral;
mod lms;
mod pipeline;
mod pndm;
mod resolve;
mod sigma_sampler;
mod sigmas;
mod spacing;

pub use config::{
    BetaSchedule, FinalSigmasType, PredictionType, SchedulerConfig, Setting, TimestepSpacing,
};
pub use pipeline::{for_pipeline, Rewrite};
pub use resolve::{ResolvedConfig, SchedulerClass};

use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

/// The sampler names [`from_name`] and [`for_pipeline`] accept.
pub const SAMPLERS: [&str; 7] = [
    "pndm",
    "ddim",
    "euler",
    "euler-a",
    "dpmpp-2m",
    "dpmpp-2m-karras",
    "lms",
];

/// A sampler of [`SAMPLERS`], typed (a `clap::ValueEnum` of the same spellings, in that order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Sampler {
    Pndm,
    Ddim,
    Euler,
    #[value(name = "euler-a")]
    EulerA,
    #[value(name = "dpmpp-2m")]
    DpmPp2m,
    #[value(name = "dpmpp-2m-karras")]
    DpmPp2mKarras,
    Lms,
}

impl Sampler {
    /// Its name in [`SAMPLERS`].
    pub fn name(self) -> &'static str {
        SAMPLERS[self as usize]
    }
}

pub trait Scheduler {
    /// Prepares `n` inference steps; resets any multistep state.
    fn set_timesteps(&mut self, n: usize) -> Result<()>;
    /// The timestep fed to the model at each step.
    fn timesteps(&self) -> &[f64];
    /// Sigmas (one per step plus the final one), for sigma-based samplers.
    fn sigmas(&self) -> Option<&[f64]> {
        None
    }
    /// diffusers' `scheduler.order`: model calls per step.
    fn order(&self) -> usize {
        1
    }
    fn init_noise_sigma(&self) -> f64 {
        1.0
    }
    fn scale_model_input(&self, sample: &Tensor, _step: usize) -> Tensor {
        sample.shallow_clone()
    }
    /// One denoising step from `sample` at `timesteps()[step]`.
    fn step(&mut self, model_output: &Tensor, step: usize, sample: &Tensor) -> Result<Tensor>;
    /// img2img: `original` noised to the level of `timesteps()[step]`.
    fn add_noise(&self, original: &Tensor, noise: &Tensor, step: usize) -> Tensor;
    /// The first step index for an img2img `strength` in (0, 1] (diffusers' `get_timesteps`).
    fn begin_index_for_strength(&self, strength: f64) -> usize {
        let n = self.num_inference_steps();
        let init = ((n as f64 * strength) as usize).min(n);
        (n - init) * self.order()
    }
    /// The number of steps asked for in `set_timesteps`.
    fn num_inference_steps(&self) -> usize;
}

/// A sampler by name (see [`SAMPLERS`]), on the model's noise schedule: the config as that
/// sampler's diffusers class reads it ([`SchedulerConfig::for_sampler`]).
pub fn from_name(name: &str, cfg: &SchedulerConfig) -> Result<Box<dyn Scheduler>> {
    build(&cfg.for_sampler(name)?)
}

/// The sampler of a resolved config's class.
pub fn build(cfg: &ResolvedConfig) -> Result<Box<dyn Scheduler>> {
    Ok(match cfg.class {
        SchedulerClass::Pndm => Box::new(pndm::Pndm::new(cfg)),
        SchedulerClass::Ddim => Box::new(ddim::Ddim::new(cfg)),
        SchedulerClass::EulerDiscrete => Box::new(euler::Euler::new(cfg)),
        SchedulerClass::EulerAncestralDiscrete => {
            Box::new(euler_ancestral::EulerAncestral::new(cfg))
        }
        SchedulerClass::DpmSolverMultistep => Box::new(dpmpp_2m::DpmPp2m::new(cfg)),
        SchedulerClass::LmsDiscrete => Box::new(lms::Lms::new(cfg)),
        SchedulerClass::Ddpm => bail!(
            "sampling with DDPMScheduler is not supported; choose a sampler ({})",
            SAMPLERS.join(", ")
        ),
    })
}

/// The sampler the config's `_class_name` names (a model's own scheduler).
pub fn from_config(cfg: &SchedulerConfig) -> Result<Box<dyn Scheduler>> {
    from_name(sampler_for_class(cfg)?, cfg)
}

/// The sampler name of the config's `_class_name` (PNDM when it has none).
pub fn sampler_for_class(cfg: &SchedulerConfig) -> Result<&'static str> {
    let name = cfg.class_name.as_deref().unwrap_or("PNDMScheduler");
    Ok(match SchedulerClass::from_class_name(name) {
        Some(SchedulerClass::Pndm) => "pndm",
        Some(SchedulerClass::Ddim) => "ddim",
        Some(SchedulerClass::EulerDiscrete) => "euler",
        Some(SchedulerClass::EulerAncestralDiscrete) => "euler-a",
        Some(SchedulerClass::DpmSolverMultistep) => "dpmpp-2m",
        Some(SchedulerClass::LmsDiscrete) => "lms",
        Some(SchedulerClass::Ddpm) | None => bail!(
            "{}: _class_name: scheduler '{name}' is not supported; choose a sampler ({})",
            cfg.source_name(),
            SAMPLERS.join(", ")
        ),
    })
}

/// Standard-normal noise of `like`'s shape from the CPU default generator (fp32), moved to
/// `like`'s device.
pub(crate) fn cpu_noise(like: &Tensor) -> Tensor {
    Tensor::randn(like.size(), (Kind::Float, Device::Cpu)).to_device(like.device())
}

/// `alpha_bar` at a (possibly negative, then `final_alpha`) training timestep.
pub(crate) fn alpha_at(ac: &[f64], t: i64, final_alpha: f64) -> f64 {
    if t >= 0 {
        ac[t as usize]
    } else {
        final_alpha
    }
}

/// DDPM forward noising at an integer timestep (DDIM, PNDM).
pub(crate) fn ddpm_add_noise(ac: &[f64], original: &Tensor, noise: &Tensor, t: i64) -> Tensor {
    let a = ac[t as usize];
    original * a.sqrt() + noise * (1.0 - a).sqrt()
}

/// diffusers' `set_timesteps` checks: at least one step, and no more than the schedule has.
fn check_steps(n: usize, num_train_timesteps: i64) -> Result<()> {
    if n == 0 {
        bail!("the number of steps must be at least 1");
    }
    if n as i64 > num_train_timesteps {
        bail!(
            "{n} steps are more than the {num_train_timesteps} timesteps the model was trained with (num_train_timesteps); use at most {num_train_timesteps}"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn sampler_spellings_are_those_of_samplers() {
        let names: Vec<String> = Sampler::value_variants()
            .iter()
            .map(|s| s.to_possible_value().unwrap().get_name().to_string())
            .collect();
        assert_eq!(names, SAMPLERS);
        for s in Sampler::value_variants() {
            assert_eq!(Sampler::from_str(s.name(), false).unwrap(), *s);
        }
    }
}
