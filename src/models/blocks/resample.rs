//! Down- and up-sampling by 2.
use super::conv3;
use tch::nn::{self, Module};
use tch::Tensor;

/// A stride-2 3x3 convolution. With `padding == 0` (the VAE), the input is first padded by one
/// pixel on the right and bottom only, as diffusers does.
#[derive(Debug)]
pub struct Downsample2D {
    conv: nn::Conv2D,
    asymmetric: bool,
}

impl Downsample2D {
    pub fn new(p: nn::Path, channels: i64, padding: i64) -> Self {
        let cfg = nn::ConvConfig {
            stride: 2,
            padding,
            ..Default::default()
        };
        Self {
            conv: nn::conv2d(&p / "conv", channels, channels, 3, cfg),
            asymmetric: padding == 0,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        if self.asymmetric {
            self.conv.forward(&x.constant_pad_nd([0, 1, 0, 1]))
        } else {
            self.conv.forward(x)
        }
    }
}

/// Nearest-neighbour upsampling (by 2, or to a given size) followed by a 3x3 convolution.
#[derive(Debug)]
pub struct Upsample2D {
    conv: nn::Conv2D,
}

impl Upsample2D {
    pub fn new(p: nn::Path, channels: i64) -> Self {
        Self {
            conv: conv3(&p / "conv", channels, channels),
        }
    }

    /// `size`: the target `(H, W)`, when the skip connection it meets is not exactly twice as big.
    pub fn forward(&self, x: &Tensor, size: Option<(i64, i64)>) -> Tensor {
        let (h, w) = match size {
            Some(s) => s,
            None => {
                let s = x.size();
                (s[2] * 2, s[3] * 2)
            }
        };
        let up = x.upsample_nearest2d([h, w], None, None);
        self.conv.forward(&up)
    }
}
