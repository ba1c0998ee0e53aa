//! The part of the k-diffusion style samplers (Euler, Euler ancestral, LMS) that is the same for
//! all of them: the sigma schedule, its timesteps, input scaling and img2img noising. Each
//! sampler only says how it moves from one sigma to the next ([`SigmaStep`]).
use super::resolve::ResolvedConfig;
use super::sigmas::SigmaSchedule;
use super::{check_steps, Scheduler};
use anyhow::Result;
use tch::Tensor;

/// One sampler's update rule on the sigma schedule.
pub(super) trait SigmaStep {
    /// Forgets any history (a new `set_timesteps`).
    fn reset(&mut self) {}

    /// The sample at `s.sigmas[step + 1]` from the sample at `s.sigmas[step]`.
    fn step(
        &mut self,
        s: &SigmaSchedule,
        model_output: &Tensor,
        step: usize,
        sample: &Tensor,
    ) -> Result<Tensor>;
}

/// A [`Scheduler`] made of the shared sigma schedule and an update rule.
pub(super) struct SigmaSampler<M> {
    cfg: ResolvedConfig,
    s: Option<SigmaSchedule>,
    n: usize,
    method: M,
}

impl<M: SigmaStep> SigmaSampler<M> {
    pub(super) fn new(cfg: ResolvedConfig, method: M) -> Self {
        Self {
            cfg,
            s: None,
            n: 0,
            method,
        }
    }

    fn schedule(&self) -> &SigmaSchedule {
        self.s.as_ref().expect("set_timesteps was called")
    }
}

impl<M: SigmaStep> Scheduler for SigmaSampler<M> {
    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        check_steps(n, self.cfg.num_train_timesteps)?;
        self.s = Some(SigmaSchedule::new(&self.cfg, n));
        self.n = n;
        self.method.reset();
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
        let s = self.s.as_ref().expect("set_timesteps was called");
        self.method.step(s, model_output, step, sample)
    }

    fn add_noise(&self, original: &Tensor, noise: &Tensor, step: usize) -> Tensor {
        self.schedule().add_noise(original, noise, step)
    }
}
