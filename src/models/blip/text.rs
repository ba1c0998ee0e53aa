//! BLIP's text decoder: a BERT (post-norm) with cross-attention to the image features in every
//! layer and a masked-LM style prediction head, run causally with a key/value cache so that each
//! new token costs one position, not the whole prefix. Variable names follow transformers
//! (`text_decoder.bert.encoder.layer.N.crossattention.self.key.weight`, `text_decoder.cls...`).
use super::config::BlipTextConfig;
use crate::models::layers::{attention, layer_norm, linear, merge_heads, split_heads};
use crate::models::lora::Linear;
use crate::models::vars;
use tch::nn::{self, Init};
use tch::{Device, Kind, Tensor};

#[derive(Debug)]
struct Attention {
    query: Linear,
    key: Linear,
    value: Linear,
    dense: Linear,
    layer_norm: crate::models::vars::LayerNorm,
    heads: i64,
}

impl Attention {
    fn new(p: nn::Path, cfg: &BlipTextConfig, kv_dim: i64) -> Self {
        let d = cfg.hidden_size;
        let s = &p / "self";
        let o = &p / "output";
        Self {
            query: linear(&s / "query", d, d),
            key: linear(&s / "key", kv_dim, d),
            value: linear(&s / "value", kv_dim, d),
            dense: linear(&o / "dense", d, d),
            layer_norm: layer_norm(&o / "LayerNorm", d, cfg.layer_norm_eps),
            heads: cfg.num_attention_heads,
        }
    }

    /// The keys and values `[B, heads, N, D / heads]` of `states` `[B, N, kv_dim]`.
    fn keys_values(&self, states: &Tensor) -> (Tensor, Tensor) {
        (
            split_heads(&states.apply(&self.key), self.heads),
            split_heads(&states.apply(&self.value), self.heads),
        )
    }

    /// Attention of `x` over `k`/`v`, then the output projection, residual and layer norm.
    fn attend(&self, x: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Tensor {
        let q = split_heads(&x.apply(&self.query), self.heads);
        let y = merge_heads(&attention(&q, k, v, mask, false)).apply(&self.dense);
        (y + x).apply(&self.layer_norm)
    }
}

#[derive(Debug)]
struct Layer {
    attention: Attention,
    crossattention: Attention,
    intermediate: Linear,
    output: Linear,
    output_norm: crate::models::vars::LayerNorm,
}

impl Layer {
    fn new(p: nn::Path, cfg: &BlipTextConfig) -> Self {
        let d = cfg.hidden_size;
        Self {
            attention: Attention::new(&p / "attention", cfg, d),
            crossattention: Attention::new(&p / "crossattention", cfg, cfg.encoder_hidden_size),
            intermediate: linear(&p / "intermediate" / "dense", d, cfg.intermediate_size),
            output: linear(&p / "output" / "dense", cfg.intermediate_size, d),
            output_norm: layer_norm(&p / "output" / "LayerNorm", d, cfg.layer_norm_eps),
        }
    }
}

/// Keys and values of every layer: the growing self-attention part and the fixed projections of
/// the image features. Rows are sequences (images × beams).
#[derive(Debug)]
pub struct DecoderCache {
    self_kv: Vec<Option<(Tensor, Tensor)>>,
    cross_kv: Vec<(Tensor, Tensor)>,
    len: i64,
}

impl DecoderCache {
    /// Tokens already in the cache.
    pub fn len(&self) -> i64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keeps the rows `index` (a beam search reordering): row `i` becomes old row `index[i]`.
    /// The image keys/values need no reordering as long as rows only move within one image's
    /// beams, which is all beam search does.
    pub fn reorder(&mut self, index: &Tensor) {
        for kv in self.self_kv.iter_mut().flatten() {
            *kv = (kv.0.index_select(0, index), kv.1.index_select(0, index));
        }
    }
}

/// transformers' `BlipTextLMHeadModel` in decoder mode.
#[derive(Debug)]
pub struct BlipTextDecoder {
    word_embeddings: crate::models::vars::Embedding,
    position_embeddings: crate::models::vars::Embedding,
    embeddings_norm: crate::models::vars::LayerNorm,
    layers: Vec<Layer>,
    head_dense: Linear,
    head_norm: crate::models::vars::LayerNorm,
    decoder_weight: Tensor,
    decoder_bias: Tensor,
    max_positions: i64,
}

impl BlipTextDecoder {
    /// `p` is the `text_decoder` path. With `tie_word_embeddings` the prediction head reuses the
    /// word embeddings (no `cls.predictions.decoder.weight` variable), as transformers does.
    pub fn new(p: &nn::Path, cfg: &BlipTextConfig) -> Self {
        let d = cfg.hidden_size;
        let bert = p / "bert";
        let emb = &bert / "embeddings";
        let eps = cfg.layer_norm_eps;
        let word_embeddings = vars::embedding(&(&emb / "word_embeddings"), cfg.vocab_size, d);
        let pred = p / "cls" / "predictions";
        let decoder_weight = if cfg.tie_word_embeddings {
            word_embeddings.ws.shallow_clone()
        } else {
            let zeros = Init::Const(0.);
            vars::var(&(&pred / "decoder"), "weight", &[cfg.vocab_size, d], zeros)
        };
        Self {
            position_embeddings: vars::embedding(
                &(&emb / "position_embeddings"),
                cfg.max_position_embeddings,
                d,
            ),
            embeddings_norm: layer_norm(&emb / "LayerNorm", d, eps),
            word_embeddings,
            layers: (0..cfg.num_hidden_layers)
                .map(|i| Layer::new(&bert / "encoder" / "layer" / i, cfg))
                .collect(),
            head_dense: linear(&pred / "transform" / "dense", d, d),
            head_norm: layer_norm(&pred / "transform" / "LayerNorm", d, eps),
            decoder_weight,
            decoder_bias: vars::var(&pred, "bias", &[cfg.vocab_size], Init::Const(0.)),
            max_positions: cfg.max_position_embeddings,
        }
    }

