//! Ancestral Euler sampling (fresh noise every step), as diffusers'
//! `EulerAncestralDiscreteScheduler`.
use super::config::SchedulerConfig;
use super::sigmas::SigmaSchedule;
use super::{check_steps, cpu_noise, Scheduler};
use anyhow::Result;
use tch::{Kind, Tensor};

pub struct EulerAncestral {
    cfg: SchedulerConfig,
    s: Option<SigmaSchedule>,
    n: usize,
}

impl EulerAncestral {
    pub fn new(cfg: &SchedulerConfig) -> Self {
        let mut cfg = cfg.clone();
        cfg.use_karras_sigmas = false; // diffusers' ancestral Euler has no Karras option
        cfg.final_sigmas_type = "zero".into();
        Self { cfg, s: None, n: 0 }
    }

    fn schedule(&self) -> &SigmaSchedule {
        self.s.as_ref().expect("set_timesteps was called")
    }
}

impl Scheduler for EulerAncestral {
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
        let (from, to) = (s.sigmas[step], s.sigmas[step + 1]);
        let up = (to * to * (from * from - to * to) / (from * from)).sqrt();
        let down = (to * to - up * up).sqrt();
        let derivative = (&sample32 - x0) / from;
        let prev = sample32 + derivative * (down - from);
        let noise = cpu_noise(model_output);
        Ok((prev + noise * up).to_kind(model_output.kind()))
    }

    fn add_noise(&self, original: &Tensor, noise: &Tensor, step: usize) -> Tensor {
        self.schedule().add_noise(original, noise, step)
    }
}
