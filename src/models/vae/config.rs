//! `vae/config.json` (diffusers' `AutoencoderKL`).
use crate::models::config::{check_block_types, check_levels, read_validated};
use crate::models::layers::Activation;
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
    pub act_fn: Activation,
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
            act_fn: Activation::Silu,
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
        check_levels(n, &self.down_block_types, &self.up_block_types)?;
        let (down, up) = (["DownEncoderBlock2D"], ["UpDecoderBlock2D"]);
        check_block_types("down_block_types", &self.down_block_types, &down)?;
        check_block_types("up_block_types", &self.up_block_types, &up)?;
        if self.act_fn != Activation::Silu {
            bail!("act_fn: '{}' is not supported (silu)", self.act_fn.name());
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

    /// Pixels per latent pixel: `2 ** (len(block_out_channels) - 1)`, as diffusers' pipelines
    /// compute `vae_scale_factor`.
    pub fn scale_factor(&self) -> i64 {
        1 << (self.block_out_channels.len() - 1)
    }
}
