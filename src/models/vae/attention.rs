//! The single-head spatial self-attention of the VAE's mid block (diffusers' `Attention` with
//! `group_norm`, `to_q`/`to_k`/`to_v`/`to_out.0` and a residual connection).
use crate::models::blocks::group_norm;
use tch::nn::{self, Module};
use tch::Tensor;

#[derive(Debug)]
pub struct SpatialAttention {
    group_norm: nn::GroupNorm,
    to_q: nn::Linear,
    to_k: nn::Linear,
    to_v: nn::Linear,
    to_out: nn::Linear,
}

impl SpatialAttention {
    pub fn new(p: nn::Path, channels: i64, groups: i64, eps: f64) -> Self {
        let lin = |name: &str| nn::linear(&p / name, channels, channels, Default::default());
        Self {
            group_norm: group_norm(&p / "group_norm", groups, channels, eps),
            to_q: lin("to_q"),
            to_k: lin("to_k"),
            to_v: lin("to_v"),
            to_out: nn::linear(&p / "to_out" / 0, channels, channels, Default::default()),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let (b, c, h, w) = x.size4().expect("feature maps are [B, C, H, W]");
        let t = self
            .group_norm
            .forward(x)
            .view([b, c, h * w])
            .transpose(1, 2);
        let head = |l: &nn::Linear| l.forward(&t).unsqueeze(1);
        let y = Tensor::scaled_dot_product_attention(
            &head(&self.to_q),
            &head(&self.to_k),
            &head(&self.to_v),
            None::<Tensor>,
            0.0,
            false,
            None,
            false,
        );
        let y = self.to_out.forward(&y.squeeze_dim(1));
        y.transpose(1, 2).reshape([b, c, h, w]) + x
    }
}
