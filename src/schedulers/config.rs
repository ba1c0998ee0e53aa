//! `scheduler/scheduler_config.json`: the noise schedule and the sampler options of diffusers'
//! schedulers (one config serves every sampler, as diffusers' `from_config`).
use anyhow::{bail, Result};
use serde::Deserialize;
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SchedulerConfig {
    #[serde(rename = "_class_name")]
    pub class_name: Option<String>,
    pub num_train_timesteps: i64,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: String,
    pub trained_betas: Option<Vec<f64>>,
    pub steps_offset: i64,
    /// `None`: the sampler class's default (diffusers fills absent keys from each class's own
    /// defaults, and SD 1.4's config predates some keys); see [`SchedulerConfig::for_sampler`].
    pub set_alpha_to_one: Option<bool>,
    pub skip_prk_steps: bool,
    pub timestep_spacing: Option<String>,
    pub prediction_type: String,
    pub clip_sample: Option<bool>,
    pub clip_sample_range: f64,
    pub use_karras_sigmas: bool,
    pub final_sigmas_type: String,
    pub eta: f64,
}

impl Default for SchedulerConfig {
    /// SD 1.4's scheduler config.
    fn default() -> Self {
        Self {
            class_name: Some("PNDMScheduler".into()),
            num_train_timesteps: 1000,
            beta_start: 0.00085,
            beta_end: 0.012,
            beta_schedule: "scaled_linear".into(),
            trained_betas: None,
            steps_offset: 1,
            set_alpha_to_one: Some(false),
            skip_prk_steps: true,
            timestep_spacing: None,
            prediction_type: "epsilon".into(),
            clip_sample: Some(false),
            clip_sample_range: 1.0,
            use_karras_sigmas: false,
            final_sigmas_type: "zero".into(),
            eta: 0.0,
        }
    }
}

/// How inference timesteps are spread over the training schedule (Lin et al. 2023, table 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spacing {
    Leading,
    Trailing,
    Linspace,
}

/// What the model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prediction {
    Epsilon,
    VPrediction,
}

impl SchedulerConfig {
    pub fn validate(&self) -> Result<()> {
        self.spacing()?;
        self.prediction()?;
        if self.trained_betas.is_none()
            && !["scaled_linear", "linear"].contains(&self.beta_schedule.as_str())
        {
            bail!(
                "beta_schedule: '{}' is not supported (scaled_linear, linear)",
                self.beta_schedule
            );
        }
        if !["zero", "sigma_min"].contains(&self.final_sigmas_type.as_str()) {
            bail!(
                "final_sigmas_type: '{}' is not supported (zero, sigma_min)",
                self.final_sigmas_type
            );
        }
        if self.num_train_timesteps < 2 {
            bail!(
                "num_train_timesteps: {} is too small",
                self.num_train_timesteps
            );
        }
        Ok(())
    }

    /// This config as the named sampler sees it: absent keys take that diffusers class's
    /// defaults (`timestep_spacing` leading for PNDM and DDIM, linspace for the others;
    /// `set_alpha_to_one` and `clip_sample` true for DDIM).
    pub fn for_sampler(&self, sampler: &str) -> Self {
        let mut c = self.clone();
        let leading = matches!(sampler, "pndm" | "ddim");
        c.timestep_spacing
            .get_or_insert_with(|| if leading { "leading" } else { "linspace" }.into());
        c.set_alpha_to_one.get_or_insert(sampler == "ddim");
        c.clip_sample.get_or_insert(sampler == "ddim");
        c
    }

    pub fn spacing(&self) -> Result<Spacing> {
        match self.timestep_spacing.as_deref().unwrap_or("leading") {
            "leading" => Ok(Spacing::Leading),
            "trailing" => Ok(Spacing::Trailing),
            "linspace" => Ok(Spacing::Linspace),
            other => {
                bail!("timestep_spacing: '{other}' is not supported (leading, trailing, linspace)")
            }
        }
    }

    pub fn prediction(&self) -> Result<Prediction> {
        match self.prediction_type.as_str() {
            "epsilon" => Ok(Prediction::Epsilon),
            "v_prediction" => Ok(Prediction::VPrediction),
            other => bail!("prediction_type: '{other}' is not supported (epsilon, v_prediction)"),
        }
    }

    /// `alphas_cumprod` over the training timesteps, computed with fp32 torch ops as diffusers
    /// does (the values are exactly diffusers' fp32 numbers, widened to f64).
    pub fn alphas_cumprod(&self) -> Vec<f64> {
        let opts = (Kind::Float, Device::Cpu);
        let n = self.num_train_timesteps;
        let betas = match &self.trained_betas {
            Some(b) => Tensor::from_slice(b).to_kind(Kind::Float),
            None if self.beta_schedule == "linear" => {
                Tensor::linspace(self.beta_start, self.beta_end, n, opts)
            }
            None => Tensor::linspace(self.beta_start.sqrt(), self.beta_end.sqrt(), n, opts)
                .pow_tensor_scalar(2),
        };
        let ac = (-betas + 1.0).cumprod(0, Kind::Float);
        Vec::<f32>::try_from(&ac)
            .expect("1-d float tensor")
            .into_iter()
            .map(f64::from)
            .collect()
    }

    /// `sqrt((1 - alpha_bar) / alpha_bar)` per training timestep, rounded to fp32 as diffusers'
    /// numpy copy of the fp32 tensor.
    pub fn train_sigmas(&self) -> Vec<f64> {
        self.alphas_cumprod()
            .iter()
            .map(|&a| (((1.0 - a) / a).sqrt() as f32) as f64)
            .collect()
    }
}
