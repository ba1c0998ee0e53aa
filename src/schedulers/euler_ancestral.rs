//! Ancestral Euler sampling (fresh noise every step), as diffusers'
//! `EulerAncestralDiscreteScheduler`.
use super::cpu_noise;
use super::resolve::ResolvedConfig;
use super::sigma_sampler::{SigmaSampler, SigmaStep};
use super::sigmas::SigmaSchedule;
use anyhow::Result;
use tch::{Kind, Tensor};

pub struct EulerAncestral;

impl EulerAncestral {
    /// `cfg` resolved for `EulerAncestralDiscreteScheduler`, which has no Karras sigmas and
    /// always ends at sigma 0.
    pub fn new(cfg: &ResolvedConfig) -> SigmaSampler<EulerAncestral> {
        SigmaSampler::new(cfg.clone(), EulerAncestral)
    }
}

impl SigmaStep for EulerAncestral {
    fn step(
        &mut self,
        s: &SigmaSchedule,
        model_output: &Tensor,
        step: usize,
        sample: &Tensor,
    ) -> Result<Tensor> {
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
}
