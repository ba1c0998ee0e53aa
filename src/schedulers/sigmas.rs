//! The sigma schedule shared by the k-diffusion style samplers (Euler, Euler ancestral, LMS):
//! timesteps, their sigmas, input scaling and img2img noising.
use super::config::{FinalSigmasType, PredictionType, TimestepSpacing};
use super::resolve::ResolvedConfig;
use super::spacing::{descending, f32r, interp, karras, sigma_to_t};
use tch::{Kind, Tensor};

pub struct SigmaSchedule {
    pub timesteps: Vec<f64>,
    /// One per timestep plus the final one (0).
    pub sigmas: Vec<f64>,
    pub init_noise_sigma: f64,
    pub prediction: PredictionType,
}

impl SigmaSchedule {
    pub fn new(cfg: &ResolvedConfig, n: usize) -> Self {
        let spacing = cfg.timestep_spacing;
        let train_sigmas = cfg.train_sigmas();
        let log_sigmas: Vec<f64> = cfg.train_log_sigmas();
        let mut timesteps =
            descending(spacing, cfg.num_train_timesteps, n, cfg.steps_offset, false);
        let mut sigmas: Vec<f64> = timesteps
            .iter()
            .map(|&t| interp(t, &train_sigmas))
            .collect();
        if cfg.use_karras_sigmas {
            let (lo, hi) = (sigmas[sigmas.len() - 1], sigmas[0]);
            sigmas = karras(lo, hi, n);
            timesteps = sigmas.iter().map(|&s| sigma_to_t(s, &log_sigmas)).collect();
        }
        let last = if cfg.final_sigmas_type == FinalSigmasType::SigmaMin {
            train_sigmas[0]
        } else {
            0.0
        };
        sigmas.push(last);
        let sigmas: Vec<f64> = sigmas.into_iter().map(f32r).collect();
        let timesteps: Vec<f64> = timesteps.into_iter().map(f32r).collect();
        let max = sigmas.iter().cloned().fold(0.0, f64::max);
        let init_noise_sigma = match spacing {
            TimestepSpacing::Linspace | TimestepSpacing::Trailing => max,
            TimestepSpacing::Leading => (max * max + 1.0).sqrt(),
        };
        Self {
            timesteps,
            sigmas,
            init_noise_sigma,
            prediction: cfg.prediction_type,
        }
    }

    /// `sample / sqrt(sigma^2 + 1)`.
    pub fn scale(&self, sample: &Tensor, i: usize) -> Tensor {
        let s = self.sigmas[i];
        sample / (s * s + 1.0).sqrt()
    }

    /// The denoised estimate from the model output at step `i` (fp32).
    pub fn denoised(&self, model_output: &Tensor, sample: &Tensor, i: usize) -> Tensor {
        let s = self.sigmas[i];
        let out = model_output.to_kind(Kind::Float);
        match self.prediction {
            PredictionType::Epsilon => sample - out * s,
            PredictionType::VPrediction => {
                out * (-s / (s * s + 1.0).sqrt()) + sample / (s * s + 1.0)
            }
        }
    }

    /// img2img noising: `original + noise * sigma_i`.
    pub fn add_noise(&self, original: &Tensor, noise: &Tensor, i: usize) -> Tensor {
        original + noise * self.sigmas[i]
    }
}
