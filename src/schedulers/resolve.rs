//! A scheduler config as one diffusers class sees it: a key present in the file wins, an absent
//! key takes that class's own `__init__` default, exactly as `Class.from_config(saved_config)`
//! does (diffusers 0.42.1; its `_compatibles` and `_class_name` handling only drops keys the
//! class does not take, so it changes no value). Keys the class does not read are ignored, as
//! there; values this code does not implement are refused, naming the key and the file.
use super::config::{
    BetaSchedule, FinalSigmasType, PredictionType, SchedulerConfig, Setting, TimestepSpacing,
};
use anyhow::{bail, Result};
use serde::Serialize;
use serde_json::{json, Value};
use std::path::PathBuf;

/// The diffusers scheduler classes studioize implements (DDPM for the training schedule only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulerClass {
    Pndm,
    Ddim,
    EulerDiscrete,
    EulerAncestralDiscrete,
    DpmSolverMultistep,
    LmsDiscrete,
    Ddpm,
}

impl SchedulerClass {
    /// diffusers' class name (`_class_name`).
    pub fn class_name(self) -> &'static str {
        match self {
            Self::Pndm => "PNDMScheduler",
            Self::Ddim => "DDIMScheduler",
            Self::EulerDiscrete => "EulerDiscreteScheduler",
            Self::EulerAncestralDiscrete => "EulerAncestralDiscreteScheduler",
            Self::DpmSolverMultistep => "DPMSolverMultistepScheduler",
            Self::LmsDiscrete => "LMSDiscreteScheduler",
            Self::Ddpm => "DDPMScheduler",
        }
    }

    /// The class of a `_class_name`, if studioize knows it.
    pub fn from_class_name(name: &str) -> Option<Self> {
        [
            Self::Pndm,
            Self::Ddim,
            Self::EulerDiscrete,
            Self::EulerAncestralDiscrete,
            Self::DpmSolverMultistep,
            Self::LmsDiscrete,
            Self::Ddpm,
        ]
        .into_iter()
        .find(|c| c.class_name() == name)
    }

    /// Whether this class's `__init__` takes `key` (for the keys [`SchedulerConfig`] names;
    /// the beta keys, `prediction_type`, `timestep_spacing` and `steps_offset` are everyone's).
    fn reads(self, key: &str) -> bool {
        use SchedulerClass::*;
        match key {
            "skip_prk_steps" => self == Pndm,
            "set_alpha_to_one" => matches!(self, Pndm | Ddim),
            "clip_sample" | "clip_sample_range" => matches!(self, Ddim | Ddpm),
            "use_karras_sigmas" => matches!(self, EulerDiscrete | DpmSolverMultistep | LmsDiscrete),
            "final_sigmas_type" => matches!(self, EulerDiscrete | DpmSolverMultistep),
            _ => true,
        }
    }

    /// The class's `__init__` defaults (keys it does not read: values that change nothing).
    fn defaults(self) -> ResolvedConfig {
        use SchedulerClass::*;
        ResolvedConfig {
            class: self,
            num_train_timesteps: 1000,
            beta_start: 0.0001,
            beta_end: 0.02,
            beta_schedule: BetaSchedule::Linear,
            trained_betas: None,
            steps_offset: 0,
            set_alpha_to_one: self == Ddim,
            skip_prk_steps: self != Pndm,
            timestep_spacing: if matches!(self, Pndm | Ddim | Ddpm) {
                TimestepSpacing::Leading
            } else {
                TimestepSpacing::Linspace
            },
            prediction_type: PredictionType::Epsilon,
            clip_sample: matches!(self, Ddim | Ddpm),
            clip_sample_range: 1.0,
            use_karras_sigmas: false,
            final_sigmas_type: FinalSigmasType::Zero,
            eta: 0.0,
            source: None,
        }
    }

    /// Keys outside [`SchedulerConfig`]'s fields that the class reads, with the values this
    /// code implements (diffusers' defaults, and the values its `__init__` maps onto them).
    fn fixed_keys(self) -> Vec<(&'static str, Vec<Value>)> {
        use SchedulerClass::*;
        let f = || vec![json!(false)];
        let null = || vec![Value::Null];
        let mut keys = vec![("rescale_betas_zero_snr", f())];
        match self {
            Ddim => keys.push(("thresholding", f())),
            EulerDiscrete => keys.extend([
                ("interpolation_type", vec![json!("linear")]),
                ("timestep_type", vec![json!("discrete")]),
                ("use_exponential_sigmas", f()),
                ("use_beta_sigmas", f()),
                ("sigma_min", null()),
                ("sigma_max", null()),
            ]),
            DpmSolverMultistep => keys.extend([
                ("solver_order", vec![json!(2)]),
                ("algorithm_type", vec![json!("dpmsolver++"), json!("deis")]),
                (
                    "solver_type",
                    ["midpoint", "logrho", "bh1", "bh2"]
                        .map(|s| json!(s))
                        .into(),
                ),
                ("lower_order_final", vec![json!(true)]),
                ("euler_at_final", f()),
                ("thresholding", f()),
                ("use_exponential_sigmas", f()),
                ("use_beta_sigmas", f()),
                ("use_lu_lambdas", f()),
                ("use_flow_sigmas", f()),
                ("use_dynamic_shifting", f()),
                ("lambda_min_clipped", vec![json!("-Infinity")]),
                ("variance_type", null()),
            ]),
            LmsDiscrete => keys.extend([("use_exponential_sigmas", f()), ("use_beta_sigmas", f())]),
            Pndm => keys.clear(),
            EulerAncestralDiscrete | Ddpm => {}
        }
        keys
    }
}

