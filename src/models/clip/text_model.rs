//! The CLIP text transformer: token + position embeddings, pre-norm encoder layers with causal
//! self-attention, final layer norm. Variable names follow transformers' state dict
//! (`text_model.encoder.layers.N.self_attn.q_proj.weight`, ...).
//!
//! Token ids from the first added id on (textual-inversion tokens) read rows of an extra
//! table instead of `token_embedding.weight`, which is never resized: the checkpoint's
//! variables stay as loaded, and training can give gradients to the extra rows alone.
use super::config::ClipTextConfig;
use crate::models::layers::{attention, layer_norm, linear, merge_heads, split_heads, Mlp};
use crate::models::lora::{self, AdaptableLayers, Linear};
use crate::models::segments::{run1, Direct, Segments};
use crate::models::vars;
use anyhow::{bail, Result};
use tch::nn::{self, Module};
use tch::{Kind, Tensor};

#[derive(Debug)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    heads: i64,
}

impl Attention {
    fn new(p: nn::Path, cfg: &ClipTextConfig) -> Self {
        let d = cfg.hidden_size;
        Self {
            q_proj: linear(&p / "q_proj", d, d),
            k_proj: linear(&p / "k_proj", d, d),
            v_proj: linear(&p / "v_proj", d, d),
            out_proj: linear(&p / "out_proj", d, d),
            heads: cfg.num_attention_heads,
        }
    }
}

impl Module for Attention {
    /// Causal self-attention of `[B, N, D]` hidden states.
    fn forward(&self, x: &Tensor) -> Tensor {
        let heads = |l: &Linear| split_heads(&x.apply(l), self.heads);
        let y = attention(
            &heads(&self.q_proj),
            &heads(&self.k_proj),
            &heads(&self.v_proj),
            None,
            true,
        );
        merge_heads(&y).apply(&self.out_proj)
    }
}

#[derive(Debug)]
struct EncoderLayer {
    layer_norm1: crate::models::vars::LayerNorm,
    self_attn: Attention,
    layer_norm2: crate::models::vars::LayerNorm,
    mlp: Mlp,
}

impl EncoderLayer {
    fn new(p: nn::Path, cfg: &ClipTextConfig) -> Result<Self> {
        let (d, eps) = (cfg.hidden_size, cfg.layer_norm_eps);
        Ok(Self {
            layer_norm1: layer_norm(&p / "layer_norm1", d, eps),
            self_attn: Attention::new(&p / "self_attn", cfg),
            layer_norm2: layer_norm(&p / "layer_norm2", d, eps),
            mlp: Mlp::new(&p / "mlp", d, cfg.intermediate_size, cfg.activation()?),
        })
    }
}

impl Module for EncoderLayer {
    fn forward(&self, x: &Tensor) -> Tensor {
        let x = x + x.apply(&self.layer_norm1).apply(&self.self_attn);
        &x + x.apply(&self.layer_norm2).apply(&self.mlp)
    }
}

/// transformers' `CLIPTextModel`.
#[derive(Debug)]
pub struct ClipTextModel {
    token_embedding: crate::models::vars::Embedding,
    position_embedding: crate::models::vars::Embedding,
    layers: Vec<EncoderLayer>,
    final_layer_norm: crate::models::vars::LayerNorm,
    config: ClipTextConfig,
    lora: AdaptableLayers,
    extra: Option<ExtraTokens>,
}

/// Rows for the ids `first..first + rows.size()[0]`.
#[derive(Debug)]
struct ExtraTokens {
    first: i64,
    rows: Tensor,
}

impl ClipTextModel {
    pub fn new(p: &nn::Path, cfg: &ClipTextConfig) -> Result<Self> {
        cfg.validate()?;
        let (model, layers) = lora::collect(|| Self::build(p, cfg));
        Ok(Self {
            lora: layers,
            ..model?
        })
    }

    /// Every linear layer by its transformers module path (`text_model.encoder.layers.0.
    /// self_attn.q_proj`), for LoRA adapters.
    pub fn lora_layers(&self) -> &AdaptableLayers {
        &self.lora
    }

