//! The CLIP text transformer: token + position embeddings, pre-norm encoder layers with causal
//! self-attention, final layer norm. Variable names follow transformers' state dict
//! (`text_model.encoder.layers.N.self_attn.q_proj.weight`, ...).
use super::config::{Activation, ClipTextConfig};
use anyhow::Result;
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

#[derive(Debug)]
struct Attention {
    q_proj: nn::Linear,
    k_proj: nn::Linear,
    v_proj: nn::Linear,
    out_proj: nn::Linear,
    heads: i64,
}

impl Attention {
    fn new(p: nn::Path, cfg: &ClipTextConfig) -> Self {
        let d = cfg.hidden_size;
        Self {
            q_proj: nn::linear(&p / "q_proj", d, d, Default::default()),
            k_proj: nn::linear(&p / "k_proj", d, d, Default::default()),
            v_proj: nn::linear(&p / "v_proj", d, d, Default::default()),
            out_proj: nn::linear(&p / "out_proj", d, d, Default::default()),
            heads: cfg.num_attention_heads,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let (b, n, d) = x.size3().expect("hidden states are [batch, tokens, dim]");
        let split = |t: Tensor| t.view([b, n, self.heads, d / self.heads]).transpose(1, 2);
        let q = split(self.q_proj.forward(x));
        let k = split(self.k_proj.forward(x));
        let v = split(self.v_proj.forward(x));
        let y = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            None::<Tensor>,
            0.0,
            true,
            None,
            false,
        );
        self.out_proj.forward(&y.transpose(1, 2).reshape([b, n, d]))
    }
}

#[derive(Debug)]
struct EncoderLayer {
    layer_norm1: nn::LayerNorm,
    self_attn: Attention,
    layer_norm2: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
    act: Activation,
}

impl EncoderLayer {
    fn new(p: nn::Path, cfg: &ClipTextConfig) -> Result<Self> {
        let ln = nn::LayerNormConfig {
            eps: cfg.layer_norm_eps,
            ..Default::default()
        };
        let d = cfg.hidden_size;
        Ok(Self {
            layer_norm1: nn::layer_norm(&p / "layer_norm1", vec![d], ln),
            self_attn: Attention::new(&p / "self_attn", cfg),
            layer_norm2: nn::layer_norm(&p / "layer_norm2", vec![d], ln),
            fc1: nn::linear(
                &p / "mlp" / "fc1",
                d,
                cfg.intermediate_size,
                Default::default(),
            ),
            fc2: nn::linear(
                &p / "mlp" / "fc2",
                cfg.intermediate_size,
                d,
                Default::default(),
            ),
            act: cfg.activation()?,
        })
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let x = x + self.self_attn.forward(&self.layer_norm1.forward(x));
        let h = self.fc1.forward(&self.layer_norm2.forward(&x));
        let h = match self.act {
            Activation::QuickGelu => &h * (&h * 1.702).sigmoid(),
            Activation::Gelu => h.gelu("none"),
        };
        x + self.fc2.forward(&h)
    }
}

/// transformers' `CLIPTextModel`.
#[derive(Debug)]
pub struct ClipTextModel {
    token_embedding: nn::Embedding,
    position_embedding: nn::Embedding,
    layers: Vec<EncoderLayer>,
    final_layer_norm: nn::LayerNorm,
    config: ClipTextConfig,
}

impl ClipTextModel {
    pub fn new(p: &nn::Path, cfg: &ClipTextConfig) -> Result<Self> {
        cfg.validate()?;
        let p = p / "text_model";
        let emb = &p / "embeddings";
        let d = cfg.hidden_size;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| EncoderLayer::new(&p / "encoder" / "layers" / i, cfg))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            token_embedding: nn::embedding(
                &emb / "token_embedding",
                cfg.vocab_size,
                d,
                Default::default(),
            ),
            position_embedding: nn::embedding(
                &emb / "position_embedding",
                cfg.max_position_embeddings,
                d,
                Default::default(),
            ),
            layers,
            final_layer_norm: nn::layer_norm(
                &p / "final_layer_norm",
                vec![d],
                nn::LayerNormConfig {
                    eps: cfg.layer_norm_eps,
                    ..Default::default()
                },
            ),
            config: cfg.clone(),
        })
    }

    pub fn config(&self) -> &ClipTextConfig {
        &self.config
    }

    /// The hidden states before the first layer and after each layer.
    fn hidden_states(&self, input_ids: &Tensor, upto: usize) -> Tensor {
        let n = input_ids.size()[1];
        let positions = Tensor::arange(n, (Kind::Int64, input_ids.device()));
        let mut h =
            self.token_embedding.forward(input_ids) + self.position_embedding.forward(&positions);
        for layer in self.layers.iter().take(upto) {
            h = layer.forward(&h);
        }
        h
    }

    /// `last_hidden_state`: `[B, N, D]` after the final layer norm.
    pub fn forward(&self, input_ids: &Tensor) -> Tensor {
        self.forward_skip(input_ids, 0)
    }

    /// The hidden state `clip_skip` layers before the last, through the final layer norm (as
    /// diffusers' `clip_skip`); `0` is the usual last hidden state.
    pub fn forward_skip(&self, input_ids: &Tensor, clip_skip: usize) -> Tensor {
        let upto = self.layers.len().saturating_sub(clip_skip);
        self.final_layer_norm
            .forward(&self.hidden_states(input_ids, upto))
    }
}
