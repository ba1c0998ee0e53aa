//! `text_encoder/config.json` (transformers' `CLIPTextConfig`).
use crate::models::config::read_validated;
use crate::models::layers::Activation;
use anyhow::{bail, Result};
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ClipTextConfig {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    pub max_position_embeddings: i64,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
}

impl Default for ClipTextConfig {
    /// The text encoder of SD 1.x (openai/clip-vit-large-patch14).
    fn default() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            max_position_embeddings: 77,
            hidden_act: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
        }
    }
}

impl ClipTextConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        read_validated(path, Self::validate)
    }

    pub fn validate(&self) -> Result<()> {
        self.activation()?;
        if self.num_attention_heads <= 0 || self.hidden_size % self.num_attention_heads != 0 {
            bail!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size,
                self.num_attention_heads
            );
        }
        Ok(())
    }

    pub fn activation(&self) -> Result<Activation> {
        match self.hidden_act {
            a @ (Activation::QuickGelu | Activation::Gelu) => Ok(a),
            other => bail!(
                "hidden_act '{}' is not supported (quick_gelu, gelu)",
                other.name()
            ),
        }
    }
}
