//! `scheduler/scheduler_config.json` as written: every key optional, unknown keys kept, so that
//! each sampler can fill the absent ones from its own diffusers class (see
//! [`SchedulerConfig::for_sampler`] and `resolve.rs`), as `Class.from_config(saved_config)` does.
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How betas are spread over the training timesteps (`beta_schedule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BetaSchedule {
    /// `linspace(beta_start, beta_end)`.
    Linear,
    /// `linspace(sqrt(beta_start), sqrt(beta_end)) ** 2` (SD 1.x).
    ScaledLinear,
    /// The cosine `alpha_bar` of Nichol & Dhariwal (2021), betas capped at 0.999 (GLIDE).
    SquaredcosCapV2,
    /// `sigmoid(linspace(-6, 6)) * (beta_end - beta_start) + beta_start` (DDPMScheduler only).
    Sigmoid,
}

/// What the model predicts (`prediction_type`); also the training target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictionType {
    /// The added noise.
    Epsilon,
    /// The velocity `sqrt(alpha_bar) * noise - sqrt(1 - alpha_bar) * x0` (Salimans & Ho 2022).
    VPrediction,
}

/// How inference timesteps are spread over the training schedule (`timestep_spacing`; Lin et
/// al. 2023, table 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestepSpacing {
    Leading,
    Trailing,
    Linspace,
}

/// The sigma after the last step of the sigma-based samplers (`final_sigmas_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinalSigmasType {
    Zero,
    SigmaMin,
}

/// Each setting prints as its config-file name (`scaled_linear`, `v_prediction`, ...).
macro_rules! display_as_serde {
    ($($t:ty),*) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match serde_json::to_value(self) {
                    Ok(serde_json::Value::String(s)) => f.write_str(&s),
                    _ => write!(f, "{self:?}"),
                }
            }
        }
    )*};
}
display_as_serde!(
    BetaSchedule,
    PredictionType,
    TimestepSpacing,
    FinalSigmasType
);

/// A string setting as written: a value this code knows, or another one, kept so that the
/// sampler that reads the key can refuse it by name (a sampler that does not read it ignores
/// it, as diffusers does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Setting<T> {
    Known(T),
    Unknown(String),
}

impl<T> From<T> for Setting<T> {
    fn from(v: T) -> Self {
        Setting::Known(v)
    }
}

/// `scheduler_config.json` as written. `None`: the key is absent (or `null`) in the file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SchedulerConfig {
    #[serde(rename = "_class_name", skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_train_timesteps: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta_start: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta_end: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beta_schedule: Option<Setting<BetaSchedule>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trained_betas: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps_offset: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_alpha_to_one: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skip_prk_steps: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestep_spacing: Option<Setting<TimestepSpacing>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prediction_type: Option<Setting<PredictionType>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip_sample: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip_sample_range: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_karras_sigmas: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_sigmas_type: Option<Setting<FinalSigmasType>>,
    /// Every other key (`_diffusers_version`, `thresholding`, `solver_order`, ...). The samplers
    /// refuse those they read with a value other than the one this code implements.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
    /// The file this was read from, named in errors.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

impl SchedulerConfig {
    /// Reads `scheduler_config.json`. Python's non-finite numbers (`-Infinity`, as diffusers
    /// writes `lambda_min_clipped`) are accepted and kept as strings.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let value: serde_json::Value = serde_json::from_str(&quote_non_finite(&text))
            .map_err(|e| anyhow::anyhow!("{}: invalid JSON ({e})", path.display()))?;
        Self::from_value(value, Some(path))
    }

    /// From a parsed config; `source` is the file named in errors.
    pub fn from_value(value: serde_json::Value, source: Option<&Path>) -> Result<Self> {
        let mut cfg: Self = serde_json::from_value(value).map_err(|e| {
            anyhow::anyhow!("{}: invalid scheduler config ({e})", source_name(source))
        })?;
        cfg.source = source.map(Path::to_path_buf);
        Ok(cfg)
    }

    /// Stable Diffusion 1.4's `scheduler/scheduler_config.json` (CompVis/stable-diffusion-v1-4).
    pub fn sd14() -> Self {
        Self {
            class_name: Some("PNDMScheduler".into()),
            num_train_timesteps: Some(1000),
            beta_start: Some(0.00085),
            beta_end: Some(0.012),
            beta_schedule: Some(BetaSchedule::ScaledLinear.into()),
            steps_offset: Some(1),
            set_alpha_to_one: Some(false),
            skip_prk_steps: Some(true),
            clip_sample: Some(false),
            ..Self::default()
        }
    }

    /// The file's name for messages (`scheduler_config.json` when it was not read from one).
    pub fn source_name(&self) -> String {
        source_name(self.source.as_deref())
    }
}

fn source_name(source: Option<&Path>) -> String {
    source.map_or_else(
        || "scheduler_config.json".to_string(),
        |p| p.display().to_string(),
    )
}

/// Wraps the bare tokens `NaN`, `Infinity` and `-Infinity` that Python's `json` writes (and
/// JSON does not allow) in quotes, leaving string contents alone.
fn quote_non_finite(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if let Some(tok) = ["-Infinity", "Infinity", "NaN"]
            .into_iter()
            .find(|t| rest.starts_with(t))
        {
            out.push('"');
            out.push_str(tok);
            out.push('"');
            rest = &rest[tok.len()..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_tokens_are_quoted_outside_strings() {
        let t = r#"{"a": -Infinity, "b": "NaN \" Infinity", "c": [NaN, Infinity]}"#;
        assert_eq!(
            quote_non_finite(t),
            r#"{"a": "-Infinity", "b": "NaN \" Infinity", "c": ["NaN", "Infinity"]}"#
        );
    }

    #[test]
    fn unknown_strings_and_keys_are_kept() {
        let v = serde_json::json!({"beta_schedule": "cosine", "prediction_type": "v_prediction",
            "solver_order": 3, "trained_betas": null});
        let c = SchedulerConfig::from_value(v, None).unwrap();
        assert_eq!(c.beta_schedule, Some(Setting::Unknown("cosine".into())));
        assert_eq!(
            c.prediction_type,
            Some(Setting::Known(PredictionType::VPrediction))
        );
        assert_eq!(c.other["solver_order"], 3);
        assert_eq!(c.trained_betas, None);
        assert_eq!(c.clip_sample, None);
    }
}
