//! Building blocks shared by the UNet and the VAE (diffusers' `resnet.py`, `downsampling.py`,
//! `upsampling.py`).
mod resample;
mod resnet;

pub use resample::{Downsample2D, Upsample2D};
pub use resnet::{ResnetBlock2D, ResnetConfig};

use crate::models::lora::Conv2d;
use tch::nn;

/// How a down or up block of the UNet or the VAE is built (diffusers' `num_layers`,
/// `add_downsample` / `add_upsample`, `downsample_padding` and the resnets' arguments); the
/// default is diffusers' `DownBlock2D`.
#[derive(Debug, Clone, Copy)]
pub struct BlockConfig {
    /// Resnets in the block.
    pub layers: i64,
    pub resnet: ResnetConfig,
    /// Whether the block ends with a downsampler (down path) or an upsampler (up path).
    pub resample: bool,
    /// The downsampler's padding (0: the VAE's asymmetric padding).
    pub downsample_padding: i64,
}

impl Default for BlockConfig {
    fn default() -> Self {
        Self {
            layers: 1,
            resnet: ResnetConfig::default(),
            resample: true,
            downsample_padding: 1,
        }
    }
}

/// A 3x3 convolution with padding 1 (the default convolution of both networks).
pub fn conv3(p: nn::Path, c_in: i64, c_out: i64) -> Conv2d {
    conv(p, c_in, c_out, 3)
}

/// A 1x1 convolution.
pub fn conv1(p: nn::Path, c_in: i64, c_out: i64) -> Conv2d {
    conv(p, c_in, c_out, 1)
}

/// A `kernel` x `kernel` convolution (odd `kernel`) that keeps the spatial size (adaptable:
/// see [`crate::models::lora`]).
pub fn conv(p: nn::Path, c_in: i64, c_out: i64, kernel: i64) -> Conv2d {
    crate::models::lora::conv2d(p, c_in, c_out, kernel, 1, (kernel - 1) / 2)
}

/// Group normalisation with learnable affine parameters.
pub fn group_norm(
    p: nn::Path,
    groups: i64,
    channels: i64,
    eps: f64,
) -> crate::models::vars::GroupNorm {
    crate::models::vars::group_norm(&p, groups, channels, eps)
}