    fn build(p: &nn::Path, cfg: &ClipTextConfig) -> Result<Self> {
        let p = p / "text_model";
        let emb = &p / "embeddings";
        let d = cfg.hidden_size;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| EncoderLayer::new(&p / "encoder" / "layers" / i, cfg))
            .collect::<Result<Vec<_>>>()?;
        let embedding = |name: &str, n: i64| vars::embedding(&(&emb / name), n, d);
        Ok(Self {
            token_embedding: embedding("token_embedding", cfg.vocab_size),
            position_embedding: embedding("position_embedding", cfg.max_position_embeddings),
            layers,
            final_layer_norm: layer_norm(&p / "final_layer_norm", d, cfg.layer_norm_eps),
            config: cfg.clone(),
            lora: AdaptableLayers::default(),
            extra: None,
        })
    }

    /// Appends token-embedding rows `[n, D]` for the ids from `first_id` (the tokenizer's ids of
    /// the added tokens); a later call must continue where the last one ended. The rows are
    /// stored in the model's dtype and device unless they already are a leaf that requires
    /// grad, which is kept as it is (textual-inversion training owns that tensor).
    pub fn add_token_rows(&mut self, first_id: i64, rows: &Tensor) -> Result<()> {
        let d = self.config.hidden_size;
        let size = rows.size();
        if size.len() != 2 || size[1] != d {
            bail!("token rows of shape {size:?}, but the text encoder's hidden size is {d}");
        }
        let ws = &self.token_embedding.ws;
        let next = self
            .extra
            .as_ref()
            .map_or(first_id, |e| e.first + e.rows.size()[0]);
        let in_range = self.extra.is_some() || (0..=self.config.vocab_size).contains(&first_id);
        if first_id != next || !in_range {
            bail!(
                "token rows from id {first_id}, but the next id the text encoder can add is {next}"
            );
        }
        let rows = if rows.requires_grad() {
            if rows.device() != ws.device() {
                bail!(
                    "trainable token rows on {:?}, but the text encoder is on {:?}",
                    rows.device(),
                    ws.device()
                );
            }
            rows.shallow_clone()
        } else {
            rows.to_device(ws.device()).to_kind(ws.kind())
        };
        self.extra = Some(match self.extra.take() {
            None => ExtraTokens {
                first: first_id,
                rows,
            },
            Some(e) => ExtraTokens {
                first: e.first,
                rows: Tensor::cat(&[e.rows, rows.to_kind(ws.kind())], 0),
            },
        });
        Ok(())
    }

    /// The added rows `[n, D]` and the id of the first (none until tokens are added).
    pub fn token_rows(&self) -> Option<(i64, &Tensor)> {
        self.extra.as_ref().map(|e| (e.first, &e.rows))
    }

    /// How many ids the token embedding covers: the vocabulary and the added rows.
    pub fn token_count(&self) -> i64 {
        self.extra
            .as_ref()
            .map_or(self.config.vocab_size, |e| e.first + e.rows.size()[0])
    }

    /// The token embeddings of `ids`: the checkpoint's rows, and the added rows for added ids.
    fn embed_tokens(&self, ids: &Tensor) -> Tensor {
        let Some(e) = &self.extra else {
            return ids.apply(&self.token_embedding);
        };
        let added = ids.ge(e.first);
        let base = ids
            .clamp_max(self.config.vocab_size - 1)
            .apply(&self.token_embedding);
        let idx = (ids - e.first).clamp(0, e.rows.size()[0] - 1);
        let rows = e
            .rows
            .index_select(0, &idx.flatten(0, -1))
            .view(base.size().as_slice())
            .to_kind(base.kind());
        rows.where_self(&added.unsqueeze(-1), &base)
    }

    pub fn config(&self) -> &ClipTextConfig {
        &self.config
    }

    /// The hidden states after the first `upto` layers, each layer a segment.
    fn hidden_states(
        &self,
        input_ids: &Tensor,
        upto: usize,
        run: &mut dyn Segments<Self>,
    ) -> Tensor {
        let n = input_ids.size()[1];
        let positions = Tensor::arange(n, (Kind::Int64, input_ids.device()));
        let h = self.embed_tokens(input_ids) + positions.apply(&self.position_embedding);
        (0..self.layers.len().min(upto)).fold(run.input(&h), |h, i| {
            run1(run, vec![h], move |m, x| x[0].apply(&m.layers[i]))
        })
    }

    /// `last_hidden_state`: `[B, N, D]` after the final layer norm.
    pub fn forward(&self, input_ids: &Tensor) -> Tensor {
        self.forward_skip(input_ids, 0)
    }

    /// The hidden state `clip_skip` layers before the last, through the final layer norm (as
    /// diffusers' `clip_skip`); `0` is the usual last hidden state.
    pub fn forward_skip(&self, input_ids: &Tensor, clip_skip: usize) -> Tensor {
        self.forward_segments(input_ids, clip_skip, &mut Direct(self))
    }

    /// [`forward_skip`](Self::forward_skip) as segments run by `run`: each encoder layer and
    /// the final layer norm; the embeddings are their input.
    pub fn forward_segments(
        &self,
        input_ids: &Tensor,
        clip_skip: usize,
        run: &mut dyn Segments<Self>,
    ) -> Tensor {
        let upto = self.layers.len().saturating_sub(clip_skip);
        let h = self.hidden_states(input_ids, upto, run);
        run1(run, vec![h], |m, x| x[0].apply(&m.final_layer_norm))
    }
}
