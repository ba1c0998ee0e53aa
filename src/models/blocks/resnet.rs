//! diffusers' `ResnetBlock2D` (time-embedding norm "default"): two norm-SiLU-conv stages, the
//! time embedding added between them, a 1x1 shortcut when the channel count changes.
use super::{conv1, conv3, group_norm};
use crate::models::layers::linear;
use crate::models::lora::{Conv2d, Linear};
use tch::nn;
use tch::Tensor;

/// What a [`ResnetBlock2D`] is built with besides its channels (diffusers' arguments of the
/// same names; the default is the VAE's block: no time embedding, 32 groups, eps 1e-6).
#[derive(Debug, Clone, Copy)]
pub struct ResnetConfig {
    /// `Some(n)` for UNet blocks, which add an `n`-wide time embedding.
    pub temb_channels: Option<i64>,
    pub groups: i64,
    pub eps: f64,
    /// The output is divided by this.
    pub output_scale_factor: f64,
}

impl Default for ResnetConfig {
    fn default() -> Self {
        Self {
            temb_channels: None,
            groups: 32,
            eps: 1e-6,
            output_scale_factor: 1.0,
        }
    }
}

#[derive(Debug)]
pub struct ResnetBlock2D {
    norm1: crate::models::vars::GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<Linear>,
    norm2: crate::models::vars::GroupNorm,
    conv2: Conv2d,
    conv_shortcut: Option<Conv2d>,
    output_scale_factor: f64,
}

impl ResnetBlock2D {
    pub fn new(p: nn::Path, c_in: i64, c_out: i64, cfg: &ResnetConfig) -> Self {
        let (groups, eps) = (cfg.groups, cfg.eps);
        Self {
            norm1: group_norm(&p / "norm1", groups, c_in, eps),
            conv1: conv3(&p / "conv1", c_in, c_out),
            time_emb_proj: cfg
                .temb_channels
                .map(|t| linear(&p / "time_emb_proj", t, c_out)),
            norm2: group_norm(&p / "norm2", groups, c_out, eps),
            conv2: conv3(&p / "conv2", c_out, c_out),
            conv_shortcut: (c_in != c_out).then(|| conv1(&p / "conv_shortcut", c_in, c_out)),
            output_scale_factor: cfg.output_scale_factor,
        }
    }

    pub fn forward(&self, x: &Tensor, temb: Option<&Tensor>) -> Tensor {
        let mut h = x.apply(&self.norm1).silu().apply(&self.conv1);
        if let (Some(proj), Some(t)) = (&self.time_emb_proj, temb) {
            h += t.silu().apply(proj).unsqueeze(-1).unsqueeze(-1);
        }
        let h = h.apply(&self.norm2).silu().apply(&self.conv2);
        let out = x.apply_opt(&self.conv_shortcut) + h;
        if self.output_scale_factor == 1.0 {
            out
        } else {
            out / self.output_scale_factor
        }
    }
}
