//! `vae/config.json` (diffusers' `AutoencoderKL`).
use crate::models::config::read_validated;
use anyhow::{bail, Result};
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct VaeConfig {
    pub in_channels: i64,
    pub out_channels: i64,
    pub down_block_types: Vec<String>,
    pub up_block_types: Vec<String>,
    pub block_out_channels: Vec<i64>,
    pub layers_per_block: usize,
    pub act_fn: String,
    pub latent_channels: i64,
    pub norm_num_groups: i64,
    pub sample_size: i64,
    pub scaling_factor: f64,
    pub shift_factor: Option<f64>,
    pub force_upcast: bool,
    pub use_quant_conv: bool,
    pub use_post_quant_conv: bool,
    pub mid_block_add_attention: bool,
}

impl Default for VaeConfig {
    /// The VAE of SD 1.x.
    fn default() -> Self {
        Self {
            in_channels: 3,
            out_channels: 3,
            down_block_types: vec!["DownEncoderBlock2D".into(); 4],
            up_block_types: vec!["UpDecoderBlock2D".into(); 4],
            block_out_channels: vec![128, 256, 512, 512],
            layers_per_block: 2,
            act_fn: "silu".into(),
            latent_channels: 4,
            norm_num_groups: 32,
            sample_size: 512,
            scaling_factor: 0.18215,
            shift_factor: None,
            force_upcast: true,
            use_quant_conv: true,
            use_post_quant_conv: true,
            mid_block_add_attention: true,
        }
    }
}

impl VaeConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        read_validated(path, Self::validate)
    }

    pub fn validate(&self) -> Result<()> {
        let n = self.block_out_channels.len();
        if n == 0 {
            bail!("block_out_channels is empty");
        }
        if self.down_block_types.len() != n || self.up_block_types.len() != n {
            bail!(
                "down_block_types ({}) and up_block_types ({}) must have one entry per block_out_channels ({n})",
                self.down_block_types.len(),
                self.up_block_types.len()
            );
        }
        if let Some(t) = self
            .down_block_types
            .iter()
            .find(|t| *t != "DownEncoderBlock2D")
        {
            bail!("down_block_types: '{t}' is not supported (DownEncoderBlock2D)");
        }
        if let Some(t) = self
            .up_block_types
            .iter()
            .find(|t| *t != "UpDecoderBlock2D")
        {
            bail!("up_block_types: '{t}' is not supported (UpDecoderBlock2D)");
        }
        if self.act_fn != "silu" {
            bail!("act_fn: '{}' is not supported (silu)", self.act_fn);
        }
        if let Some(c) = self
            .block_out_channels
            .iter()
            .find(|&&c| c % self.norm_num_groups != 0)
        {
            bail!(
                "block_out_channels: {c} is not divisible by norm_num_groups {}",
                self.norm_num_groups
            );
        }
        Ok(())
    }

    /// Pixels per latent pixel: `2 ** (levels - 1)`.
    pub fn scale_factor(&self) -> i64 {
        1 << (self.block_out_channels.len() - 1)
    }
}
