//! The pretraining config: typed, every field defaulted (the defaults made
//! `models/tiny-studio`), readable from TOML and overridden by the command line.
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Everything `studioize pretrain` does.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PretrainConfig {
    /// The catalogue written by `studioize make-catalogue` (studio/, casual/, general/).
    pub catalogue: PathBuf,
    /// The model folder to write (must not exist, or be empty).
    pub out: PathBuf,
    pub seed: u64,
    /// Image side in pixels (the catalogue's images are resized to it when they differ).
    pub size: u32,
    /// Torch intra-op threads: fixed so that the same seed gives the same weights (1 by
    /// default: on a shared machine two threads can be ten times slower than one).
    pub threads: i32,
    /// Share of the studio photos used (the first pairs); the rest are left for fine-tuning.
    pub studio_share: f64,
    pub vae: VaeSettings,
    pub unet: UnetSettings,
    pub text: TextSettings,
}

/// The AutoencoderKL and its training.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct VaeSettings {
    /// One entry per level; `levels - 1` halvings of the side.
    pub block_out_channels: Vec<i64>,
    pub layers_per_block: usize,
    pub latent_channels: i64,
    pub norm_num_groups: i64,
    pub steps: u64,
    pub batch_size: i64,
    /// Side of the random square crops trained on (the networks are convolutional; the full
    /// images are reconstructed at the end).
    pub crop: u32,
    pub lr: f64,
    /// Weight of the KL term against the per-pixel MSE (SD's VAE: 1e-6 with its other losses).
    pub kl_weight: f64,
}

/// The UNet2DConditionModel and its training.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct UnetSettings {
    pub block_out_channels: Vec<i64>,
    pub layers_per_block: i64,
    /// Attention heads per level (SD 1.x configs call it `attention_head_dim`).
    pub attention_heads: i64,
    /// Levels before this one have no (cross-)attention (SD 1.x: 0). At 64 pixels the
    /// top level's self-attention costs more than the rest of the UNet together, and kind,
    /// colour and background are read at the lower levels.
    pub first_attention_level: usize,
    pub norm_num_groups: i64,
    pub steps: u64,
    pub batch_size: i64,
    pub lr: f64,
    pub warmup_steps: u64,
    /// EMA decay of the saved weights (0: the raw weights are saved).
    pub ema_decay: f64,
    /// Share of captions replaced by the empty prompt (for classifier-free guidance).
    pub caption_dropout: f64,
    pub max_grad_norm: f64,
    /// Min-SNR-gamma loss weighting (Hang et al. 2023): the low-noise timesteps, where the
    /// epsilon loss is mostly texture, count less; none: the plain epsilon MSE.
    pub snr_gamma: Option<f64>,
    /// Scale of a per-sample, per-channel offset added to the noise (the "noise offset" of
    /// SD fine-tunes). A 16x16 latent's mean of pure noise varies by 1/16, as much as the
    /// signal left at the last timestep: without the offset the model reads the starting
    /// noise's mean as the image's and tints the background.
    pub noise_offset: f64,
}

/// The CLIP text encoder (frozen at its random initialisation, or trained with the UNet).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TextSettings {
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    /// Train the encoder with the UNet (same optimiser, rate and EMA) instead of keeping its
    /// random initialisation.
    pub train: bool,
}

impl Default for PretrainConfig {
    fn default() -> Self {
        Self {
            catalogue: PathBuf::new(),
            out: PathBuf::new(),
            seed: 0,
            size: 64,
            threads: 1,
            studio_share: 0.5,
            vae: VaeSettings::default(),
            unet: UnetSettings::default(),
            text: TextSettings::default(),
        }
    }
}

impl Default for VaeSettings {
    fn default() -> Self {
        Self {
            block_out_channels: vec![16, 32, 64],
            layers_per_block: 1,
            latent_channels: 4,
            norm_num_groups: 8,
            steps: 1500,
            batch_size: 8,
            crop: 32,
            lr: 1e-3,
            kl_weight: 1e-6,
        }
    }
}

