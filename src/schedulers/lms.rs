//! Linear multistep sampling (order 4) on the sigma schedule, as diffusers'
//! `LMSDiscreteScheduler`: the step integrates the Lagrange polynomial through the last
//! derivatives between two sigmas.
use super::resolve::ResolvedConfig;
use super::sigma_sampler::{SigmaSampler, SigmaStep};
use super::sigmas::SigmaSchedule;
use anyhow::Result;
use tch::{Kind, Tensor};

const ORDER: usize = 4;

/// The latest derivatives (at most [`ORDER`]).
pub struct Lms {
    derivatives: Vec<Tensor>,
}

impl Lms {
    pub fn new(cfg: &ResolvedConfig) -> SigmaSampler<Lms> {
        SigmaSampler::new(
            cfg.clone(),
            Lms {
                derivatives: Vec::new(),
            },
        )
    }
}

/// `∫ from sigma_i to sigma_{i+1}` of the Lagrange basis polynomial of `current` among the
/// `order` latest sigmas. The integrand has degree < 4, so 4-point Gauss-Legendre is exact.
fn coefficient(sig: &[f64], order: usize, i: usize, current: usize) -> f64 {
    let basis = |tau: f64| {
        (0..order)
            .filter(|&k| k != current)
            .map(|k| (tau - sig[i - k]) / (sig[i - current] - sig[i - k]))
            .product::<f64>()
    };
    let (a, b) = (sig[i], sig[i + 1]);
    const NODES: [(f64, f64); 4] = [
        (-0.861_136_311_594_052_6, 0.347_854_845_137_453_9),
        (-0.339_981_043_584_856_3, 0.652_145_154_862_546_1),
        (0.339_981_043_584_856_3, 0.652_145_154_862_546_1),
        (0.861_136_311_594_052_6, 0.347_854_845_137_453_9),
    ];
    let (mid, half) = ((a + b) / 2.0, (b - a) / 2.0);
    NODES
        .iter()
        .map(|&(x, w)| w * basis(mid + half * x))
        .sum::<f64>()
        * half
}

impl SigmaStep for Lms {
    fn reset(&mut self) {
        self.derivatives.clear();
    }

    fn step(
        &mut self,
        s: &SigmaSchedule,
        model_output: &Tensor,
        step: usize,
        sample: &Tensor,
    ) -> Result<Tensor> {
        let x0 = s.denoised(model_output, &sample.to_kind(Kind::Float), step);
        let derivative = (sample.to_kind(Kind::Float) - x0) / s.sigmas[step];
        self.derivatives.push(derivative);
        if self.derivatives.len() > ORDER {
            let _ = self.derivatives.remove(0);
        }
        let order = (step + 1).min(ORDER);
        let mut prev = sample.to_kind(Kind::Float);
        for (k, d) in self.derivatives.iter().rev().enumerate().take(order) {
            prev += d * coefficient(&s.sigmas, order, step, k);
        }
        Ok(prev.to_kind(model_output.kind()))
    }
}
