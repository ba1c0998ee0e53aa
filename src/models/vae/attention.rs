//! The single-head spatial self-attention of the VAE's mid block (diffusers' `Attention` with
//! `group_norm`, `to_q`/`to_k`/`to_v`/`to_out.0` and a residual connection).
use crate::models::blocks::group_norm;
use crate::models::layers::{attention, linear};
use crate::models::lora::Linear;
use tch::nn::{self, Module};
use tch::Tensor;

#[derive(Debug)]
pub struct SpatialAttention {
    group_norm: crate::models::vars::GroupNorm,
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
}

impl SpatialAttention {
    pub fn new(p: nn::Path, channels: i64, groups: i64, eps: f64) -> Self {
        let lin = |name: &str| linear(&p / name, channels, channels);
        Self {
            group_norm: group_norm(&p / "group_norm", groups, channels, eps),
            to_q: lin("to_q"),
            to_k: lin("to_k"),
            to_v: lin("to_v"),
            to_out: linear(&p / "to_out" / 0, channels, channels),
        }
    }
}

impl Module for SpatialAttention {
    fn forward(&self, x: &Tensor) -> Tensor {
        let (b, c, h, w) = x.size4().expect("feature maps are [B, C, H, W]");
        let t = x
            .apply(&self.group_norm)
            .view([b, c, h * w])
            .transpose(1, 2);
        let head = |l: &Linear| t.apply(l).unsqueeze(1);
        let y = attention(
            &head(&self.to_q),
            &head(&self.to_k),
            &head(&self.to_v),
            None,
            false,
        );
        let y = y.squeeze_dim(1).apply(&self.to_out);
        y.transpose(1, 2).reshape([b, c, h, w]) + x
    }
}
