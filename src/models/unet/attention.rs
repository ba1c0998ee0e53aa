//! Cross-attention transformer of the UNet: diffusers' `Attention`, `BasicTransformerBlock`
//! (self-attention, cross-attention, GEGLU feed-forward, each pre-LayerNorm with a residual) and
//! `Transformer2DModel` (GroupNorm, projection in, blocks, projection out, residual).
use crate::models::blocks::{conv1, group_norm};
use crate::models::layers::{
    attention, layer_norm, linear, linear_no_bias, merge_heads, split_heads,
};
use crate::models::lora::{Conv2d, Linear};
use tch::nn;
use tch::{Kind, Tensor};

/// How a [`Transformer2D`] is shaped (diffusers' `Transformer2DModel` arguments); the default
/// is an SD 1.x level: 8 heads, one block, CLIP ViT-L's 768-wide context.
#[derive(Debug, Clone, Copy)]
pub struct Transformer2DConfig {
    pub heads: i64,
    /// `BasicTransformerBlock`s in the transformer.
    pub layers: i64,
    pub context_dim: i64,
    pub groups: i64,
    pub linear_projection: bool,
    /// Attention scores in fp32 when the model runs in half precision.
    pub upcast_attention: bool,
}

impl Default for Transformer2DConfig {
    fn default() -> Self {
        Self {
            heads: 8,
            layers: 1,
            context_dim: 768,
            groups: 32,
            linear_projection: false,
            upcast_attention: false,
        }
    }
}

#[derive(Debug)]
struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: i64,
    upcast: bool,
}

impl Attention {
    /// `dim`-wide queries over `context_dim`-wide keys and values, in `cfg.heads` heads.
    fn new(p: nn::Path, dim: i64, context_dim: i64, cfg: &Transformer2DConfig) -> Self {
        Self {
            to_q: linear_no_bias(&p / "to_q", dim, dim),
            to_k: linear_no_bias(&p / "to_k", context_dim, dim),
            to_v: linear_no_bias(&p / "to_v", context_dim, dim),
            to_out: linear(&p / "to_out" / 0, dim, dim),
            heads: cfg.heads,
            upcast: cfg.upcast_attention,
        }
    }

    /// `x` `[B, N, dim]` attends to `context` `[B, M, context_dim]` (itself when `None`).
    fn forward(&self, x: &Tensor, context: Option<&Tensor>) -> Tensor {
        let context = context.unwrap_or(x);
        let q = split_heads(&x.apply(&self.to_q), self.heads);
        let k = split_heads(&context.apply(&self.to_k), self.heads);
        let v = split_heads(&context.apply(&self.to_v), self.heads);
        let kind = q.kind();
        let y = if self.upcast && kind != Kind::Float {
            let f = |t: &Tensor| t.to_kind(Kind::Float);
            attention(&f(&q), &f(&k), &f(&v), None, false).to_kind(kind)
        } else {
            attention(&q, &k, &v, None, false)
        };
        merge_heads(&y).apply(&self.to_out)
    }
}

#[derive(Debug)]
struct BasicTransformerBlock {
    norm1: crate::models::vars::LayerNorm,
    attn1: Attention,
    norm2: crate::models::vars::LayerNorm,
    attn2: Attention,
    norm3: crate::models::vars::LayerNorm,
    geglu: Linear,
    ff_out: Linear,
}

impl BasicTransformerBlock {
    fn new(p: nn::Path, dim: i64, cfg: &Transformer2DConfig) -> Self {
        let ln = |name: &str| layer_norm(&p / name, dim, 1e-5);
        let ff_inner = dim * 4;
        Self {
            norm1: ln("norm1"),
            attn1: Attention::new(&p / "attn1", dim, dim, cfg),
            norm2: ln("norm2"),
            attn2: Attention::new(&p / "attn2", dim, cfg.context_dim, cfg),
            norm3: ln("norm3"),
            geglu: linear(&p / "ff" / "net" / 0 / "proj", dim, ff_inner * 2),
            ff_out: linear(&p / "ff" / "net" / 2, ff_inner, dim),
        }
    }

    fn forward(&self, x: &Tensor, context: &Tensor) -> Tensor {
        let x = self.attn1.forward(&x.apply(&self.norm1), None) + x;
        let x = self.attn2.forward(&x.apply(&self.norm2), Some(context)) + x;
        let h = x.apply(&self.norm3).apply(&self.geglu);
        let parts = h.chunk(2, -1);
        (&parts[0] * parts[1].gelu("none")).apply(&self.ff_out) + x
    }
}

/// `proj_in` / `proj_out`: a 1x1 convolution on the feature map, or a linear layer on tokens.
#[derive(Debug)]
enum Projection {
    Conv(Conv2d),
    Linear(Linear),
}

/// diffusers' `Transformer2DModel` for continuous (feature-map) inputs.
#[derive(Debug)]
pub struct Transformer2D {
    norm: crate::models::vars::GroupNorm,
    proj_in: Projection,
    blocks: Vec<BasicTransformerBlock>,
    proj_out: Projection,
}

impl Transformer2D {
    /// A transformer over `channels`-wide feature maps (`heads * head_dim == channels`).
    pub fn new(p: nn::Path, channels: i64, cfg: &Transformer2DConfig) -> Self {
        let proj = |name: &str| {
            if cfg.linear_projection {
                Projection::Linear(linear(&p / name, channels, channels))
            } else {
                Projection::Conv(conv1(&p / name, channels, channels))
            }
        };
        Self {
            norm: group_norm(&p / "norm", cfg.groups, channels, 1e-6),
            proj_in: proj("proj_in"),
            blocks: (0..cfg.layers)
                .map(|i| BasicTransformerBlock::new(&p / "transformer_blocks" / i, channels, cfg))
                .collect(),
            proj_out: proj("proj_out"),
        }
    }

    pub fn forward(&self, x: &Tensor, context: &Tensor) -> Tensor {
        let (b, _, h, w) = x.size4().expect("feature maps are [B, C, H, W]");
        let normed = x.apply(&self.norm);
        let to_tokens = |t: Tensor| {
            let c = t.size()[1];
            t.permute([0, 2, 3, 1]).reshape([b, h * w, c])
        };
        let to_map = |t: Tensor| {
            let c = t.size()[2];
            t.reshape([b, h, w, c]).permute([0, 3, 1, 2]).contiguous()
        };
        let mut tokens = match &self.proj_in {
            Projection::Conv(c) => to_tokens(normed.apply(c)),
            Projection::Linear(l) => to_tokens(normed).apply(l),
        };
        for block in &self.blocks {
            tokens = block.forward(&tokens, context);
        }
        let out = match &self.proj_out {
            Projection::Conv(c) => to_map(tokens).apply(c),
            Projection::Linear(l) => to_map(tokens.apply(l)),
        };
        out + x
    }
}
