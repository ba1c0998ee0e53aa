//! BLIP for image captioning (transformers' `BlipForConditionalGeneration`): a ViT image encoder
//! and a BERT text decoder with cross-attention, loaded from a Hugging Face folder
//! (`config.json` + `model.safetensors`, e.g. `Salesforce/blip-image-captioning-base`).
//! Preprocessing and tokenisation live beside it; decoding (greedy / beam) is in
//! `pipelines::caption`.
pub mod config;
pub mod processor;
pub mod resample;
pub mod text;
pub mod tokenizer;
pub mod vision;

pub use config::{BlipConfig, BlipTextConfig, BlipVisionConfig};
pub use text::{BlipTextDecoder, DecoderCache};
pub use vision::BlipVisionModel;

use crate::weights::{parameter_count, WeightSet};
use anyhow::{Context, Result};
use std::path::Path;
use tch::nn::VarStore;
use tch::{Device, Kind};

/// The captioning model, ready to run.
#[derive(Debug)]
pub struct BlipCaptioner {
    pub vision: BlipVisionModel,
    pub text: BlipTextDecoder,
    pub config: BlipConfig,
    vs: VarStore,
}

impl BlipCaptioner {
    /// Loads `dir/config.json` and `dir/model.safetensors` (or its shards), strictly: a missing,
    /// unexpected or mis-shaped tensor is an error naming it and the file.
    pub fn load(dir: &Path, device: Device, kind: Kind) -> Result<Self> {
        let config_path = dir.join("config.json");
        if !config_path.is_file() {
            anyhow::bail!(
                "{}: not a BLIP model folder (no config.json)",
                dir.display()
            );
        }
        let config = BlipConfig::from_file(&config_path)?;
        let mut vs = VarStore::new(device);
        vs.set_kind(kind);
        let root = vs.root();
        let (vision, text) = crate::models::vars::for_checkpoint(|| {
            (
                BlipVisionModel::new(&(&root / "vision_model"), &config.vision_config),
                BlipTextDecoder::new(&(&root / "text_decoder"), &config.text_config),
            )
        });
        let mut weights = WeightSet::read_component(dir, "model", None)?;
        // transformers' tied copy of the head bias may be the only one saved.
        let bias = "text_decoder.cls.predictions.bias";
        let tied_bias = "text_decoder.cls.predictions.decoder.bias";
        if !weights.contains(bias) {
            if let Some(e) = weights.remove(tied_bias) {
                weights.insert(bias.to_string(), e.tensor, e.file);
            }
        }
        let tied = config.text_config.tie_word_embeddings;
        weights
            .load_into(&vs, "blip", |name| {
                name.ends_with("position_ids")
                    || name == tied_bias
                    || (tied && name == "text_decoder.cls.predictions.decoder.weight")
            })
            .with_context(|| format!("loading BLIP from {}", dir.display()))?;
        vs.freeze();
        Ok(Self {
            vision,
            text,
            config,
            vs,
        })
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// `sum(p.numel())` over the model's parameters (tied weights counted once).
    pub fn parameter_count(&self) -> i64 {
        parameter_count(&self.vs)
    }
}