/// A typed scheduler config for one class, every key resolved. It serialises under the config
/// keys (for reports and tests).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResolvedConfig {
    #[serde(skip)]
    pub class: SchedulerClass,
    pub num_train_timesteps: i64,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: BetaSchedule,
    /// Explicit betas, which replace `beta_schedule` when set.
    pub trained_betas: Option<Vec<f64>>,
    pub steps_offset: i64,
    /// PNDM, DDIM: the `alpha_bar` after the last step is 1 (else `alpha_bar_0`).
    pub set_alpha_to_one: bool,
    /// PNDM: PLMS only (else the Runge-Kutta warm-up of F-PNDM first).
    pub skip_prk_steps: bool,
    pub timestep_spacing: TimestepSpacing,
    pub prediction_type: PredictionType,
    /// DDIM: clip the predicted `x0` to `[-clip_sample_range, clip_sample_range]`.
    pub clip_sample: bool,
    pub clip_sample_range: f64,
    pub use_karras_sigmas: bool,
    pub final_sigmas_type: FinalSigmasType,
    /// DDIM's `eta` (diffusers' pipeline argument, not a config key): 0 unless set by code.
    pub eta: f64,
    /// The file the config came from, named in errors.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

fn known<T: Copy>(
    key: &str,
    s: &Option<Setting<T>>,
    default: T,
    supported: &str,
    class: SchedulerClass,
    file: &str,
) -> Result<T> {
    match s {
        None => Ok(default),
        Some(Setting::Known(v)) => Ok(*v),
        Some(Setting::Unknown(v)) => bail!(
            "{file}: {key}: '{v}' is not supported by {} (supported: {supported})",
            class.class_name()
        ),
    }
}

/// JSON values equal as diffusers compares them (`2 == 2.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

impl SchedulerConfig {
    /// This config as `class` sees it (see the module documentation).
    pub fn resolve(&self, class: SchedulerClass) -> Result<ResolvedConfig> {
        let file = self.source_name();
        let mut r = class.defaults();
        self.take_plain_keys(class, &mut r);
        r.trained_betas = self.trained_betas.clone();
        self.take_named_keys(class, &mut r, &file)?;
        self.check_fixed_keys(class, &file)?;
        check_lengths(&r, &file)?;
        r.source = self.source.clone();
        Ok(r)
    }

    /// Copies the set numeric and boolean keys that `class` reads over its defaults in `r`.
    fn take_plain_keys(&self, class: SchedulerClass, r: &mut ResolvedConfig) {
        let reads = |k: &str| class.reads(k);
        macro_rules! take {
            ($key:ident) => {
                if reads(stringify!($key)) {
                    if let Some(v) = &self.$key {
                        r.$key = *v;
                    }
                }
            };
        }
        take!(num_train_timesteps);
        take!(beta_start);
        take!(beta_end);
        take!(steps_offset);
        take!(set_alpha_to_one);
        take!(skip_prk_steps);
        take!(clip_sample);
        take!(clip_sample_range);
        take!(use_karras_sigmas);
    }

    /// Sets the named-value keys (schedule, prediction, spacing, final sigmas) in `r`, refusing
    /// values `class` does not support.
    fn take_named_keys(
        &self,
        class: SchedulerClass,
        r: &mut ResolvedConfig,
        file: &str,
    ) -> Result<()> {
        let schedules = match class {
            SchedulerClass::Ddpm => "linear, scaled_linear, squaredcos_cap_v2, sigmoid",
            _ => "linear, scaled_linear, squaredcos_cap_v2",
        };
        r.beta_schedule = known(
            "beta_schedule",
            &self.beta_schedule,
            r.beta_schedule,
            schedules,
            class,
            file,
        )?;
        if r.beta_schedule == BetaSchedule::Sigmoid
            && class != SchedulerClass::Ddpm
            && r.trained_betas.is_none()
        {
            bail!(
                "{file}: beta_schedule: 'sigmoid' is not supported by {} (supported: {schedules})",
                class.class_name()
            );
        }
        r.prediction_type = known(
            "prediction_type",
            &self.prediction_type,
            r.prediction_type,
            "epsilon, v_prediction",
            class,
            file,
        )?;
        r.timestep_spacing = known(
            "timestep_spacing",
            &self.timestep_spacing,
            r.timestep_spacing,
            "leading, trailing, linspace",
            class,
            file,
        )?;
        if class.reads("final_sigmas_type") {
            r.final_sigmas_type = known(
                "final_sigmas_type",
                &self.final_sigmas_type,
                r.final_sigmas_type,
                "zero, sigma_min",
                class,
                file,
            )?;
        }
        Ok(())
    }

