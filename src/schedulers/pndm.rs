//! PNDM (Liu et al. 2022), as diffusers' `PNDMScheduler`: a linear multistep method (PLMS) over
//! the model's noise predictions. With `skip_prk_steps` its first step is a two-evaluation
//! warm-up at a repeated timestep; without it (F-PNDM), three Runge-Kutta steps of four model
//! evaluations each come first.
use super::config::{PredictionType, TimestepSpacing};
use super::resolve::ResolvedConfig;
use super::spacing::{arange_down, linspace, round_half_even};
use super::{alpha_at, check_steps, ddpm_add_noise, Scheduler};
use anyhow::{bail, Result};
use tch::Tensor;

/// Model evaluations of the Runge-Kutta warm-up that feed the multistep history.
const PNDM_ORDER: usize = 4;

pub struct Pndm {
    cfg: ResolvedConfig,
    ac: Vec<f64>,
    final_alpha: f64,
    timesteps: Vec<f64>,
    /// How many of `timesteps` are Runge-Kutta evaluations (0 with `skip_prk_steps`).
    prk_len: usize,
    n: usize,
    ets: Vec<Tensor>,
    counter: usize,
    cur_sample: Option<Tensor>,
    /// The Runge-Kutta step's weighted sum of model outputs so far.
    cur_model_output: Option<Tensor>,
}

impl Pndm {
    pub fn new(cfg: &ResolvedConfig) -> Self {
        let ac = cfg.alphas_cumprod();
        let final_alpha = if cfg.set_alpha_to_one { 1.0 } else { ac[0] };
        Self {
            cfg: cfg.clone(),
            ac,
            final_alpha,
            timesteps: Vec::new(),
            prk_len: 0,
            n: 0,
            ets: Vec::new(),
            counter: 0,
            cur_sample: None,
            cur_model_output: None,
        }
    }

    /// `sample` at `t` to `t_prev` given a noise prediction (formula (9) of Liu et al. 2022).
    fn prev_sample(&self, sample: &Tensor, t: i64, t_prev: i64, eps: &Tensor) -> Tensor {
        let a_t = alpha_at(&self.ac, t, self.final_alpha);
        let a_prev = alpha_at(&self.ac, t_prev, self.final_alpha);
        let (b_t, b_prev) = (1.0 - a_t, 1.0 - a_prev);
        let eps = match self.cfg.prediction_type {
            PredictionType::Epsilon => eps.shallow_clone(),
            PredictionType::VPrediction => eps * a_t.sqrt() + sample * b_t.sqrt(),
        };
        let sample_coeff = (a_prev / a_t).sqrt();
        let denom = a_t * b_prev.sqrt() + (a_t * b_t * a_prev).sqrt();
        sample * sample_coeff - eps * ((a_prev - a_t) / denom)
    }

    /// The ascending inference timesteps (diffusers' `_timesteps`).
    fn base_timesteps(&self, n: usize) -> Vec<i64> {
        let train = self.cfg.num_train_timesteps;
        match self.cfg.timestep_spacing {
            TimestepSpacing::Linspace => linspace(0.0, (train - 1) as f64, n)
                .into_iter()
                .map(|t| round_half_even(t) as i64)
                .collect(),
            TimestepSpacing::Leading => {
                let ratio = train / n as i64;
                (0..n as i64)
                    .map(|i| i * ratio + self.cfg.steps_offset)
                    .collect()
            }
            TimestepSpacing::Trailing => {
                let ratio = train as f64 / n as f64;
                let mut t: Vec<i64> = arange_down(train as f64, 0.0, -ratio)
                    .into_iter()
                    .map(|t| round_half_even(t) as i64 - 1)
                    .collect();
                t.reverse();
                t
            }
        }
    }

    /// One Runge-Kutta evaluation (diffusers' `step_prk`).
    fn step_prk(&mut self, model_output: &Tensor, step: usize, sample: &Tensor) -> Tensor {
        let half = self.cfg.num_train_timesteps / self.n as i64 / 2;
        let diff_to_prev = if self.counter % 2 == 1 { 0 } else { half };
        let t_prev = self.timesteps[step] as i64 - diff_to_prev;
        let t = self.timesteps[self.counter / 4 * 4] as i64;
        let acc = self.cur_model_output.take();
        let eps = match self.counter % 4 {
            0 => {
                self.cur_model_output = Some(model_output * (1.0 / 6.0));
                self.ets.push(model_output.shallow_clone());
                self.cur_sample = Some(sample.shallow_clone());
                model_output.shallow_clone()
            }
            1 | 2 => {
                let acc = acc.expect("set at the first evaluation");
                self.cur_model_output = Some(acc + model_output * (1.0 / 3.0));
                model_output.shallow_clone()
            }
            _ => acc.expect("set at the first evaluation") + model_output * (1.0 / 6.0),
        };
        let cur = self
            .cur_sample
            .as_ref()
            .map_or_else(|| sample.shallow_clone(), Tensor::shallow_clone);
        self.counter += 1;
        self.prev_sample(&cur, t, t_prev, &eps)
    }

    /// One linear multistep step (diffusers' `step_plms`).
    fn step_plms(&mut self, model_output: &Tensor, step: usize, sample: &Tensor) -> Tensor {
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
        self.counter += 1;
        self.prev_sample(&sample, t, t_prev, &eps)
    }
}

impl Scheduler for Pndm {
    fn set_timesteps(&mut self, n: usize) -> Result<()> {
        check_steps(n, self.cfg.num_train_timesteps)?;
        let base = self.base_timesteps(n);
        let k = base.len();
        let (prk, plms): (Vec<i64>, Vec<i64>) = if self.cfg.skip_prk_steps {
            // All but the last, the second-to-last again, the last; then descending.
            let mut plms: Vec<i64> = base[..k - 1].to_vec();
            if k >= 2 {
                plms.push(base[k - 2]);
            }
            plms.push(base[k - 1]);
            plms.reverse();
            (Vec::new(), plms)
        } else {
            if k < PNDM_ORDER {
                bail!("PNDM with skip_prk_steps false (Runge-Kutta warm-up) needs at least {PNDM_ORDER} steps");
            }
            // The last four timesteps and their midpoints, each evaluated twice but the ends.
            let half = self.cfg.num_train_timesteps / n as i64 / 2;
            let points: Vec<i64> = base[k - PNDM_ORDER..]
                .iter()
                .flat_map(|&t| [t, t + half])
                .collect();
            let twice: Vec<i64> = points[..points.len() - 1]
                .iter()
                .flat_map(|&t| [t, t])
                .collect();
            let mut prk = twice[1..twice.len() - 1].to_vec();
            prk.reverse();
            (prk, base[..k - 3].iter().rev().copied().collect())
        };
        self.prk_len = prk.len();
        self.timesteps = prk.into_iter().chain(plms).map(|t| t as f64).collect();
        self.n = n;
        self.ets.clear();
        self.counter = 0;
        self.cur_sample = None;
        self.cur_model_output = None;
        Ok(())
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn num_inference_steps(&self) -> usize {
        self.n
    }

    fn step(&mut self, model_output: &Tensor, step: usize, sample: &Tensor) -> Result<Tensor> {
        Ok(if self.counter < self.prk_len {
            self.step_prk(model_output, step, sample)
        } else {
            self.step_plms(model_output, step, sample)
        })
    }

    fn add_noise(&self, original: &Tensor, noise: &Tensor, step: usize) -> Tensor {
        ddpm_add_noise(&self.ac, original, noise, self.timesteps[step] as i64)
    }
}
