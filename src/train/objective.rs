//! The fine-tuning objective of diffusers' `train_text_to_image.py`: DDPM forward noising of
//! latents, the epsilon or velocity target, MSE, and optional min-SNR-gamma weighting.
//! The schedule is the scheduler module's (`alphas_cumprod` of the model's scheduler config as
//! diffusers' `DDPMScheduler` reads it), in fp32 torch ops, so the numbers agree to the last
//! bits.
//!
//! [`Objective`] is the loss of a run, configured once: the loop asks it for the step's random
//! draws ([`Objective::draw`]) and for the loss of a prediction ([`Objective::loss`]). A
//! DreamBooth prior-loss weight is one more setting of it; a masked loss would be another, not
//! code in the loop.
use super::config::TrainSection;
use crate::pipelines::StableDiffusion;
use crate::schedulers::{ResolvedConfig, SchedulerClass, SchedulerConfig};
use anyhow::{bail, Result};
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

/// Standard normal noise of `size` (`[B, C, H, W]`) drawn on the CPU generator, plus, when
/// `offset > 0`, a second draw of `[B, C, 1, 1]` scaled by `offset` (the "noise offset": a
/// per-sample, per-channel shift of the noise's mean).
pub fn offset_noise(size: &[i64], offset: f64) -> Tensor {
    let mut noise = Tensor::randn(size, (Kind::Float, Device::Cpu));
    if offset > 0.0 {
        noise += Tensor::randn([size[0], size[1], 1, 1], (Kind::Float, Device::Cpu)) * offset;
    }
    noise
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

/// The random draws of one micro-step.
pub struct Draws {
    /// Gaussian noise of the latents' shape (plus the per-channel offset noise).
    pub noise: Tensor,
    /// One training timestep per sample, uniform over the schedule.
    pub timesteps: Tensor,
}

/// The training objective of a run (see the module docs).
pub struct Objective {
    schedule: NoiseSchedule,
    prediction: PredictionType,
    /// `train.noise_offset`: scale of per-sample, per-channel noise added to the noise.
    noise_offset: f64,
    /// `train.snr_gamma`: min-SNR-gamma loss weighting.
    snr_gamma: Option<f64>,
    /// `dreambooth.prior_loss_weight`: the weight of the class rows' loss.
    prior_loss_weight: f64,
}

impl Objective {
    /// The objective of `train` on the model: `DDPMScheduler.from_pretrained(model)`'s
    /// schedule and target, with `train.prediction_type` registered over the file's, as
    /// train_text_to_image.py does.
    pub fn for_model(sd: &StableDiffusion, t: &TrainSection) -> Result<Self> {
        let Some(cfg) = &sd.scheduler_config else {
            bail!(
                "the model has no scheduler/scheduler_config.json (training needs its noise schedule)"
            );
        };
        let mut cfg = cfg.clone();
        if let Some(p) = t.prediction_type {
            cfg.prediction_type = Some(p.into());
        }
        let ddpm = NoiseSchedule::ddpm(&cfg)?;
        Ok(Self {
            schedule: NoiseSchedule::new(&ddpm),
            prediction: ddpm.prediction_type,
            noise_offset: t.noise_offset,
            snr_gamma: t.snr_gamma,
            prior_loss_weight: 1.0,
        })
    }

    /// The objective with DreamBooth's prior-loss weight.
    pub fn with_prior_loss_weight(self, weight: f64) -> Self {
        Self {
            prior_loss_weight: weight,
            ..self
        }
    }

    pub fn num_train_timesteps(&self) -> i64 {
        self.schedule.num_train_timesteps()
    }

    /// The draws of a micro-step for `latents`, from the CPU default generator in a fixed
    /// order (noise, offset noise, timesteps), moved to the latents' device.
    pub fn draw(&self, latents: &Tensor) -> Draws {
        let device = latents.device();
        let s = latents.size();
        let noise = offset_noise(&s, self.noise_offset).to_device(device);
        let n = self.num_train_timesteps();
        let timesteps = Tensor::randint(n, [s[0]], (Kind::Int64, Device::Cpu)).to_device(device);
        Draws { noise, timesteps }
    }

    /// The noised latents `x_t` of `x0` at `timesteps`.
    pub fn noisy(&self, x0: &Tensor, noise: &Tensor, timesteps: &Tensor) -> Tensor {
        self.schedule.add_noise(x0, noise, timesteps)
    }

    /// The training loss of the prediction `pred` for `x0` noised with `draws`: MSE to the
    /// target, min-SNR weighted when configured. With `prior_rows > 0` the last rows are
    /// DreamBooth class images: the loss is then the instance rows' loss plus the prior-loss
    /// weight times the class rows' plain MSE, as `train_dreambooth.py` (whose min-SNR weights
    /// are taken over all rows' timesteps; here over the instance rows', which they weight).
    pub fn loss(&self, pred: &Tensor, x0: &Tensor, draws: &Draws, prior_rows: i64) -> Tensor {
        let Draws { noise, timesteps } = draws;
        let tgt = target(&self.schedule, self.prediction, x0, noise, timesteps);
        let n = pred.size()[0] - prior_rows.clamp(0, pred.size()[0]);
        let instance = |x: &Tensor| x.narrow(0, 0, n);
        let t = instance(timesteps);
        let weights = self
            .snr_gamma
            .map(|g| self.schedule.min_snr_weights(&t, g, self.prediction));
        let loss = mse(&instance(pred), &instance(&tgt), weights.as_ref());
        if n == pred.size()[0] {
            return loss;
        }
        let class = |x: &Tensor| x.narrow(0, n, pred.size()[0] - n);
        loss + mse(&class(pred), &class(&tgt), None) * self.prior_loss_weight
    }

    /// The unweighted MSE of each sample (`[B]`): the validation loss.
    pub fn per_sample_error(
        &self,
        pred: &Tensor,
        x0: &Tensor,
        noise: &Tensor,
        timesteps: &Tensor,
    ) -> Tensor {
        per_sample_mse(
            pred,
            &target(&self.schedule, self.prediction, x0, noise, timesteps),
        )
    }
}
