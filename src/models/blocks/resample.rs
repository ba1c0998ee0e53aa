//! Down- and up-sampling by 2.
use super::conv3;
use crate::models::lora::{conv2d, Conv2d};
use tch::nn::{self, Module};
use tch::Tensor;

/// A stride-2 3x3 convolution. With `padding == 0` (the VAE), the input is first padded by one
/// pixel on the right and bottom only, as diffusers does.
#[derive(Debug)]
pub struct Downsample2D {
    conv: Conv2d,
    asymmetric: bool,
}

impl Downsample2D {
    pub fn new(p: nn::Path, channels: i64, padding: i64) -> Self {
        Self {
            conv: conv2d(&p / "conv", channels, channels, 3, 2, padding),
            asymmetric: padding == 0,
        }
    }
}

impl Module for Downsample2D {
    fn forward(&self, x: &Tensor) -> Tensor {
        if self.asymmetric {
            x.constant_pad_nd([0, 1, 0, 1]).apply(&self.conv)
        } else {
            x.apply(&self.conv)
        }
    }
}

/// Nearest-neighbour upsampling (by 2, or to a given size) followed by a 3x3 convolution.
#[derive(Debug)]
pub struct Upsample2D {
    conv: Conv2d,
}

impl Upsample2D {
    pub fn new(p: nn::Path, channels: i64) -> Self {
        Self {
            conv: conv3(&p / "conv", channels, channels),
        }
    }

    /// `size`: the target `(H, W)`, when the skip connection it meets is not exactly twice as big.
    pub fn forward(&self, x: &Tensor, size: Option<(i64, i64)>) -> Tensor {
        let (h, w) = size.unwrap_or_else(|| {
            let s = x.size();
            (s[2] * 2, s[3] * 2)
        });
        x.upsample_nearest2d([h, w], None, None).apply(&self.conv)
    }
}
