//! DPM-Solver++(2M) (Lu et al. 2022), as diffusers' `DPMSolverMultistepScheduler` with
//! `algorithm_type="dpmsolver++"`, `solver_order=2`, `solver_type="midpoint"`,
//! `lower_order_final=True`, optionally on Karras sigmas.
use super::config::{BetaSchedule, FinalSigmasType, PredictionType, TimestepSpacing};
use super::resolve::ResolvedConfig;
use super::spacing::{arange_down, f32r, interp, karras, linspace, round_half_even, sigma_to_t};
use super::{check_steps, Scheduler};
use anyhow::Result;
use tch::{Kind, Tensor};

pub struct DpmPp2m {
    cfg: ResolvedConfig,
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
    n: usize,
    /// The previous step's data prediction, for the second-order update.
    last_x0: Option<Tensor>,
    lower_order_nums: usize,
}

/// `(alpha_t, sigma_t)` of a sigma in the variance-preserving parametrisation.
fn alpha_sigma(sigma: f64) -> (f64, f64) {
    let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
    (alpha, sigma * alpha)
}

fn lambda(sigma: f64) -> f64 {
    let (a, s) = alpha_sigma(sigma);
    a.ln() - s.ln()
}

impl DpmPp2m {
    pub fn new(cfg: &ResolvedConfig) -> Self {
        Self {
            cfg: cfg.clone(),
            timesteps: Vec::new(),
            sigmas: Vec::new(),
            n: 0,
            last_x0: None,
            lower_order_nums: 0,
        }
    }
}

impl Scheduler for DpmPp2m {
    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        check_steps(n, self.cfg.num_train_timesteps)?;
        let train = self.cfg.num_train_timesteps;
        let mut timesteps: Vec<f64> = match self.cfg.timestep_spacing {
            TimestepSpacing::Linspace => {
                let mut t: Vec<f64> = linspace(0.0, (train - 1) as f64, n + 1)
                    .into_iter()
                    .map(round_half_even)
                    .collect();
                t.reverse();
                t.truncate(n);
                t
            }
            TimestepSpacing::Leading => {
                let ratio = train / (n as i64 + 1);
                (1..=n as i64)
                    .rev()
                    .map(|i| (i * ratio + self.cfg.steps_offset) as f64)
                    .collect()
            }
            TimestepSpacing::Trailing => {
                let ratio = train as f64 / n as f64;
                arange_down(train as f64, 0.0, -ratio)
                    .into_iter()
                    .map(|t| round_half_even(t) - 1.0)
                    .collect()
            }
        };
        let train_sigmas = self.cfg.train_sigmas();
        let mut sigmas: Vec<f64> = if self.cfg.use_karras_sigmas {
            let log_sigmas: Vec<f64> = self.cfg.train_log_sigmas();
            let s = karras(train_sigmas[0], train_sigmas[train_sigmas.len() - 1], n);
            // diffusers rounds these, except on the cosine schedule, where its int64 cast
            // truncates them.
            let cosine = self.cfg.beta_schedule == BetaSchedule::SquaredcosCapV2;
            timesteps = s
                .iter()
                .map(|&x| sigma_to_t(x, &log_sigmas))
                .map(|t| {
                    if cosine {
                        t.trunc()
                    } else {
                        round_half_even(t)
                    }
                })
                .collect();
            s
        } else {
            timesteps
                .iter()
                .map(|&t| interp(t, &train_sigmas))
                .collect()
        };
        let last = if self.cfg.final_sigmas_type == FinalSigmasType::SigmaMin {
            train_sigmas[0]
        } else {
            0.0
        };
        sigmas.push(last);
        self.sigmas = sigmas.into_iter().map(f32r).collect();
        self.timesteps = timesteps;
        self.n = n;
        self.last_x0 = None;
        self.lower_order_nums = 0;
        Ok(())
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn sigmas(&self) -> Option<&[f64]> {
        Some(&self.sigmas)
    }

    fn num_inference_steps(&self) -> usize {
        self.n
    }

    fn step(&mut self, model_output: &Tensor, i: usize, sample: &Tensor) -> Result<Tensor> {
        let len = self.timesteps.len();
        let (alpha_s0, sigma_s0) = alpha_sigma(self.sigmas[i]);
        let out = model_output.to_kind(Kind::Float);
        let sample32 = sample.to_kind(Kind::Float);
        let x0 = match self.cfg.prediction_type {
            PredictionType::Epsilon => (&sample32 - &out * sigma_s0) / alpha_s0,
            PredictionType::VPrediction => &sample32 * alpha_s0 - &out * sigma_s0,
        };
        let lower_order_final =
            i == len - 1 && (len < 15 || self.cfg.final_sigmas_type == FinalSigmasType::Zero);
        let (alpha_t, sigma_t) = alpha_sigma(self.sigmas[i + 1]);
        let h = lambda(self.sigmas[i + 1]) - lambda(self.sigmas[i]);
        let first = self.lower_order_nums < 1 || lower_order_final;
        let prev = match (&self.last_x0, first) {
            (Some(m1), false) => {
                let h0 = lambda(self.sigmas[i]) - lambda(self.sigmas[i - 1]);
                let r0 = h0 / h;
                let d1 = (&x0 - m1) * (1.0 / r0);
                let c = alpha_t * ((-h).exp() - 1.0);
                &sample32 * (sigma_t / sigma_s0) - &x0 * c - d1 * (0.5 * c)
            }
            _ => &sample32 * (sigma_t / sigma_s0) - &x0 * (alpha_t * ((-h).exp() - 1.0)),
        };
        self.last_x0 = Some(x0);
        if self.lower_order_nums < 2 {
            self.lower_order_nums += 1;
        }
        Ok(prev.to_kind(model_output.kind()))
    }

    fn add_noise(&self, original: &Tensor, noise: &Tensor, step: usize) -> Tensor {
        let (a, s) = alpha_sigma(self.sigmas[step]);
        original * a + noise * s
    }
}
