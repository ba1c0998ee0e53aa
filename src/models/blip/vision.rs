//! BLIP's ViT image encoder: patch embedding (a strided convolution), a class token, learned
//! positions, pre-norm encoder layers with a fused `qkv` projection, and a final layer norm.
//! Variable names follow transformers (`vision_model.encoder.layers.N.self_attn.qkv.weight`).
use super::config::BlipVisionConfig;
use crate::models::layers::{attention, layer_norm, linear, merge_heads, Mlp};
use crate::models::lora::Linear;
use crate::models::vars;
use tch::nn::{self, Init, Module};
use tch::Tensor;

/// Self-attention with one fused `qkv` projection.
#[derive(Debug)]
struct Attention {
    qkv: Linear,
    projection: Linear,
    heads: i64,
}

impl Module for Attention {
    fn forward(&self, x: &Tensor) -> Tensor {
        let (b, n, d) = x.size3().expect("hidden states are [batch, tokens, dim]");
        let qkv = x
            .apply(&self.qkv)
            .reshape([b, n, 3, self.heads, d / self.heads])
            .permute([2, 0, 3, 1, 4]);
        let y = attention(&qkv.get(0), &qkv.get(1), &qkv.get(2), None, false);
        merge_heads(&y).apply(&self.projection)
    }
}

#[derive(Debug)]
struct Layer {
    layer_norm1: crate::models::vars::LayerNorm,
    self_attn: Attention,
    layer_norm2: crate::models::vars::LayerNorm,
    mlp: Mlp,
}

impl Layer {
    fn new(p: nn::Path, cfg: &BlipVisionConfig) -> Self {
        let (d, eps) = (cfg.hidden_size, cfg.layer_norm_eps);
        let attn = &p / "self_attn";
        Self {
            layer_norm1: layer_norm(&p / "layer_norm1", d, eps),
            self_attn: Attention {
                qkv: linear(&attn / "qkv", d, 3 * d),
                projection: linear(&attn / "projection", d, d),
                heads: cfg.num_attention_heads,
            },
            layer_norm2: layer_norm(&p / "layer_norm2", d, eps),
            mlp: Mlp::new(&p / "mlp", d, cfg.intermediate_size, cfg.hidden_act),
        }
    }
}

impl Module for Layer {
    fn forward(&self, x: &Tensor) -> Tensor {
        let x = x + x.apply(&self.layer_norm1).apply(&self.self_attn);
        &x + x.apply(&self.layer_norm2).apply(&self.mlp)
    }
}

/// transformers' `BlipVisionModel` (the part captioning uses: the last hidden state).
#[derive(Debug)]
pub struct BlipVisionModel {
    patch_embedding: crate::models::vars::Conv2D,
    class_embedding: Tensor,
    position_embedding: Tensor,
    layers: Vec<Layer>,
    post_layernorm: crate::models::vars::LayerNorm,
    image_size: i64,
}

impl BlipVisionModel {
    /// `p` is the `vision_model` path.
    pub fn new(p: &nn::Path, cfg: &BlipVisionConfig) -> Self {
        let d = cfg.hidden_size;
        let emb = p / "embeddings";
        let patches = (cfg.image_size / cfg.patch_size).pow(2);
        let (k, zeros) = (cfg.patch_size, Init::Const(0.));
        Self {
            patch_embedding: vars::conv2d(&(&emb / "patch_embedding"), 3, d, k, k, 0),
            class_embedding: vars::var(&emb, "class_embedding", &[1, 1, d], zeros),
            position_embedding: vars::var(&emb, "position_embedding", &[1, patches + 1, d], zeros),
            layers: (0..cfg.num_hidden_layers)
                .map(|i| Layer::new(p / "encoder" / "layers" / i, cfg))
                .collect(),
            post_layernorm: layer_norm(p / "post_layernorm", d, cfg.layer_norm_eps),
            image_size: cfg.image_size,
        }
    }

    /// The side the model was trained at; `pixel_values` must be this size.
    pub fn image_size(&self) -> i64 {
        self.image_size
    }

    /// `pixel_values` `[B, 3, S, S]` (normalised) to image features `[B, 1 + patches, D]`.
    pub fn forward(&self, pixel_values: &Tensor) -> Tensor {
        let b = pixel_values.size()[0];
        let patches = pixel_values
            .to_kind(self.class_embedding.kind())
            .apply(&self.patch_embedding)
            .flatten(2, -1)
            .transpose(1, 2);
        let cls = self.class_embedding.expand([b, 1, -1], false);
        let h = Tensor::cat(&[cls, patches], 1) + &self.position_embedding;
        let h = self.layers.iter().fold(h, |h, layer| h.apply(layer));
        h.apply(&self.post_layernorm)
    }
}
