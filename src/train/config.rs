//! The experiment config of `studioize train`: one TOML file per experiment (see
//! `experiments/studio-sd14.toml` for every key, documented), `--set key=value` overrides, and
//! optional hyper-parameter sweeps.
//!
//! Loading works on the TOML table before the typed structs are built, so that every error can
//! name the file and the dotted key (`train.learning_rate`):
//! 1. the file is parsed into a table; a missing `experiment` defaults to the file stem;
//! 2. relative paths in the file are made absolute against the file's folder (a `model.base`
//!    Hugging Face repo id stays an id, as `hf://ORG/NAME`);
//! 3. `--set` overrides are applied (relative paths there are taken against the current folder);
//! 4. a missing `output.dir` defaults to `runs/<experiment>` in the current folder;
//! 5. the table is deserialized (`deny_unknown_fields` everywhere) and validated, sweep included.
//!
//! All paths of a loaded config are absolute, so [`ExperimentConfig::to_toml`] written into a run
//! folder loads back to an equal config.
use crate::weights::hub;
use anyhow::{anyhow, bail, Context, Result};
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use toml::{Table, Value};

/// A whole experiment: model, data, optimisation, output, and an optional sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// The experiment's name (default: the config file's stem).
    pub experiment: String,
    pub model: ModelSection,
    pub data: DataSection,
    #[serde(default)]
    pub train: TrainSection,
    /// The run-health detector's thresholds (used online by `train` and by `analyze`).
    #[serde(default)]
    pub monitor: crate::train::health::DetectorConfig,
    pub output: OutputSection,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<SweepSection>,
}

/// `[model]`: the base checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// A diffusers folder (`model_index.json`, `unet/`, `vae/`, ...), a single checkpoint file,
    /// or a Hugging Face repo id: `hf://ORG/NAME[@REV]`, or `ORG/NAME` when that is no path
    /// beside the config but is in the hub cache (kept as `hf://ORG/NAME`).
    pub base: PathBuf,
    /// For single-file checkpoints: a diffusers folder providing the configs and tokenizer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<PathBuf>,
    /// Weight variant to load (e.g. `fp16` for `*.fp16.safetensors`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// `[data]`: the training images and how they are prepared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// Folder of training images (searched recursively).
    pub images: PathBuf,
    /// `file_name,text` CSV; without it, `metadata.csv` in `images`, else `image.txt` sidecars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub captions: Option<PathBuf>,
    #[serde(default = "d_resolution")]
    pub resolution: u32,
    /// Fraction of `images` held out for validation. Unset: 0.1, or 0 when
    /// `validation_images` is given. Use [`DataSection::validation_split`] for the value in force.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "validation_split"
    )]
    pub validation_split_setting: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_images: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_captions: Option<PathBuf>,
    /// General images mixed in against forgetting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior_images: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior_captions: Option<PathBuf>,
    #[serde(default)]
    pub center_crop: bool,
    #[serde(default = "d_true")]
    pub random_flip: bool,
    /// Probability of replacing a caption by the empty string.
    #[serde(default)]
    pub caption_dropout: f64,
    /// Aspect-ratio buckets instead of square crops (see `data::buckets`).
    #[serde(default)]
    pub aspect_buckets: bool,
    /// Bucket sides (defaults: resolution / 2, resolution × 2, 64 px; 8 px below 256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_min_side: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_max_side: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_step: Option<u32>,
    #[serde(default)]
    pub latent_cache: bool,
    /// Decoding threads of the loader (0: decode on the training thread, no prefetch).
    #[serde(default = "d_num_workers")]
    pub num_workers: usize,
    /// Seed of the train/validation split.
    #[serde(default)]
    pub validation_seed: u64,
}

impl DataSection {
    /// The bucket geometry when `aspect_buckets` is on.
    pub fn bucket_spec(&self) -> Option<crate::data::buckets::BucketSpec> {
        if !self.aspect_buckets {
            return None;
        }
        let d = crate::data::buckets::BucketSpec::for_resolution(self.resolution);
        Some(crate::data::buckets::BucketSpec {
            resolution: self.resolution,
            min_side: self.bucket_min_side.unwrap_or(d.min_side),
            max_side: self.bucket_max_side.unwrap_or(d.max_side),
            step: self.bucket_step.unwrap_or(d.step),
        })
    }

    /// The validation fraction in force: the setting, else 0.1 (0 with `validation_images`).
    pub fn validation_split(&self) -> f64 {
        match self.validation_split_setting {
            Some(v) => v,
            None if self.validation_images.is_some() => 0.0,
            None => 0.1,
        }
    }
}

