//! PNDM in its PLMS form (`skip_prk_steps`), as diffusers' `PNDMScheduler`: a linear multistep
//! method over the model's noise predictions, whose first step is a two-evaluation warm-up at
//! a repeated timestep.
use super::config::{Prediction, SchedulerConfig, Spacing};
use super::spacing::{arange_down, linspace, round_half_even};
use super::{alpha_at, check_steps, ddpm_add_noise, Scheduler};
use anyhow::{bail, Result};
use tch::Tensor;

pub struct Pndm {
    cfg: SchedulerConfig,
    ac: Vec<f64>,
    final_alpha: f64,
    timesteps: Vec<f64>,
    n: usize,
    ets: Vec<Tensor>,
    counter: usize,
    cur_sample: Option<Tensor>,
}

impl Pndm {
    pub fn new(cfg: &SchedulerConfig) -> Result<Self> {
        if !cfg.skip_prk_steps {
            bail!(
                "skip_prk_steps: false (Runge-Kutta warm-up) is not supported; PNDM runs as PLMS"
            );
        }
        let ac = cfg.alphas_cumprod();
        let final_alpha = if cfg.set_alpha_to_one.unwrap_or(false) {
            1.0
        } else {
            ac[0]
        };
        Ok(Self {
            cfg: cfg.clone(),
            ac,
            final_alpha,
            timesteps: Vec::new(),
            n: 0,
            ets: Vec::new(),
            counter: 0,
            cur_sample: None,
        })
    }

    /// `sample` at `t` to `t_prev` given a noise prediction (formula (9) of Liu et al. 2022).
    fn prev_sample(&self, sample: &Tensor, t: i64, t_prev: i64, eps: &Tensor) -> Result<Tensor> {
        let a_t = alpha_at(&self.ac, t, self.final_alpha);
        let a_prev = alpha_at(&self.ac, t_prev, self.final_alpha);
        let (b_t, b_prev) = (1.0 - a_t, 1.0 - a_prev);
        let eps = match self.cfg.prediction()? {
            Prediction::Epsilon => eps.shallow_clone(),
            Prediction::VPrediction => eps * a_t.sqrt() + sample * b_t.sqrt(),
        };
        let sample_coeff = (a_prev / a_t).sqrt();
        let denom = a_t * b_prev.sqrt() + (a_t * b_t * a_prev).sqrt();
        Ok(sample * sample_coeff - eps * ((a_prev - a_t) / denom))
    }
}

impl Scheduler for Pndm {
    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        check_steps(n)?;
        let train = self.cfg.num_train_timesteps;
        // Ascending, as diffusers' `_timesteps`.
        let base: Vec<f64> = match self.cfg.spacing()? {
            Spacing::Linspace => linspace(0.0, (train - 1) as f64, n)
                .into_iter()
                .map(round_half_even)
                .collect(),
            Spacing::Leading => {
                let ratio = train / n as i64;
                (0..n as i64)
                    .map(|i| (i * ratio + self.cfg.steps_offset) as f64)
                    .collect()
            }
            Spacing::Trailing => {
                let ratio = train as f64 / n as f64;
                let mut t: Vec<f64> = arange_down(train as f64, 0.0, -ratio)
                    .into_iter()
                    .map(|t| round_half_even(t) - 1.0)
                    .collect();
                t.reverse();
                t
            }
        };
        // PLMS: all but the last, the second-to-last again, the last; then descending.
        let k = base.len();
        let mut plms: Vec<f64> = base[..k - 1].to_vec();
        if k >= 2 {
            plms.push(base[k - 2]);
        }
        plms.push(base[k - 1]);
        plms.reverse();
        self.timesteps = plms;
        self.n = n;
        self.ets.clear();
        self.counter = 0;
        self.cur_sample = None;
        Ok(())
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn num_inference_steps(&self) -> usize {
        self.n
    }

    fn step(&mut self, model_output: &Tensor, step: usize, sample: &Tensor) -> Result<Tensor> {
        let stride = self.cfg.num_train_timesteps / self.n as i64;
        let mut t = self.timesteps[step] as i64;
        let mut t_prev = t - stride;
        if self.counter != 1 {
            if self.ets.len() > 3 {
                let _ = self.ets.remove(0);
            }
            self.ets.push(model_output.shallow_clone());
        } else {
            t_prev = t;
            t += stride;
        }
        let e = &self.ets;
        let m = e.len();
        let mut sample = sample.shallow_clone();
        let eps = if m == 1 && self.counter == 0 {
            self.cur_sample = Some(sample.shallow_clone());
            model_output.shallow_clone()
        } else if m == 1 && self.counter == 1 {
            sample = self.cur_sample.take().expect("set on the first step");
            (model_output + &e[0]) / 2.0
        } else if m == 2 {
            (&e[1] * 3.0 - &e[0]) / 2.0
        } else if m == 3 {
            (&e[2] * 23.0 - &e[1] * 16.0 + &e[0] * 5.0) / 12.0
        } else {
            (&e[m - 1] * 55.0 - &e[m - 2] * 59.0 + &e[m - 3] * 37.0 - &e[m - 4] * 9.0) / 24.0
        };
        let prev = self.prev_sample(&sample, t, t_prev, &eps)?;
        self.counter += 1;
        Ok(prev)
    }

    fn add_noise(&self, original: &Tensor, noise: &Tensor, step: usize) -> Tensor {
        ddpm_add_noise(&self.ac, original, noise, self.timesteps[step] as i64)
    }
}
