//! Building blocks shared by the UNet and the VAE (diffusers' `resnet.py`, `downsampling.py`,
//! `upsampling.py`).
mod resample;
mod resnet;

pub use resample::{Downsample2D, Upsample2D};
pub use resnet::ResnetBlock2D;

use tch::nn;

/// A 3x3 convolution with padding 1 (the default convolution of both networks).
pub fn conv3(p: nn::Path, c_in: i64, c_out: i64) -> nn::Conv2D {
    nn::conv2d(
        p,
        c_in,
        c_out,
        3,
        nn::ConvConfig {
            padding: 1,
            ..Default::default()
        },
    )
}

/// A 1x1 convolution.
pub fn conv1(p: nn::Path, c_in: i64, c_out: i64) -> nn::Conv2D {
    nn::conv2d(p, c_in, c_out, 1, Default::default())
}

/// Group normalisation with learnable affine parameters.
pub fn group_norm(p: nn::Path, groups: i64, channels: i64, eps: f64) -> nn::GroupNorm {
    nn::group_norm(
        p,
        groups,
        channels,
        nn::GroupNormConfig {
            eps,
            ..Default::default()
        },
    )
}