    /// Refuses values of the keys `class` fixes (e.g. `solver_order`) other than the ones it
    /// supports.
    fn check_fixed_keys(&self, class: SchedulerClass, file: &str) -> Result<()> {
        for (key, ok) in class.fixed_keys() {
            if let Some(v) = self.other.get(key) {
                if !ok.iter().any(|o| same(o, v)) {
                    let ok: Vec<String> = ok.iter().map(Value::to_string).collect();
                    bail!(
                        "{file}: {key}: {v} is not supported by {} (supported: {})",
                        class.class_name(),
                        ok.join(", ")
                    );
                }
            }
        }
        Ok(())
    }

    /// This config as the named sampler (see [`super::SAMPLERS`]) sees it: its diffusers
    /// class's view, and for `dpmpp-2m-karras` `use_karras_sigmas` forced on, as
    /// `DPMSolverMultistepScheduler.from_config(cfg, use_karras_sigmas=True)`.
    pub fn for_sampler(&self, sampler: &str) -> Result<ResolvedConfig> {
        let class = match sampler {
            "pndm" => SchedulerClass::Pndm,
            "ddim" => SchedulerClass::Ddim,
            "euler" => SchedulerClass::EulerDiscrete,
            "euler-a" => SchedulerClass::EulerAncestralDiscrete,
            "dpmpp-2m" | "dpmpp-2m-karras" => SchedulerClass::DpmSolverMultistep,
            "lms" => SchedulerClass::LmsDiscrete,
            other => bail!(
                "unknown sampler '{other}' (one of: {})",
                super::SAMPLERS.join(", ")
            ),
        };
        let mut r = self.resolve(class)?;
        if sampler == "dpmpp-2m-karras" {
            r.use_karras_sigmas = true;
        }
        Ok(r)
    }
}

/// Refuses fewer than 2 training steps, and trained betas of another length.
fn check_lengths(r: &ResolvedConfig, file: &str) -> Result<()> {
    if r.num_train_timesteps < 2 {
        bail!(
            "{file}: num_train_timesteps: {} is too small",
            r.num_train_timesteps
        );
    }
    if let Some(b) = &r.trained_betas {
        if b.len() as i64 != r.num_train_timesteps {
            bail!(
                "{file}: trained_betas: {} values for num_train_timesteps {}",
                b.len(),
                r.num_train_timesteps
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_keys_take_the_class_defaults() {
        let mut c = SchedulerConfig::sd14();
        c.clip_sample = None;
        c.set_alpha_to_one = None;
        let ddim = c.resolve(SchedulerClass::Ddim).unwrap();
        assert!(ddim.clip_sample && ddim.set_alpha_to_one);
        assert_eq!(ddim.timestep_spacing, TimestepSpacing::Leading);
        let pndm = c.resolve(SchedulerClass::Pndm).unwrap();
        assert!(!pndm.set_alpha_to_one && pndm.skip_prk_steps);
        let euler = c.resolve(SchedulerClass::EulerDiscrete).unwrap();
        assert_eq!(euler.timestep_spacing, TimestepSpacing::Linspace);
        assert_eq!(euler.beta_schedule, BetaSchedule::ScaledLinear);
        c.beta_schedule = None;
        c.skip_prk_steps = None;
        assert_eq!(
            c.resolve(SchedulerClass::Ddpm).unwrap().beta_schedule,
            BetaSchedule::Linear
        );
        assert!(!c.resolve(SchedulerClass::Pndm).unwrap().skip_prk_steps);
    }

    #[test]
    fn unsupported_values_are_refused_only_by_the_classes_that_read_them() {
        let mut c = SchedulerConfig::sd14();
        c.other.insert("solver_order".into(), json!(3));
        c.other.insert("thresholding".into(), json!(true));
        let err = c
            .resolve(SchedulerClass::DpmSolverMultistep)
            .unwrap_err()
            .to_string();
        assert!(err.contains("solver_order: 3"), "{err}");
        assert!(c
            .resolve(SchedulerClass::Ddim)
            .unwrap_err()
            .to_string()
            .contains("thresholding: true"));
        c.resolve(SchedulerClass::Pndm).unwrap();
        c.resolve(SchedulerClass::EulerDiscrete).unwrap();
        c.prediction_type = Some(Setting::Unknown("sample".into()));
        let err = c.resolve(SchedulerClass::Pndm).unwrap_err().to_string();
        assert!(
            err.contains("prediction_type: 'sample'") && err.contains("scheduler_config.json"),
            "{err}"
        );
    }
}
