//! The noise schedule of a resolved config: betas and `alphas_cumprod` over the training
//! timesteps, computed with fp32 torch ops as diffusers does (its numbers to the last bit).
//! The samplers and the training objective both take it from here.
use super::config::BetaSchedule;
use super::resolve::ResolvedConfig;
use tch::{Device, Kind, Tensor};

/// GLIDE's cosine schedule (`betas_for_alpha_bar`, max beta 0.999), in f64 as Python's `math`,
/// then fp32.
fn squaredcos_cap_v2(n: i64) -> Tensor {
    let alpha_bar = |t: f64| {
        ((t + 0.008) / 1.008 * std::f64::consts::PI / 2.0)
            .cos()
            .powi(2)
    };
    let betas: Vec<f64> = (0..n)
        .map(|i| {
            let (t1, t2) = (i as f64 / n as f64, (i + 1) as f64 / n as f64);
            (1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999)
        })
        .collect();
    Tensor::from_slice(&betas).to_kind(Kind::Float)
}

impl ResolvedConfig {
    /// The betas (fp32, CPU).
    pub fn betas(&self) -> Tensor {
        let opts = (Kind::Float, Device::Cpu);
        let n = self.num_train_timesteps;
        if let Some(b) = &self.trained_betas {
            return Tensor::from_slice(b).to_kind(Kind::Float);
        }
        let (start, end) = (self.beta_start, self.beta_end);
        match self.beta_schedule {
            BetaSchedule::Linear => Tensor::linspace(start, end, n, opts),
            BetaSchedule::ScaledLinear => {
                Tensor::linspace(start.sqrt(), end.sqrt(), n, opts).pow_tensor_scalar(2)
            }
            BetaSchedule::SquaredcosCapV2 => squaredcos_cap_v2(n),
            BetaSchedule::Sigmoid => {
                Tensor::linspace(-6.0, 6.0, n, opts).sigmoid() * (end - start) + start
            }
        }
    }

    /// `alphas_cumprod` (fp32, CPU), as diffusers' `scheduler.alphas_cumprod`.
    pub fn alphas_cumprod_tensor(&self) -> Tensor {
        (-self.betas() + 1.0).cumprod(0, Kind::Float)
    }

    /// `alphas_cumprod` as f64 (exactly the fp32 numbers).
    pub fn alphas_cumprod(&self) -> Vec<f64> {
        Vec::<f32>::try_from(&self.alphas_cumprod_tensor())
            .expect("1-d float tensor")
            .into_iter()
            .map(f64::from)
            .collect()
    }

    /// `sqrt((1 - alpha_bar) / alpha_bar)` per training timestep, in fp32 arithmetic as
    /// diffusers' `((1 - alphas_cumprod) / alphas_cumprod) ** 0.5`.
    pub fn train_sigmas(&self) -> Vec<f64> {
        self.alphas_cumprod()
            .iter()
            .map(|&a| {
                let a = a as f32;
                f64::from(((1.0 - a) / a).sqrt())
            })
            .collect()
    }

    /// `np.log` of [`Self::train_sigmas`], kept in fp32 as numpy does for an fp32 array.
    pub fn train_log_sigmas(&self) -> Vec<f64> {
        self.train_sigmas()
            .iter()
            .map(|s| f64::from(s.ln() as f32))
            .collect()
    }
}
