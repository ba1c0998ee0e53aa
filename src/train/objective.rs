//! The fine-tuning objective of diffusers' `train_text_to_image.py`: DDPM forward noising of
//! latents, the epsilon or velocity target, MSE, and optional min-SNR-gamma weighting.
//! The schedule is the scheduler module's (`alphas_cumprod` of the model's scheduler config as
//! diffusers' `DDPMScheduler` reads it), in fp32 torch ops, so the numbers agree to the last
//! bits.
use crate::schedulers::{ResolvedConfig, SchedulerClass, SchedulerConfig};
use anyhow::Result;
use tch::{Device, Kind, Tensor};

pub use crate::schedulers::PredictionType;

/// The training noise schedule: `alphas_cumprod` over the training timesteps.
pub struct NoiseSchedule {
    alphas_cumprod: Tensor,
}

impl NoiseSchedule {
    /// The schedule of a model's `scheduler_config.json` as `train_text_to_image.py` gets it
    /// (`DDPMScheduler.from_pretrained(model, subfolder="scheduler")`: absent keys take
    /// DDPMScheduler's defaults).
    pub fn from_config(cfg: &SchedulerConfig) -> Result<Self> {
        Ok(Self::new(&Self::ddpm(cfg)?))
    }

    /// The config as `DDPMScheduler` reads it (its `prediction_type` is the default target).
    pub fn ddpm(cfg: &SchedulerConfig) -> Result<ResolvedConfig> {
        cfg.resolve(SchedulerClass::Ddpm)
    }

    /// The schedule of a resolved config.
    pub fn new(cfg: &ResolvedConfig) -> Self {
        Self {
            alphas_cumprod: cfg.alphas_cumprod_tensor(),
        }
    }

    pub fn num_train_timesteps(&self) -> i64 {
        self.alphas_cumprod.size()[0]
    }

    /// `(sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t))`, shaped `[B, 1, 1, 1]` on `device`.
    fn coefficients(&self, timesteps: &Tensor, device: Device) -> (Tensor, Tensor) {
        let ac = self
            .alphas_cumprod
            .index_select(0, &timesteps.to_device(Device::Cpu).to_kind(Kind::Int64));
        let a = ac.sqrt().view([-1, 1, 1, 1]).to_device(device);
        let s = (-&ac + 1.0).sqrt().view([-1, 1, 1, 1]).to_device(device);
        (a, s)
    }

    /// `sqrt(alpha_bar_t) * x0 + sqrt(1 - alpha_bar_t) * noise` (DDPMScheduler.add_noise).
    pub fn add_noise(&self, x0: &Tensor, noise: &Tensor, timesteps: &Tensor) -> Tensor {
        let (a, s) = self.coefficients(timesteps, x0.device());
        x0 * a.to_kind(x0.kind()) + noise * s.to_kind(x0.kind())
    }

    /// `sqrt(alpha_bar_t) * noise - sqrt(1 - alpha_bar_t) * x0` (DDPMScheduler.get_velocity).
    pub fn velocity(&self, x0: &Tensor, noise: &Tensor, timesteps: &Tensor) -> Tensor {
        let (a, s) = self.coefficients(timesteps, x0.device());
        noise * a.to_kind(x0.kind()) - x0 * s.to_kind(x0.kind())
    }

    /// Signal-to-noise ratio `alpha_bar_t / (1 - alpha_bar_t)` per timestep, `[B]` fp32.
    pub fn snr(&self, timesteps: &Tensor) -> Tensor {
        let ac = self
            .alphas_cumprod
            .index_select(0, &timesteps.to_device(Device::Cpu).to_kind(Kind::Int64));
        let ratio = ac.sqrt() / (-&ac + 1.0).sqrt();
        ratio.pow_tensor_scalar(2)
    }

    /// Per-sample loss weights of min-SNR-gamma (Hang et al. 2023) as diffusers computes them:
    /// `min(snr, gamma) / snr` for epsilon, `/ (snr + 1)` for v-prediction.
    pub fn min_snr_weights(
        &self,
        timesteps: &Tensor,
        gamma: f64,
        prediction: PredictionType,
    ) -> Tensor {
        let snr = self.snr(timesteps);
        let w = snr.clamp_max(gamma);
        match prediction {
            PredictionType::Epsilon => w / snr,
            PredictionType::VPrediction => w / (snr + 1.0),
        }
    }
}

/// The training target for a prediction type.
pub fn target(
    schedule: &NoiseSchedule,
    prediction: PredictionType,
    x0: &Tensor,
    noise: &Tensor,
    t: &Tensor,
) -> Tensor {
    match prediction {
        PredictionType::Epsilon => noise.shallow_clone(),
        PredictionType::VPrediction => schedule.velocity(x0, noise, t),
    }
}

/// MSE in fp32, averaged over everything; with `weights` ([B]) the per-sample means are weighted
/// first, as diffusers does under `snr_gamma`.
pub fn mse(pred: &Tensor, target: &Tensor, weights: Option<&Tensor>) -> Tensor {
    let d = (pred.to_kind(Kind::Float) - target.to_kind(Kind::Float)).square();
    match weights {
        None => d.mean(Kind::Float),
        Some(w) => {
            let per = d.mean_dim(&[1i64, 2, 3][..], false, Kind::Float);
            (per * w.to_device(pred.device())).mean(Kind::Float)
        }
    }
}

/// The MSE of each sample at each position (`[B]`), used by the validation loss.
pub fn per_sample_mse(pred: &Tensor, target: &Tensor) -> Tensor {
    (pred.to_kind(Kind::Float) - target.to_kind(Kind::Float))
        .square()
        .mean_dim(&[1i64, 2, 3][..], false, Kind::Float)
}