/// Learning-rate schedules (diffusers' `get_scheduler` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrSchedule {
    Constant,
    ConstantWithWarmup,
    Linear,
    Cosine,
}

/// What the UNet is trained to predict: the schedulers' `prediction_type` (same names).
pub use crate::schedulers::PredictionType;

/// Autocast precision of the forward/backward pass (weights and optimizer stay f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MixedPrecision {
    No,
    Fp16,
    Bf16,
}

/// The dtype checkpoint weights are stored in (diffusers loads each of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SaveDtype {
    #[default]
    Fp32,
    Fp16,
    Bf16,
}

impl SaveDtype {
    pub fn kind(self) -> tch::Kind {
        match self {
            SaveDtype::Fp32 => tch::Kind::Float,
            SaveDtype::Fp16 => tch::Kind::Half,
            SaveDtype::Bf16 => tch::Kind::BFloat16,
        }
    }
}

/// `[train]`: optimisation, validation and checkpointing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSection {
    /// Optimizer steps.
    pub steps: u64,
    /// Images per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub gradient_accumulation: usize,
    pub learning_rate: f64,
    pub lr_schedule: LrSchedule,
    pub warmup_steps: u64,
    pub seed: u64,
    /// Optimizer steps between checkpoints (0: only at the end).
    pub checkpoint_every: u64,
    /// Keep at most this many checkpoints (the newest ones, plus the best by validation loss);
    /// unset: keep all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoints_total_limit: Option<usize>,
    /// Dtype of the checkpoint weights (the newest checkpoint also keeps fp32 masters for
    /// resuming when this is not fp32).
    pub save_dtype: SaveDtype,
    /// Optimizer steps between validation losses (0: never).
    pub validate_every: u64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub adam_weight_decay: f64,
    pub adam_epsilon: f64,
    pub max_grad_norm: f64,
    pub ema: bool,
    pub ema_decay: f64,
    /// Unset: the model's scheduler's `prediction_type`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prediction_type: Option<PredictionType>,
    /// Min-SNR loss weighting gamma (unset: plain MSE).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snr_gamma: Option<f64>,
    pub noise_offset: f64,
    pub train_text_encoder: bool,
    pub mixed_precision: MixedPrecision,
    /// Number of fixed timesteps, spread over the schedule, of the deterministic validation loss.
    pub validation_timesteps: usize,
    pub validation_prompts: Vec<String>,
    /// Input images of the validation samples.
    pub validation_inputs: Vec<PathBuf>,
    pub sample_every_checkpoint: bool,
    /// Detector labels that end a run early.
    pub stop_on: Vec<String>,
}

impl Default for TrainSection {
    fn default() -> Self {
        TrainSection {
            steps: 15000,
            batch_size: 4,
            gradient_accumulation: 1,
            learning_rate: 1e-5,
            lr_schedule: LrSchedule::ConstantWithWarmup,
            warmup_steps: 500,
            seed: 0,
            checkpoint_every: 1000,
            checkpoints_total_limit: None,
            save_dtype: SaveDtype::Fp32,
            validate_every: 250,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_weight_decay: 1e-2,
            adam_epsilon: 1e-8,
            max_grad_norm: 1.0,
            ema: false,
            ema_decay: 0.9999,
            prediction_type: None,
            snr_gamma: None,
            noise_offset: 0.0,
            train_text_encoder: false,
            mixed_precision: MixedPrecision::No,
            validation_timesteps: 10,
            validation_prompts: Vec::new(),
            validation_inputs: Vec::new(),
            sample_every_checkpoint: false,
            stop_on: Vec::new(),
        }
    }
}

/// `[output]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    /// The run folder (default: `runs/<experiment>` in the current folder).
    pub dir: PathBuf,
}

/// How sweep lists combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SweepMode {
    /// Every combination (first key varies slowest).
    #[default]
    Grid,
    /// The i-th values of every list together; all lists have one length.
    Zip,
}

/// `[sweep]`: `mode` and, for every swept key, its list of values. After loading, keys are
/// full dotted keys (`train.learning_rate`) sorted alphabetically (TOML tables do not keep
/// the file's order); the first key varies slowest in a grid and comes first in ids.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SweepSection {
    pub mode: SweepMode,
    pub params: Vec<(String, Vec<Value>)>,
}

