//! Euler's method on the probability-flow ODE (Karras et al. 2022, algorithm 2 without
//! churn), as diffusers' `EulerDiscreteScheduler`.
use super::resolve::ResolvedConfig;
use super::sigma_sampler::{SigmaSampler, SigmaStep};
use super::sigmas::SigmaSchedule;
use anyhow::Result;
use tch::{Kind, Tensor};

pub struct Euler;

impl Euler {
    pub fn new(cfg: &ResolvedConfig) -> SigmaSampler<Euler> {
        SigmaSampler::new(cfg.clone(), Euler)
    }
}

impl SigmaStep for Euler {
    fn step(
        &mut self,
        s: &SigmaSchedule,
        model_output: &Tensor,
        step: usize,
        sample: &Tensor,
    ) -> Result<Tensor> {
        let sample32 = sample.to_kind(Kind::Float);
        let x0 = s.denoised(model_output, &sample32, step);
        let sigma = s.sigmas[step];
        let derivative = (&sample32 - x0) / sigma;
        let dt = s.sigmas[step + 1] - sigma;
        Ok((sample32 + derivative * dt).to_kind(model_output.kind()))
    }
}
