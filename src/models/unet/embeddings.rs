//! Sinusoidal timestep features and the MLP that turns them into the time embedding.
use crate::models::layers::linear;
use crate::models::lora::Linear;
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

/// diffusers' `get_timestep_embedding`: `[B]` timesteps to `[B, dim]` fp32 features.
pub fn timestep_features(t: &Tensor, dim: i64, flip_sin_to_cos: bool, freq_shift: f64) -> Tensor {
    let half = dim / 2;
    let exponent = Tensor::arange(half, (Kind::Float, t.device())) * (-(10000f64.ln()))
        / (half as f64 - freq_shift);
    let angles = t.to_kind(Kind::Float).unsqueeze(1) * exponent.exp().unsqueeze(0);
    let (sin, cos) = (angles.sin(), angles.cos());
    let emb = if flip_sin_to_cos {
        Tensor::cat(&[cos, sin], -1)
    } else {
        Tensor::cat(&[sin, cos], -1)
    };
    if dim % 2 == 1 {
        emb.constant_pad_nd([0, 1])
    } else {
        emb
    }
}

/// `linear_1` - SiLU - `linear_2` (diffusers' `TimestepEmbedding`).
#[derive(Debug)]
pub struct TimestepEmbedding {
    linear_1: Linear,
    linear_2: Linear,
}

impl TimestepEmbedding {
    pub fn new(p: nn::Path, c_in: i64, c_out: i64) -> Self {
        Self {
            linear_1: linear(&p / "linear_1", c_in, c_out),
            linear_2: linear(&p / "linear_2", c_out, c_out),
        }
    }
}

impl Module for TimestepEmbedding {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.apply(&self.linear_1).silu().apply(&self.linear_2)
    }
}
