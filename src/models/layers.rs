//! Pieces shared by the models' transformer layers (CLIP, BLIP, the UNet's and the VAE's
//! attention): multi-head attention through one call of PyTorch's fused kernel, splitting and
//! merging heads, the two-layer MLP, and short constructors for linear and layer-norm layers.
use tch::nn::{self, Module};
use tch::Tensor;

pub use super::lora::{Conv2d, Linear};

/// A linear layer with a bias (adaptable: see [`super::lora`]).
pub fn linear(p: nn::Path, c_in: i64, c_out: i64) -> Linear {
    super::lora::linear(p, c_in, c_out, true)
}

/// A linear layer without a bias (adaptable).
pub fn linear_no_bias(p: nn::Path, c_in: i64, c_out: i64) -> Linear {
    super::lora::linear(p, c_in, c_out, false)
}

/// Layer normalisation over the last `dim` features, with learnable affine parameters.
pub fn layer_norm(p: nn::Path, dim: i64, eps: f64) -> crate::models::vars::LayerNorm {
    crate::models::vars::layer_norm(&p, dim, eps)
}

/// Tokens `[B, N, heads * d]` to per-head tokens `[B, heads, N, d]`.
pub fn split_heads(t: &Tensor, heads: i64) -> Tensor {
    let (b, n, c) = t.size3().expect("tokens are [B, N, C]");
    t.view([b, n, heads, c / heads]).transpose(1, 2)
}

/// Per-head tokens `[B, heads, N, d]` back to `[B, N, heads * d]`.
pub fn merge_heads(t: &Tensor) -> Tensor {
    let (b, heads, n, d) = t.size4().expect("per-head tokens are [B, heads, N, d]");
    t.transpose(1, 2).reshape([b, n, heads * d])
}

/// `softmax(q kᵀ / sqrt(d)) v` over `[B, heads, N, d]` tensors, without dropout: PyTorch's
/// `scaled_dot_product_attention`, as the reference models call it. `mask` (true = may attend)
/// or `causal` restricts which keys each query sees.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    causal: bool,
) -> Tensor {
    Tensor::scaled_dot_product_attention(
        q,
        k,
        v,
        mask.map(Tensor::shallow_clone),
        0.0,
        causal,
        None,
        false,
    )
}

/// An activation as configs name it (`act_fn` in diffusers, `hidden_act` in transformers),
/// parsed once when the config is read; each model's `validate` says which ones it implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `x * sigmoid(x)` (diffusers' `silu`, also written `swish`).
    #[serde(alias = "swish")]
    Silu,
    /// `x * sigmoid(1.702 x)` (CLIP's `quick_gelu`).
    QuickGelu,
    /// The exact (erf) GELU.
    Gelu,
}

impl Activation {
    /// The name configs write.
    pub fn name(self) -> &'static str {
        match self {
            Self::Silu => "silu",
            Self::QuickGelu => "quick_gelu",
            Self::Gelu => "gelu",
        }
    }
}

impl Module for Activation {
    fn forward(&self, x: &Tensor) -> Tensor {
        match self {
            Self::Silu => x.silu(),
            Self::QuickGelu => x * (x * 1.702).sigmoid(),
            Self::Gelu => x.gelu("none"),
        }
    }
}

/// A transformer layer's feed-forward part, `fc2(act(fc1(x)))`, under `p / "fc1"` and
/// `p / "fc2"` (CLIP's and BLIP's vision `mlp`).
#[derive(Debug)]
pub struct Mlp {
    fc1: Linear,
    act: Activation,
    fc2: Linear,
}

impl Mlp {
    pub fn new(p: nn::Path, dim: i64, hidden: i64, act: Activation) -> Self {
        Self {
            fc1: linear(&p / "fc1", dim, hidden),
            act,
            fc2: linear(&p / "fc2", hidden, dim),
        }
    }
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.apply(&self.fc1).apply(&self.act).apply(&self.fc2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn heads_split_and_merge_back() {
        let t = Tensor::randn([2, 5, 12], (Kind::Float, Device::Cpu));
        let s = split_heads(&t, 3);
        assert_eq!(s.size(), [2, 3, 5, 4]);
        assert!(merge_heads(&s).equal(&t));
    }

    #[test]
    fn attention_is_softmax_of_scaled_scores() {
        let f = |s: &[i64]| Tensor::randn(s, (Kind::Float, Device::Cpu));
        let (q, k, v) = (f(&[1, 2, 3, 4]), f(&[1, 2, 5, 4]), f(&[1, 2, 5, 4]));
        let want = (q.matmul(&k.transpose(-2, -1)) / 2.0)
            .softmax(-1, Kind::Float)
            .matmul(&v);
        let got = attention(&q, &k, &v, None, false);
        assert!(got.allclose(&want, 1e-5, 1e-6, false));
    }
}