impl Serialize for SweepSection {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.params.len() + 1))?;
        m.serialize_entry("mode", &self.mode)?;
        for (k, v) in &self.params {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for SweepSection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SweepSection;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a table of key = [values] and an optional mode")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<SweepSection, A::Error> {
                let mut out = SweepSection::default();
                while let Some(key) = map.next_key::<String>()? {
                    if key == "mode" {
                        out.mode = map.next_value()?;
                    } else {
                        let values: Vec<Value> = map.next_value()?;
                        out.params.push((key, values));
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

/// One point of a sweep: its id (a file-name-safe `lr=3e-06,warmup=100`, empty without a
/// sweep) and its config (no sweep, `output.dir` = `<output.dir>/<id>`).
#[derive(Debug, Clone, PartialEq)]
pub struct SweepPoint {
    pub id: String,
    pub config: ExperimentConfig,
}

fn d_resolution() -> u32 {
    512
}
fn d_true() -> bool {
    true
}
fn d_num_workers() -> usize {
    2
}

const TOP_KEYS: [&str; 1] = ["experiment"];
const SECTIONS: [&str; 6] = ["model", "data", "train", "monitor", "output", "sweep"];
const MODEL_KEYS: [&str; 3] = ["base", "config", "variant"];
const DATA_KEYS: [&str; 18] = [
    "images",
    "captions",
    "resolution",
    "validation_split",
    "validation_images",
    "validation_captions",
    "prior_images",
    "prior_captions",
    "center_crop",
    "random_flip",
    "caption_dropout",
    "aspect_buckets",
    "bucket_min_side",
    "bucket_max_side",
    "bucket_step",
    "latent_cache",
    "num_workers",
    "validation_seed",
];
const TRAIN_KEYS: [&str; 28] = [
    "steps",
    "batch_size",
    "gradient_accumulation",
    "learning_rate",
    "lr_schedule",
    "warmup_steps",
    "seed",
    "checkpoint_every",
    "checkpoints_total_limit",
    "save_dtype",
    "validate_every",
    "adam_beta1",
    "adam_beta2",
    "adam_weight_decay",
    "adam_epsilon",
    "max_grad_norm",
    "ema",
    "ema_decay",
    "prediction_type",
    "snr_gamma",
    "noise_offset",
    "train_text_encoder",
    "mixed_precision",
    "validation_timesteps",
    "validation_prompts",
    "validation_inputs",
    "sample_every_checkpoint",
    "stop_on",
];
const MONITOR_KEYS: [&str; 12] = [
    "smoothing_window",
    "warmup_steps",
    "divergence_factor",
    "grad_explosion_factor",
    "grad_explosion_patience",
    "grad_median_window",
    "deconvergence_margin",
    "deconvergence_patience",
    "overfitting_margin",
    "overfitting_patience",
    "plateau_window_steps",
    "plateau_min_improvement",
];
const OUTPUT_KEYS: [&str; 1] = ["dir"];

/// Keys whose string values are paths (made absolute when loading).
const PATH_KEYS: [&str; 10] = [
    "model.base",
    "model.config",
    "data.images",
    "data.captions",
    "data.validation_images",
    "data.validation_captions",
    "data.prior_images",
    "data.prior_captions",
    "output.dir",
    "train.validation_inputs",
];

fn section_keys(section: &str) -> &'static [&'static str] {
    match section {
        "model" => &MODEL_KEYS,
        "data" => &DATA_KEYS,
        "train" => &TRAIN_KEYS,
        "monitor" => &MONITOR_KEYS,
        "output" => &OUTPUT_KEYS,
        _ => &[],
    }
}

/// Resolves a short (`learning_rate`, looked up in `[train]` first, then the other sections) or
/// dotted (`train.warmup_steps`) key to its full dotted form; `None` when no such key exists.
pub fn resolve_key(key: &str) -> Option<String> {
    let key = key.trim();
    if TOP_KEYS.contains(&key) {
        return Some(key.to_string());
    }
    match key.split_once('.') {
        Some((section, rest)) => section_keys(section)
            .contains(&rest)
            .then(|| key.to_string()),
        None => ["train", "data", "model", "monitor", "output"]
            .into_iter()
            .find(|s| section_keys(s).contains(&key))
            .map(|s| format!("{s}.{key}")),
    }
}

/// A short, readable name for a swept key, used in sweep point ids.
fn short_name(full_key: &str) -> String {
    let last = full_key.rsplit('.').next().unwrap_or(full_key);
    let s = match last {
        "learning_rate" => "lr",
        "warmup_steps" => "warmup",
        "batch_size" => "bs",
        "gradient_accumulation" => "accum",
        "lr_schedule" => "sched",
        "adam_weight_decay" => "wd",
        "adam_beta1" => "b1",
        "adam_beta2" => "b2",
        "adam_epsilon" => "eps",
        "max_grad_norm" => "clip",
        "ema_decay" => "ema_decay",
        "snr_gamma" => "snr",
        "noise_offset" => "noise",
        "prediction_type" => "pred",
        "mixed_precision" => "prec",
        "train_text_encoder" => "te",
        "caption_dropout" => "cdrop",
        "resolution" => "res",
        "validation_split" => "vsplit",
        other => other,
    };
    s.to_string()
}

impl ExperimentConfig {
    /// Every full dotted key the config accepts (sweep keys excepted).
    pub fn known_keys() -> Vec<String> {
        let mut out: Vec<String> = TOP_KEYS.iter().map(|s| s.to_string()).collect();
        for s in ["model", "data", "train", "monitor", "output"] {
            out.extend(section_keys(s).iter().map(|k| format!("{s}.{k}")));
        }
        out
    }

    /// Reads the TOML file, applies `--set key=value` overrides (dotted or short keys; values
    /// parsed as TOML scalars/arrays, anything unparsable taken as a bare string), validates.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).with_context(|| format!("{file}: cannot read"))?;
        let mut table: Table = text
            .parse()
            .map_err(|e: toml::de::Error| anyhow!("{file}: {}", e.to_string().trim_end()))?;
        let folder = absolute(path.parent().unwrap_or(Path::new("")))
            .with_context(|| format!("{file}: cannot resolve the file's folder"))?;
        let cwd = absolute(Path::new("")).context("cannot resolve the current folder")?;

        if !table.contains_key("experiment") {
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("experiment");
            table.insert("experiment".into(), Value::String(stem.to_string()));
        }
        resolve_table_paths(&mut table, &folder);

        let mut from_overrides = BTreeSet::new();
        for ov in overrides {
            let key = apply_override(&mut table, ov, &cwd).map_err(|e| anyhow!("{file}: {e}"))?;
            from_overrides.insert(key);
        }

        if !table
            .get("output")
            .and_then(|o| o.as_table())
            .is_some_and(|o| o.contains_key("dir"))
        {
            if let Some(Value::String(name)) = table.get("experiment") {
                let dir = cwd.join("runs").join(name).display().to_string();
                let output = table
                    .entry("output")
                    .or_insert_with(|| Value::Table(Table::new()));
                if let Value::Table(o) = output {
                    o.insert("dir".into(), Value::String(dir));
                }
            }
        }

        let mut cfg = ExperimentConfig::deserialize(Value::Table(table))
            .map_err(|e| anyhow!("{file}: {}", describe_de_error(&e, &from_overrides)))?;
        cfg.finish().map_err(|e| anyhow!("{file}: {e}"))?;
        Ok(cfg)
    }

    /// Resolves sweep keys and validates everything, sweep points included.
    fn finish(&mut self) -> Result<()> {
        if let Some(sweep) = &mut self.sweep {
            for (k, _) in &mut sweep.params {
                *k = resolve_key(k)
                    .ok_or_else(|| anyhow!("sweep: unknown key '{k}'{}", suggestion(k)))?;
            }
            // TOML tables do not keep the file's order: use the order of the full keys
            sweep.params.sort_by(|a, b| a.0.cmp(&b.0));
        }
        // write the split in force into the resolved config
        self.data.validation_split_setting = Some(self.data.validation_split());
        self.validate()?;
        self.sweep_points()?;
        Ok(())
    }

    /// Checks value ranges and consistency; errors name the dotted key.
    pub fn validate(&self) -> Result<()> {
        let t = &self.train;
        let d = &self.data;
        if self.experiment.trim().is_empty() {
            bail!("experiment: must not be empty");
        }
        if t.steps == 0 {
            bail!("train.steps: must be at least 1");
        }
        if t.batch_size == 0 {
            bail!("train.batch_size: must be at least 1");
        }
        if t.gradient_accumulation == 0 {
            bail!("train.gradient_accumulation: must be at least 1");
        }
        if !(t.learning_rate.is_finite() && t.learning_rate > 0.0) {
            bail!(
                "train.learning_rate: must be a finite number > 0, found {}",
                t.learning_rate
            );
        }
        for (k, v) in [("adam_beta1", t.adam_beta1), ("adam_beta2", t.adam_beta2)] {
            if !(0.0..1.0).contains(&v) {
                bail!("train.{k}: must be in [0, 1), found {v}");
            }
        }
        if !(t.adam_weight_decay.is_finite() && t.adam_weight_decay >= 0.0) {
            bail!(
                "train.adam_weight_decay: must be a finite number >= 0, found {}",
                t.adam_weight_decay
            );
        }
        if !(t.adam_epsilon.is_finite() && t.adam_epsilon > 0.0) {
            bail!(
                "train.adam_epsilon: must be a finite number > 0, found {}",
                t.adam_epsilon
            );
        }
        if t.max_grad_norm.is_nan() || t.max_grad_norm <= 0.0 {
            bail!(
                "train.max_grad_norm: must be > 0, found {}",
                t.max_grad_norm
            );
        }
        if !(0.0..=1.0).contains(&t.ema_decay) {
            bail!("train.ema_decay: must be in [0, 1], found {}", t.ema_decay);
        }
        if let Some(g) = t.snr_gamma {
            if !(g.is_finite() && g > 0.0) {
                bail!("train.snr_gamma: must be a finite number > 0, found {g}");
            }
        }
        if !(t.noise_offset.is_finite() && t.noise_offset >= 0.0) {
            bail!(
                "train.noise_offset: must be a finite number >= 0, found {}",
                t.noise_offset
            );
        }
        if t.checkpoints_total_limit == Some(0) {
            bail!("train.checkpoints_total_limit: must be at least 1 (leave it unset to keep every checkpoint)");
        }
        self.monitor.validate()?;
        if t.validation_timesteps == 0 {
            bail!("train.validation_timesteps: must be at least 1");
        }
        if d.resolution == 0 || !d.resolution.is_multiple_of(8) {
            bail!(
                "data.resolution: must be a positive multiple of 8, found {}",
                d.resolution
            );
        }
        if let Some(v) = d.validation_split_setting {
            if !(0.0..1.0).contains(&v) {
                bail!("data.validation_split: must be in [0, 1), found {v}");
            }
            if v > 0.0 && d.validation_images.is_some() {
                bail!("data.validation_split: give either a split or data.validation_images, not both");
            }
        }
        if d.validation_captions.is_some() && d.validation_images.is_none() {
            bail!("data.validation_captions: needs data.validation_images");
        }
        if d.prior_captions.is_some() && d.prior_images.is_none() {
            bail!("data.prior_captions: needs data.prior_images");
        }
        if !(0.0..=1.0).contains(&d.caption_dropout) {
            bail!(
                "data.caption_dropout: must be in [0, 1], found {}",
                d.caption_dropout
            );
        }
        if let Some(spec) = d.bucket_spec() {
            spec.validate()?;
        } else {
            for (key, v) in [
                ("bucket_min_side", d.bucket_min_side),
                ("bucket_max_side", d.bucket_max_side),
                ("bucket_step", d.bucket_step),
            ] {
                if v.is_some() {
                    bail!("data.{key}: only used with data.aspect_buckets = true");
                }
            }
        }
        if let Some(s) = &self.sweep {
            if s.params.is_empty() {
                bail!("sweep: no keys to sweep (give e.g. learning_rate = [1e-6, 1e-5])");
            }
            let mut seen = BTreeSet::new();
            for (k, v) in &s.params {
                if !seen.insert(k.as_str()) {
                    bail!("sweep.{k}: given twice");
                }
                if v.is_empty() {
                    bail!("sweep.{k}: empty list of values");
                }
                if k == "output.dir" || k == "experiment" {
                    bail!("sweep.{k}: cannot be swept");
                }
            }
            if s.mode == SweepMode::Zip {
                let (k0, v0) = &s.params[0];
                for (k, v) in &s.params[1..] {
                    if v.len() != v0.len() {
                        bail!(
                            "sweep.{k}: zip mode needs lists of one length, but {k} has {} values and {k0} has {}",
                            v.len(),
                            v0.len()
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// The resolved config as TOML (written into a run folder as `config.toml`).
    pub fn to_toml(&self) -> String {
        let body =
            toml::to_string_pretty(self).expect("an experiment config always serializes to TOML");
        format!(
            "# Resolved experiment config written by studioize; all paths are absolute.\n{body}"
        )
    }

    /// Expands the sweep into its points (see [`SweepPoint`]); without a sweep, one point with
    /// id "" and the config unchanged.
    pub fn sweep_points(&self) -> Result<Vec<SweepPoint>> {
        let Some(sweep) = &self.sweep else {
            return Ok(vec![SweepPoint {
                id: String::new(),
                config: self.clone(),
            }]);
        };
        let keys: Vec<String> = sweep
            .params
            .iter()
            .map(|(k, _)| resolve_key(k).ok_or_else(|| anyhow!("sweep: unknown key '{k}'")))
            .collect::<Result<_>>()?;
        let lens: Vec<usize> = sweep.params.iter().map(|(_, v)| v.len()).collect();
        let combos: Vec<Vec<usize>> = match sweep.mode {
            SweepMode::Zip => {
                let n = lens[0];
                if let Some(i) = lens.iter().position(|&l| l != n) {
                    bail!(
                        "sweep.{}: zip mode needs lists of one length, but {} has {} values and {} has {n}",
                        keys[i],
                        keys[i],
                        lens[i],
                        keys[0]
                    );
                }
                (0..n).map(|i| vec![i; keys.len()]).collect()
            }
            SweepMode::Grid => {
                let mut out = vec![vec![]];
                for &l in &lens {
                    out = out
                        .into_iter()
                        .flat_map(|prefix: Vec<usize>| {
                            (0..l).map(move |i| {
                                let mut p = prefix.clone();
                                p.push(i);
                                p
                            })
                        })
                        .collect();
                }
                out
            }
        };
        let mut names: Vec<String> = keys.iter().map(|k| short_name(k)).collect();
        for i in 0..names.len() {
            if names.iter().filter(|n| **n == names[i]).count() > 1 {
                names[i] = keys[i].clone();
            }
        }
        let base = match Value::try_from(self).context("cannot serialize the config")? {
            Value::Table(t) => t,
            _ => unreachable!("a struct serializes to a table"),
        };
        let mut used = BTreeSet::new();
        let mut points = Vec::with_capacity(combos.len());
        for combo in combos {
            let mut table = base.clone();
            table.remove("sweep");
            let mut parts = Vec::new();
            for (j, &i) in combo.iter().enumerate() {
                let value = sweep.params[j].1[i].clone();
                parts.push(format!("{}={}", names[j], id_value(&value)));
                set_dotted(&mut table, &keys[j], value)
                    .map_err(|e| anyhow!("sweep.{}: {e}", keys[j]))?;
            }
            let mut id = sanitize(&parts.join(","));
            if !used.insert(id.clone()) {
                let mut n = 2;
                while used.contains(&format!("{id}_{n}")) {
                    n += 1;
                }
                id = format!("{id}_{n}");
                used.insert(id.clone());
            }
            let mut config = ExperimentConfig::deserialize(Value::Table(table)).map_err(|e| {
                anyhow!(
                    "sweep point {id}: {}",
                    describe_de_error(&e, &BTreeSet::new())
                )
            })?;
            config.output.dir = self.output.dir.join(&id);
            config
                .validate()
                .map_err(|e| anyhow!("sweep point {id}: {e}"))?;
            points.push(SweepPoint { id, config });
        }
        Ok(points)
    }
}

/// `std::path::absolute` plus lexical removal of `.` and `..`.
fn absolute(p: &Path) -> Result<PathBuf> {
    let p = if p.as_os_str().is_empty() {
        Path::new(".")
    } else {
        p
    };
    let abs = std::path::absolute(p)?;
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

/// Whether a `model.base` value names a Hugging Face repo rather than a path: `hf://ORG/NAME`
/// always; `ORG/NAME[@REV]` when it is not an existing path against `base` but the repo is in the
/// hub cache (an uncached id must be written with `hf://`, since `models/sd` is as much a
/// relative path as an id).
fn is_model_repo_id(s: &str, base: &Path) -> bool {
    if s.starts_with(hub::HF_PREFIX) {
        return true;
    }
    let p = Path::new(s);
    if p.is_absolute() || base.join(p).symlink_metadata().is_ok() {
        return false;
    }
    match hub::RepoRef::parse(s) {
        Ok(Some(repo)) => hub::HubEnv::from_env()
            .cache
            .join(repo.folder_name())
            .is_dir(),
        _ => false,
    }
}

/// Makes a path value absolute against `base`; a `model.base` repo id becomes `hf://ORG/NAME`
/// (unambiguous wherever the config is loaded from).
fn resolve_path_value(v: &mut Value, base: &Path, key: &str) {
    match v {
        Value::String(s) if key == "model.base" && s.starts_with(hub::HF_PREFIX) => {}
        Value::String(s) if key == "model.base" && is_model_repo_id(s, base) => {
            *s = format!("{}{s}", hub::HF_PREFIX);
        }
        Value::String(s) => {
            let p = Path::new(s.as_str());
            let joined = if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            };
            if let Ok(abs) = absolute(&joined) {
                *s = abs.display().to_string();
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|i| resolve_path_value(i, base, key)),
        _ => {}
    }
}

/// Makes the file's relative paths absolute (sweep lists of path keys included).
fn resolve_table_paths(table: &mut Table, base: &Path) {
    for key in PATH_KEYS {
        let (section, name) = key.split_once('.').expect("dotted");
        if let Some(Value::Table(t)) = table.get_mut(section) {
            if let Some(v) = t.get_mut(name) {
                resolve_path_value(v, base, key);
            }
        }
    }
    if let Some(Value::Table(sweep)) = table.get_mut("sweep") {
        for (k, v) in sweep.iter_mut() {
            if let Some(full) = resolve_key(k).filter(|full| PATH_KEYS.contains(&full.as_str())) {
                resolve_path_value(v, base, &full);
            }
        }
    }
}

/// Parses a `--set` value: a TOML scalar or array, or else a bare string.
fn parse_override_value(raw: &str) -> Result<Value> {
    let raw = raw.trim();
    match format!("v = {raw}").parse::<Table>() {
        Ok(mut t) => Ok(t.remove("v").expect("parsed key")),
        Err(e) => {
            if raw.starts_with(['"', '\'', '[', '{']) {
                bail!("cannot parse value `{raw}`: {}", e.message());
            }
            Ok(Value::String(raw.to_string()))
        }
    }
}

/// Applies one `key=value` override; returns the full dotted key.
fn apply_override(table: &mut Table, ov: &str, cwd: &Path) -> Result<String> {
    let (key, raw) = ov
        .split_once('=')
        .ok_or_else(|| anyhow!("--set {ov}: bad override, expected key=value"))?;
    let key = key.trim();
    if key.is_empty() {
        bail!("--set {ov}: bad override, the key is empty");
    }
    let full = if let Some(rest) = key.strip_prefix("sweep.") {
        if rest.is_empty() {
            bail!("--set {ov}: bad override, no key after 'sweep.'");
        }
        key.to_string()
    } else {
        resolve_key(key)
            .ok_or_else(|| anyhow!("--set {key}: unknown key '{key}'{}", suggestion(key)))?
    };
    let mut value = parse_override_value(raw).map_err(|e| anyhow!("--set {full}: {e}"))?;
    let path_key = match full.strip_prefix("sweep.") {
        Some(k) => resolve_key(k),
        None => Some(full.clone()),
    };
    if let Some(k) = path_key.filter(|k| PATH_KEYS.contains(&k.as_str())) {
        resolve_path_value(&mut value, cwd, &k);
    }
    set_dotted(table, &full, value).map_err(|e| anyhow!("--set {full}: {e}"))?;
    Ok(full)
}

fn set_dotted(table: &mut Table, key: &str, value: Value) -> Result<()> {
    let mut parts: Vec<&str> = key.split('.').collect();
    // sweep keys may be dotted themselves: `sweep.train.learning_rate` sets one sweep entry
    if parts.len() > 2 && parts[0] == "sweep" {
        let rest = parts[1..].join(".");
        let sweep = table
            .entry("sweep")
            .or_insert_with(|| Value::Table(Table::new()));
        let Value::Table(s) = sweep else {
            bail!("'sweep' is not a table")
        };
        s.insert(rest, value);
        return Ok(());
    }
    let last = parts.pop().expect("non-empty key");
    let mut cur = table;
    for (i, p) in parts.iter().enumerate() {
        let entry = cur
            .entry(p.to_string())
            .or_insert_with(|| Value::Table(Table::new()));
        cur = match entry {
            Value::Table(t) => t,
            _ => bail!("'{}' is not a table", parts[..=i].join(".")),
        };
    }
    cur.insert(last.to_string(), value);
    Ok(())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

/// ", did you mean 'train.learning_rate'?" for a near miss, else "".
fn suggestion(key: &str) -> String {
    let mut candidates = ExperimentConfig::known_keys();
    candidates.extend(SECTIONS.iter().map(|s| s.to_string()));
    let best = candidates
        .iter()
        .map(|c| {
            let short = c.rsplit('.').next().unwrap_or(c);
            (edit_distance(key, c).min(edit_distance(key, short)), c)
        })
        .min();
    match best {
        Some((d, c)) if d <= 3 && d * 3 <= key.len() => format!(", did you mean '{c}'?"),
        _ => String::new(),
    }
}

/// Rewrites a serde/toml error into "key: what is wrong", naming the dotted key.
fn describe_de_error(e: &toml::de::Error, from_overrides: &BTreeSet<String>) -> String {
    let shown = e.to_string();
    let shown = shown.trim_end();
    let (msg, path) = match shown.rsplit_once("\nin `") {
        Some((m, p)) => (m.trim().to_string(), p.trim_end_matches('`').to_string()),
        None => (e.message().trim().to_string(), String::new()),
    };
    let join = |field: &str| {
        if path.is_empty() {
            field.to_string()
        } else {
            format!("{path}.{field}")
        }
    };
    let origin = |key: &str| {
        if from_overrides.contains(key) {
            "--set "
        } else {
            ""
        }
    };

    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or(rest);
        let key = join(field);
        return format!("unknown key '{key}'{}", suggestion(&key));
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or(rest);
        return format!("missing key '{}'", join(field));
    }
    let key = if path.is_empty() {
        "(top level)".to_string()
    } else {
        path.clone()
    };
    if let Some(rest) = msg.strip_prefix("invalid type: ") {
        if let Some((found, expected)) = rest.split_once(", expected ") {
            return format!(
                "{}{key}: expected {}, found {}",
                origin(&key),
                expected_words(expected),
                found_words(found)
            );
        }
    }
    if let Some(rest) = msg.strip_prefix("invalid value: ") {
        if let Some((found, expected)) = rest.split_once(", expected ") {
            return format!(
                "{}{key}: expected {}, found {}",
                origin(&key),
                expected_words(expected),
                found_words(found)
            );
        }
    }
    if let Some(rest) = msg.strip_prefix("unknown variant ") {
        return format!("{}{key}: bad value {rest}", origin(&key));
    }
    format!("{}{key}: {msg}", origin(&key))
}

fn expected_words(e: &str) -> String {
    let e = e.trim();
    match e {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a non-negative integer".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer".into(),
        "f32" | "f64" => "a number".into(),
        "a boolean" => "a boolean (true or false)".into(),
        "a string" | "path string" => "a string".into(),
        "a sequence" => "a list".into(),
        _ if e.starts_with("struct ") || e.starts_with("a table") || e == "a map" => {
            "a table".into()
        }
        _ if e.starts_with("enum ") => "one of the documented values".into(),
        _ => e.to_string(),
    }
}

fn found_words(f: &str) -> String {
    let f = f.trim();
    if f == "map" {
        "a table".into()
    } else if f == "sequence" {
        "a list".into()
    } else if let Some(v) = f.strip_prefix("floating point ") {
        format!("float {v}")
    } else {
        f.to_string()
    }
}

/// A value as it appears in a sweep point id (floats like Python's repr: `3e-06`, `0.0001`).
fn id_value(v: &Value) -> String {
    match v {
        Value::Float(x) => py_float(*x),
        Value::Integer(i) => i.to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::String(s) => {
            // paths: the last component is what tells points apart
            let p = Path::new(s);
            if p.is_absolute() {
                p.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| s.clone())
            } else {
                s.clone()
            }
        }
        Value::Array(a) => a.iter().map(id_value).collect::<Vec<_>>().join("+"),
        other => other.to_string(),
    }
}

/// Formats a float like Python's `repr`.
pub fn py_float(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let sci = format!("{:e}", x.abs()); // shortest round-trip digits: "3e-6", "1.2345e2"
    let (mant, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("integer exponent");
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let sign = if x < 0.0 { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let s = if exp >= 0 {
            let e = exp as usize;
            if digits.len() > e + 1 {
                format!("{}.{}", &digits[..=e], &digits[e + 1..])
            } else {
                format!("{}{}.0", digits, "0".repeat(e + 1 - digits.len()))
            }
        } else {
            format!("0.{}{}", "0".repeat((-exp - 1) as usize), digits)
        };
        format!("{sign}{s}")
    } else {
        let m = if digits.len() > 1 {
            format!("{}.{}", &digits[..1], &digits[1..])
        } else {
            digits
        };
        let es = if exp < 0 { "-" } else { "+" };
        format!("{sign}{m}e{es}{:02}", exp.abs())
    }
}

fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.+=,".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}
