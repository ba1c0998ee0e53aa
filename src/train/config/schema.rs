//! The typed schema of the experiment config: [`ExperimentConfig`] and its sections, with the
//! defaults of every optional key. The key lists (`--set`, sweeps, suggestions) are read off
//! these structs by [`super::keys`], so a field added here is known everywhere at once.
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::path::PathBuf;
use toml::Value;

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
    /// `[lora]`: train low-rank adapters on the frozen model instead of fine-tuning it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lora: Option<LoraSection>,
    /// `[dreambooth]`: teach the model one subject from `data.images` under an identifier
    /// prompt, with prior preservation on images of its class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dreambooth: Option<DreamBoothSection>,
    /// `[textual_inversion]`: learn new token vectors for the subject, the models frozen (with
    /// `[lora]` too: pivotal tuning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub textual_inversion: Option<TextualInversionSection>,
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
    /// The dtype of the frozen components (the VAE, the text encoder when it is not trained,
    /// the UNet under LoRA or textual inversion), to save memory; trained tensors stay fp32.
    /// Unset: fp32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_dtype: Option<SaveDtype>,
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
    /// General (prior) images: their loss is measured at each validation as the forgetting
    /// signal; they are not trained on (DreamBooth's prior-preservation issue adds that).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior_images: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior_captions: Option<PathBuf>,
    /// Share of micro-batches drawn from `prior_images` and trained on (0: the prior set is
    /// only measured), against forgetting; its measured prior loss is then on seen images.
    #[serde(default)]
    pub prior_mix: f64,
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

impl MixedPrecision {
    /// The autocast dtype (`None`: no autocast).
    pub fn kind(self) -> Option<tch::Kind> {
        match self {
            MixedPrecision::No => None,
            MixedPrecision::Fp16 => Some(tch::Kind::Half),
            MixedPrecision::Bf16 => Some(tch::Kind::BFloat16),
        }
    }
}

/// A weights dtype: of checkpoints (`train.save_dtype`, diffusers loads each of them) and of
/// the frozen models (`model.weights_dtype`).
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

/// The optimizer of `train.optimizer` (see `train::optim`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// torch.optim.AdamW: fp32 moments (8 bytes of state per parameter).
    #[default]
    Adamw,
    /// bitsandbytes' AdamW8bit: blockwise 8-bit moments (about 2 bytes per parameter).
    Adamw8bit,
    /// transformers' Adafactor with the given learning rate: factored second moments.
    Adafactor,
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
    /// `adamw`, `adamw8bit` (both with the `adam_*` settings) or `adafactor`.
    pub optimizer: OptimizerKind,
    /// adamw8bit: tensors with fewer elements keep fp32 moments (bitsandbytes' min_8bit_size).
    pub adamw8bit_min_size: u64,
    /// adafactor: added to the squared gradient (transformers' eps[0]).
    pub adafactor_eps: f64,
    /// adafactor: the update's RMS is clipped to this.
    pub adafactor_clip_threshold: f64,
    /// adafactor: the second moment decays by `1 - step^decay_rate`.
    pub adafactor_decay_rate: f64,
    /// adafactor: first-moment decay (unset: no first moment, transformers' default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adafactor_beta1: Option<f64>,
    pub adafactor_weight_decay: f64,
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
    /// Recompute each UNet resnet / transformer (and text-encoder layer when the text path
    /// trains) in the backward pass instead of keeping its activations.
    pub gradient_checkpointing: bool,
    /// Keep the frozen text encoder's embedding of each caption instead of encoding it again
    /// (no effect when a text path trains); up to 1 GiB of embeddings.
    pub cache_text_embeddings: bool,
    /// Number of fixed timesteps, spread over the schedule, of the deterministic validation loss.
    pub validation_timesteps: usize,
    pub validation_prompts: Vec<String>,
    /// Input images of the validation samples.
    pub validation_inputs: Vec<PathBuf>,
    pub sample_every_checkpoint: bool,
    /// Detector labels that end a run early.
    pub stop_on: Vec<String>,
    /// Data-parallel runs: seconds a process waits for the others (the rendezvous and every
    /// collective) before it fails, e.g. when another rank died or hangs.
    pub dist_timeout_s: u64,
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
            optimizer: OptimizerKind::Adamw,
            adamw8bit_min_size: 4096,
            adafactor_eps: 1e-30,
            adafactor_clip_threshold: 1.0,
            adafactor_decay_rate: -0.8,
            adafactor_beta1: None,
            adafactor_weight_decay: 0.0,
            max_grad_norm: 1.0,
            ema: false,
            ema_decay: 0.9999,
            prediction_type: None,
            snr_gamma: None,
            noise_offset: 0.0,
            train_text_encoder: false,
            mixed_precision: MixedPrecision::No,
            gradient_checkpointing: false,
            cache_text_embeddings: false,
            validation_timesteps: 10,
            validation_prompts: Vec::new(),
            validation_inputs: Vec::new(),
            sample_every_checkpoint: false,
            stop_on: Vec::new(),
            dist_timeout_s: 1800,
        }
    }
}