impl Default for UnetSettings {
    fn default() -> Self {
        Self {
            block_out_channels: vec![32, 64, 96],
            layers_per_block: 1,
            attention_heads: 4,
            first_attention_level: 1,
            norm_num_groups: 16,
            steps: 2800,
            batch_size: 16,
            lr: 2e-3,
            warmup_steps: 100,
            ema_decay: 0.999,
            caption_dropout: 0.1,
            max_grad_norm: 1.0,
            snr_gamma: Some(5.0),
            noise_offset: 0.05,
        }
    }
}

impl Default for TextSettings {
    fn default() -> Self {
        Self {
            hidden_size: 64,
            intermediate_size: 128,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            train: true,
        }
    }
}

impl PretrainConfig {
    /// Reads a TOML file of (some of) these fields; unknown keys are refused with their name.
    pub fn from_toml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}: {}",
                path.display(),
                e.to_string().replace('\n', " ").trim()
            )
        })
    }

    /// Refuses settings that cannot train (before any work).
    pub fn validate(&self) -> Result<()> {
        if self.size < 16 || !self.size.is_multiple_of(8) {
            bail!(
                "--size {}: expected a multiple of 8, at least 16",
                self.size
            );
        }
        if self.threads < 1 {
            bail!("--threads must be at least 1");
        }
        if !(self.studio_share > 0.0 && self.studio_share <= 1.0) {
            bail!("--studio-share {}: expected (0, 1]", self.studio_share);
        }
        let v = &self.vae;
        let f = 1u32 << (v.block_out_channels.len().max(1) - 1);
        if v.block_out_channels.is_empty() || !self.size.is_multiple_of(f * 2) {
            bail!(
                "vae.block_out_channels {:?}: the size {} must be divisible by twice the VAE's factor {f}",
                v.block_out_channels,
                self.size
            );
        }
        if v.crop < 8 || !v.crop.is_multiple_of(f * 2) {
            bail!(
                "vae.crop {} must be a multiple of twice the VAE's factor {f}",
                v.crop
            );
        }
        if v.block_out_channels
            .iter()
            .any(|c| c % v.norm_num_groups != 0)
        {
            bail!(
                "vae.norm_num_groups {} must divide every vae.block_out_channels",
                v.norm_num_groups
            );
        }
        let u = &self.unet;
        if u.block_out_channels
            .iter()
            .any(|c| c % u.norm_num_groups != 0 || c % u.attention_heads != 0)
        {
            bail!(
                "unet.norm_num_groups {} and unet.attention_heads {} must divide every unet.block_out_channels",
                u.norm_num_groups,
                u.attention_heads
            );
        }
        if u.block_out_channels.len() < 2 {
            bail!("unet.block_out_channels needs at least 2 levels");
        }
        if u.first_attention_level + 1 >= u.block_out_channels.len() {
            bail!(
                "unet.first_attention_level {} leaves no cross-attention level above the lowest",
                u.first_attention_level
            );
        }
        let t = &self.text;
        if t.hidden_size % t.num_attention_heads != 0 {
            bail!("text.num_attention_heads must divide text.hidden_size");
        }
        for (name, batch) in [("vae", v.batch_size), ("unet", u.batch_size)] {
            if batch < 1 {
                bail!("{name}.batch_size must be at least 1");
            }
        }
        for (name, lr) in [("vae", v.lr), ("unet", u.lr)] {
            if !(lr.is_finite() && lr > 0.0) {
                bail!("{name}.lr must be a positive number");
            }
        }
        if !(0.0..1.0).contains(&u.caption_dropout) || !(0.0..1.0).contains(&u.ema_decay) {
            bail!("unet.caption_dropout and unet.ema_decay must be in [0, 1)");
        }
        if !(u.noise_offset.is_finite() && u.noise_offset >= 0.0) {
            bail!("unet.noise_offset must be a non-negative number");
        }
        if u.snr_gamma.is_some_and(|g| !(g.is_finite() && g > 0.0)) {
            bail!("unet.snr_gamma must be a positive number");
        }
        if !(v.kl_weight.is_finite() && v.kl_weight >= 0.0) {
            bail!("vae.kl_weight must be a non-negative number");
        }
        Ok(())
    }
}
