//! `config.json` of a BLIP captioning checkpoint (transformers' `BlipConfig` with its
//! `vision_config` and `text_config`). Defaults are those of transformers, so a config that
//! leaves a key out means what it means there.
use crate::models::config::read_validated;
use crate::models::layers::Activation;
use anyhow::{bail, Result};
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct BlipVisionConfig {
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub image_size: i64,
    pub patch_size: i64,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
}

impl Default for BlipVisionConfig {
    /// BLIP base (ViT-B/16 at 384).
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            image_size: 384,
            patch_size: 16,
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-5,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct BlipTextConfig {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub encoder_hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub max_position_embeddings: i64,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
    pub bos_token_id: i64,
    pub pad_token_id: i64,
    pub sep_token_id: i64,
    pub is_decoder: bool,
    /// The LM head's weight is the word embedding matrix (transformers ties them by default).
    pub tie_word_embeddings: bool,
}

impl Default for BlipTextConfig {
    fn default() -> Self {
        Self {
            vocab_size: 30524,
            hidden_size: 768,
            encoder_hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            max_position_embeddings: 512,
            hidden_act: Activation::Gelu,
            layer_norm_eps: 1e-12,
            bos_token_id: 30522,
            pad_token_id: 0,
            sep_token_id: 102,
            is_decoder: true,
            tie_word_embeddings: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct BlipConfig {
    pub model_type: Option<String>,
    pub architectures: Vec<String>,
    pub vision_config: BlipVisionConfig,
    pub text_config: BlipTextConfig,
}

impl BlipConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        read_validated(path, Self::validate)
    }

    pub fn validate(&self) -> Result<()> {
        match self.model_type.as_deref() {
            Some("blip") | None => {}
            Some(other) => bail!("model_type '{other}' is not a BLIP checkpoint (expected 'blip')"),
        }
        if let Some(arch) = self.architectures.first() {
            if arch != "BlipForConditionalGeneration" {
                bail!("architecture '{arch}' is not a BLIP captioner (expected BlipForConditionalGeneration)");
            }
        }
        let v = &self.vision_config;
        let t = &self.text_config;
        for (what, d, h) in [
            ("vision_config", v.hidden_size, v.num_attention_heads),
            ("text_config", t.hidden_size, t.num_attention_heads),
        ] {
            if h <= 0 || d % h != 0 {
                bail!("{what}: hidden_size {d} is not divisible by num_attention_heads {h}");
            }
        }
        for (what, act) in [
            ("vision_config", v.hidden_act),
            ("text_config", t.hidden_act),
        ] {
            if act != Activation::Gelu {
                bail!(
                    "{what}: hidden_act '{}' is not supported (gelu)",
                    act.name()
                );
            }
        }
        if v.patch_size <= 0 || v.image_size % v.patch_size != 0 {
            bail!(
                "vision_config: image_size {} is not a multiple of patch_size {}",
                v.image_size,
                v.patch_size
            );
        }
        if t.encoder_hidden_size != v.hidden_size {
            bail!(
                "text_config.encoder_hidden_size {} differs from vision_config.hidden_size {}",
                t.encoder_hidden_size,
                v.hidden_size
            );
        }
        if !t.is_decoder {
            bail!("text_config.is_decoder is false: this text model cannot generate captions");
        }
        Ok(())
    }
}