/// `[lora]`: LoRA adapters (PEFT's arithmetic and initialisation: `W x + alpha / rank * B A x`,
/// A Kaiming-uniform, B zero, so step 0 is the base model). Only the adapters are trained; the
/// UNet (and the text encoder) stay frozen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraSection {
    pub rank: i64,
    pub alpha: f64,
    /// Dropout on the adapters' input while training.
    pub dropout: f64,
    /// UNet layers that get adapters: a module name matches a target when it is the target or
    /// ends with `.` + target (PEFT's rule), e.g. `to_q`, `to_out.0`, `proj_in`, `ff.net.2`.
    pub targets: Vec<String>,
    /// Adapters on the CLIP text encoder too.
    pub text_encoder: bool,
    pub text_targets: Vec<String>,
    /// LoCon: adapters of this rank on the ResNet and resampler convolutions (`conv1`, `conv2`,
    /// `conv_shortcut`, `downsamplers.0.conv`, `upsamplers.0.conv`); 0: none.
    pub conv_rank: i64,
    /// Their alpha (kohya's default, 1).
    pub conv_alpha: f64,
}

impl Default for LoraSection {
    fn default() -> Self {
        let s = |v: &[&str]| v.iter().map(|t| t.to_string()).collect();
        LoraSection {
            rank: 4,
            alpha: 4.0,
            dropout: 0.0,
            targets: s(&["to_q", "to_k", "to_v", "to_out.0"]),
            text_encoder: false,
            text_targets: s(&["q_proj", "k_proj", "v_proj", "out_proj"]),
            conv_rank: 0,
            conv_alpha: 1.0,
        }
    }
}

/// `[dreambooth]`: DreamBooth (Ruiz et al. 2023) as diffusers' `train_dreambooth.py`: every
/// micro-batch holds `train.batch_size` instance images (`data.images`, captioned with
/// `instance_prompt`) followed by as many class images (captioned with `class_prompt`), and the
/// loss is the instance loss plus `prior_loss_weight` times the class loss. Class images missing
/// from `class_images` are generated by the base model before training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DreamBoothSection {
    /// The prompt of every instance image, with the identifier (`a photo of zwx handbag`).
    pub instance_prompt: String,
    /// Use the instance images' own captions (CSV or sidecars, as `data.captions`) instead of
    /// `instance_prompt`.
    pub instance_captions: bool,
    /// The class prompt (`a photo of a handbag`); unset: no prior preservation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class_prompt: Option<String>,
    /// Folder of class images (any images there count); unset: `class_images/` in the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class_images: Option<PathBuf>,
    /// Class images wanted; missing ones are generated.
    pub num_class_images: usize,
    pub prior_loss_weight: f64,
    /// Sampler of the class images (a `generate --sampler` name); unset: the model's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class_sampler: Option<String>,
    /// Sampling steps and guidance of the class images (diffusers' pipeline defaults).
    pub class_steps: usize,
    pub class_guidance: f64,
    /// Class image `i` is generated with seed `class_seed + i`.
    pub class_seed: u64,
}

impl Default for DreamBoothSection {
    fn default() -> Self {
        DreamBoothSection {
            instance_prompt: String::new(),
            instance_captions: false,
            class_prompt: None,
            class_images: None,
            num_class_images: 200,
            prior_loss_weight: 1.0,
            class_sampler: None,
            class_steps: 50,
            class_guidance: 7.5,
            class_seed: 0,
        }
    }
}

/// Where textual inversion's training prompts come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TiPrompts {
    /// diffusers' object templates ("a photo of a {}", ...), one drawn per image and step.
    #[default]
    Object,
    /// diffusers' style templates ("a painting in the style of {}", ...).
    Style,
    /// The images' own captions, each holding `{token}`.
    Captions,
}

/// `[textual_inversion]`: as diffusers' `textual_inversion.py`: `token` becomes `num_vectors`
/// new tokens (`<tok>`, `<tok>_1`, ...), each row initialised from the `initializer` token's
/// embedding; only those rows are trained (AdamW with the `[train]` settings, weight decay
/// included), every other weight stays as loaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TextualInversionSection {
    /// The new token (lower case, no spaces), e.g. `<zwx-bag>`.
    pub token: String,
    /// A word of one CLIP token whose embedding the new vectors start from, e.g. `bag`.
    pub initializer: String,
    pub num_vectors: i64,
    pub prompts: TiPrompts,
}

impl Default for TextualInversionSection {
    fn default() -> Self {
        TextualInversionSection {
            token: String::new(),
            initializer: String::new(),
            num_vectors: 1,
            prompts: TiPrompts::Object,
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
                        // `data.images = [..]` (a dotted key, so a nested table) and
                        // `"data.images" = [..]` (one quoted key) mean the same.
                        let value: Value = map.next_value()?;
                        flatten_sweep(key, value, &mut out.params)
                            .map_err(serde::de::Error::custom)?;
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

/// Flattens nested tables of `[sweep]` into dotted keys; every leaf must be a list.
fn flatten_sweep(
    key: String,
    value: Value,
    out: &mut Vec<(String, Vec<Value>)>,
) -> std::result::Result<(), String> {
    match value {
        Value::Array(values) => {
            out.push((key, values));
            Ok(())
        }
        Value::Table(t) => {
            for (k, v) in t {
                flatten_sweep(format!("{key}.{k}"), v, out)?;
            }
            Ok(())
        }
        other => Err(format!(
            "sweep.{key}: expected a list of values, found {}",
            other.type_str()
        )),
    }
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
