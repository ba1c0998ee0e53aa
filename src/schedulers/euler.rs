//! Euler's method on the probability-flow ODE (Karras et al. 2022, algorithm 2 without
//! churn), as diffusers' `EulerDiscreteScheduler`.
use super::config::SchedulerConfig;
use super::sigmas::SigmaSchedule;
use super::{check_steps, Scheduler};
use anyhow::Result;
use tch::{Kind, Tensor};

pub struct Euler {
    cfg: SchedulerConfig,
    s: Option<SigmaSchedule>,
    n: usize,
}

impl Euler {
    pub fn new(cfg: &SchedulerConfig) -> Self {
        Self {
            cfg: cfg.clone(),
            s: None,
            n: 0,
        }
    }

    pub(super) fn schedule(&self) -> &SigmaSchedule {
        self.s.as_ref().expect("set_timesteps was called")
    }
}

impl Scheduler for Euler {
    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        check_steps(n)?;
        self.s = Some(SigmaSchedule::new(&self.cfg, n)?);
        self.n = n;
        Ok(())
    }

    fn timesteps(&self) -> &[f64] {
        &self.schedule().timesteps
    }

    fn sigmas(&self) -> Option<&[f64]> {
        Some(&self.schedule().sigmas)
    }

    fn init_noise_sigma(&self) -> f64 {
        self.schedule().init_noise_sigma
    }

    fn num_inference_steps(&self) -> usize {
        self.n
    }

    fn scale_model_input(&self, sample: &Tensor, step: usize) -> Tensor {
        self.schedule().scale(sample, step)
    }

    fn step(&mut self, model_output: &Tensor, step: usize, sample: &Tensor) -> Result<Tensor> {
        let s = self.schedule();
        let sample32 = sample.to_kind(Kind::Float);
        let x0 = s.denoised(model_output, &sample32, step);
        let sigma = s.sigmas[step];
        let derivative = (&sample32 - x0) / sigma;
        let dt = s.sigmas[step + 1] - sigma;
        Ok((sample32 + derivative * dt).to_kind(model_output.kind()))
    }

    fn add_noise(&self, original: &Tensor, noise: &Tensor, step: usize) -> Tensor {
        self.schedule().add_noise(original, noise, step)
    }
}