    /// The dtype the decoder runs in.
    pub fn dtype(&self) -> Kind {
        self.decoder_bias.kind()
    }

    /// The longest sequence (prompt + generated tokens) the position table allows.
    pub fn max_positions(&self) -> i64 {
        self.max_positions
    }

    /// An empty cache for `image_embeds` `[rows, patches, D]` (one row per sequence).
    pub fn cache(&self, image_embeds: &Tensor) -> DecoderCache {
        DecoderCache {
            self_kv: self.layers.iter().map(|_| None).collect(),
            cross_kv: self
                .layers
                .iter()
                .map(|l| l.crossattention.keys_values(image_embeds))
                .collect(),
            len: 0,
        }
    }

    /// Runs `input_ids` `[rows, T]` (the tokens after those already cached), extends the cache
    /// and returns the logits of the last position `[rows, vocab]`.
    pub fn step(&self, input_ids: &Tensor, cache: &mut DecoderCache) -> Tensor {
        let h = self.hidden(input_ids, cache);
        self.logits(&h.select(1, -1))
    }

    fn hidden(&self, input_ids: &Tensor, cache: &mut DecoderCache) -> Tensor {
        let t = input_ids.size()[1];
        let device = input_ids.device();
        let positions = Tensor::arange_start(cache.len, cache.len + t, (Kind::Int64, device));
        let mut h = (input_ids.apply(&self.word_embeddings)
            + positions.apply(&self.position_embeddings))
        .apply(&self.embeddings_norm);
        let mask = causal_mask(cache.len, t, device);
        for (i, layer) in self.layers.iter().enumerate() {
            let (k, v) = layer.attention.keys_values(&h);
            let (k, v) = match cache.self_kv[i].take() {
                Some((pk, pv)) => (Tensor::cat(&[pk, k], 2), Tensor::cat(&[pv, v], 2)),
                None => (k, v),
            };
            let a = layer.attention.attend(&h, &k, &v, mask.as_ref());
            cache.self_kv[i] = Some((k, v));
            let (ck, cv) = &cache.cross_kv[i];
            let c = layer.crossattention.attend(&a, ck, cv, None);
            let m = c.apply(&layer.intermediate).gelu("none");
            h = (m.apply(&layer.output) + c).apply(&layer.output_norm);
        }
        cache.len += t;
        h
    }

    fn logits(&self, h: &Tensor) -> Tensor {
        let h = h
            .apply(&self.head_dense)
            .gelu("none")
            .apply(&self.head_norm);
        h.matmul(&self.decoder_weight.tr()) + &self.decoder_bias
    }
}

/// New token `i` (absolute position `past + i`) sees positions `0..=past + i`; `None` when a
/// single token is added (it sees everything).
fn causal_mask(past: i64, t: i64, device: Device) -> Option<Tensor> {
    if t == 1 {
        return None;
    }
    let rows = Tensor::arange(t, (Kind::Int64, device)).unsqueeze(1) + past;
    let cols = Tensor::arange(past + t, (Kind::Int64, device)).unsqueeze(0);
    Some(cols.le_tensor(&rows))
}
