//! Cross-attention transformer of the UNet: diffusers' `Attention`, `BasicTransformerBlock`
//! (self-attention, cross-attention, GEGLU feed-forward, each pre-LayerNorm with a residual) and
//! `Transformer2DModel` (GroupNorm, projection in, blocks, projection out, residual).
use crate::models::blocks::{conv1, group_norm};
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

#[derive(Debug)]
struct Attention {
    to_q: nn::Linear,
    to_k: nn::Linear,
    to_v: nn::Linear,
    to_out: nn::Linear,
    heads: i64,
    upcast: bool,
}

impl Attention {
    fn new(
        p: nn::Path,
        query_dim: i64,
        context_dim: i64,
        heads: i64,
        head_dim: i64,
        upcast: bool,
    ) -> Self {
        let inner = heads * head_dim;
        let no_bias = nn::LinearConfig {
            bias: false,
            ..Default::default()
        };
        Self {
            to_q: nn::linear(&p / "to_q", query_dim, inner, no_bias),
            to_k: nn::linear(&p / "to_k", context_dim, inner, no_bias),
            to_v: nn::linear(&p / "to_v", context_dim, inner, no_bias),
            to_out: nn::linear(&p / "to_out" / 0, inner, query_dim, Default::default()),
            heads,
            upcast,
        }
    }

    /// `x` `[B, N, query_dim]` attends to `context` `[B, M, context_dim]` (itself when `None`).
    fn forward(&self, x: &Tensor, context: Option<&Tensor>) -> Tensor {
        let context = context.unwrap_or(x);
        let (b, n, _) = x.size3().expect("tokens are [B, N, C]");
        let split = |t: Tensor| {
            let (b, m, c) = t.size3().expect("tokens are [B, N, C]");
            t.view([b, m, self.heads, c / self.heads]).transpose(1, 2)
        };
        let (q, k, v) = (
            split(self.to_q.forward(x)),
            split(self.to_k.forward(context)),
            split(self.to_v.forward(context)),
        );
        let kind = q.kind();
        let y = if self.upcast && kind != Kind::Float {
            let f = |t: &Tensor| t.to_kind(Kind::Float);
            Tensor::scaled_dot_product_attention(
                &f(&q),
                &f(&k),
                &f(&v),
                None::<Tensor>,
                0.0,
                false,
                None,
                false,
            )
            .to_kind(kind)
        } else {
            Tensor::scaled_dot_product_attention(
                &q,
                &k,
                &v,
                None::<Tensor>,
                0.0,
                false,
                None,
                false,
            )
        };
        let inner = y.size()[1] * y.size()[3];
        self.to_out
            .forward(&y.transpose(1, 2).reshape([b, n, inner]))
    }
}

#[derive(Debug)]
struct BasicTransformerBlock {
    norm1: nn::LayerNorm,
    attn1: Attention,
    norm2: nn::LayerNorm,
    attn2: Attention,
    norm3: nn::LayerNorm,
    geglu: nn::Linear,
    ff_out: nn::Linear,
}

impl BasicTransformerBlock {
    fn new(
        p: nn::Path,
        dim: i64,
        context_dim: i64,
        heads: i64,
        head_dim: i64,
        upcast: bool,
    ) -> Self {
        let ln = |name: &str| nn::layer_norm(&p / name, vec![dim], Default::default());
        let ff_inner = dim * 4;
        Self {
            norm1: ln("norm1"),
            attn1: Attention::new(&p / "attn1", dim, dim, heads, head_dim, upcast),
            norm2: ln("norm2"),
            attn2: Attention::new(&p / "attn2", dim, context_dim, heads, head_dim, upcast),
            norm3: ln("norm3"),
            geglu: nn::linear(
                &p / "ff" / "net" / 0 / "proj",
                dim,
                ff_inner * 2,
                Default::default(),
            ),
            ff_out: nn::linear(&p / "ff" / "net" / 2, ff_inner, dim, Default::default()),
        }
    }

    fn forward(&self, x: &Tensor, context: &Tensor) -> Tensor {
        let x = self.attn1.forward(&self.norm1.forward(x), None) + x;
        let x = self.attn2.forward(&self.norm2.forward(&x), Some(context)) + x;
        let h = self.geglu.forward(&self.norm3.forward(&x));
        let parts = h.chunk(2, -1);
        let h = &parts[0] * parts[1].gelu("none");
        self.ff_out.forward(&h) + x
    }
}

#[derive(Debug)]
enum Projection {
    Conv(nn::Conv2D),
    Linear(nn::Linear),
}

/// diffusers' `Transformer2DModel` for continuous (feature-map) inputs.
#[derive(Debug)]
pub struct Transformer2D {
    norm: nn::GroupNorm,
    proj_in: Projection,
    blocks: Vec<BasicTransformerBlock>,
    proj_out: Projection,
}

/// How a [`Transformer2D`] is shaped.
pub struct Transformer2DSpec {
    pub channels: i64,
    pub heads: i64,
    pub layers: i64,
    pub context_dim: i64,
    pub groups: i64,
    pub linear_projection: bool,
    pub upcast_attention: bool,
}

impl Transformer2D {
    pub fn new(p: nn::Path, s: &Transformer2DSpec) -> Self {
        let inner = s.channels; // heads * (channels / heads)
        let head_dim = s.channels / s.heads;
        let proj = |name: &str, a: i64, b: i64| {
            if s.linear_projection {
                Projection::Linear(nn::linear(&p / name, a, b, Default::default()))
            } else {
                Projection::Conv(conv1(&p / name, a, b))
            }
        };
        Self {
            norm: group_norm(&p / "norm", s.groups, s.channels, 1e-6),
            proj_in: proj("proj_in", s.channels, inner),
            blocks: (0..s.layers)
                .map(|i| {
                    BasicTransformerBlock::new(
                        &p / "transformer_blocks" / i,
                        inner,
                        s.context_dim,
                        s.heads,
                        head_dim,
                        s.upcast_attention,
                    )
                })
                .collect(),
            proj_out: proj("proj_out", inner, s.channels),
        }
    }

    pub fn forward(&self, x: &Tensor, context: &Tensor) -> Tensor {
        let (b, _, h, w) = x.size4().expect("feature maps are [B, C, H, W]");
        let normed = self.norm.forward(x);
        let to_tokens = |t: Tensor| {
            let c = t.size()[1];
            t.permute([0, 2, 3, 1]).reshape([b, h * w, c])
        };
        let to_map = |t: Tensor| {
            let c = t.size()[2];
            t.reshape([b, h, w, c]).permute([0, 3, 1, 2]).contiguous()
        };
        let mut tokens = match &self.proj_in {
            Projection::Conv(c) => to_tokens(c.forward(&normed)),
            Projection::Linear(l) => l.forward(&to_tokens(normed)),
        };
        for block in &self.blocks {
            tokens = block.forward(&tokens, context);
        }
        let out = match &self.proj_out {
            Projection::Conv(c) => c.forward(&to_map(tokens)),
            Projection::Linear(l) => to_map(l.forward(&tokens)),
        };
        out + x
    }
}
