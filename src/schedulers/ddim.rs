//! DDIM (Song et al. 2021), as diffusers' `DDIMScheduler`.
use super::config::PredictionType;
use super::resolve::ResolvedConfig;
use super::spacing::descending;
use super::{alpha_at, check_steps, cpu_noise, ddpm_add_noise, Scheduler};
use anyhow::Result;
use tch::Tensor;

pub struct Ddim {
    cfg: ResolvedConfig,
    ac: Vec<f64>,
    final_alpha: f64,
    timesteps: Vec<f64>,
    n: usize,
}

impl Ddim {
    pub fn new(cfg: &ResolvedConfig) -> Self {
        let ac = cfg.alphas_cumprod();
        let final_alpha = if cfg.set_alpha_to_one { 1.0 } else { ac[0] };
        Self {
            cfg: cfg.clone(),
            ac,
            final_alpha,
            timesteps: Vec::new(),
            n: 0,
        }
    }
}

impl Scheduler for Ddim {
    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        check_steps(n, self.cfg.num_train_timesteps)?;
        self.timesteps = descending(
            self.cfg.timestep_spacing,
            self.cfg.num_train_timesteps,
            n,
            self.cfg.steps_offset,
            true,
        );
        self.n = n;
        Ok(())
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn num_inference_steps(&self) -> usize {
        self.n
    }

    fn step(&mut self, model_output: &Tensor, step: usize, sample: &Tensor) -> Result<Tensor> {
        let t = self.timesteps[step] as i64;
        let prev = t - self.cfg.num_train_timesteps / self.n as i64;
        let a_t = alpha_at(&self.ac, t, self.final_alpha);
        let a_prev = alpha_at(&self.ac, prev, self.final_alpha);
        let b_t = 1.0 - a_t;
        let (x0, eps) = match self.cfg.prediction_type {
            PredictionType::Epsilon => (
                (sample - model_output * b_t.sqrt()) / a_t.sqrt(),
                model_output.shallow_clone(),
            ),
            PredictionType::VPrediction => (
                sample * a_t.sqrt() - model_output * b_t.sqrt(),
                model_output * a_t.sqrt() + sample * b_t.sqrt(),
            ),
        };
        let x0 = if self.cfg.clip_sample {
            let r = self.cfg.clip_sample_range;
            x0.clamp(-r, r)
        } else {
            x0
        };
        let eta = self.cfg.eta;
        let variance = ((1.0 - a_prev) / b_t) * (1.0 - a_t / a_prev);
        let std = eta * variance.sqrt();
        let direction = &eps * (1.0 - a_prev - std * std).sqrt();
        let mut prev_sample = x0 * a_prev.sqrt() + direction;
        if eta > 0.0 {
            prev_sample += cpu_noise(model_output).to_kind(model_output.kind()) * std;
        }
        Ok(prev_sample.to_kind(model_output.kind()))
    }

    fn add_noise(&self, original: &Tensor, noise: &Tensor, step: usize) -> Tensor {
        ddpm_add_noise(&self.ac, original, noise, self.timesteps[step] as i64)
    }
}
