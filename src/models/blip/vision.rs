//! BLIP's ViT image encoder: patch embedding (a strided convolution), a class token, learned
//! positions, pre-norm encoder layers with a fused `qkv` projection, and a final layer norm.
//! Variable names follow transformers (`vision_model.encoder.layers.N.self_attn.qkv.weight`).
use super::config::BlipVisionConfig;
use tch::nn::{self, Module};
use tch::Tensor;

#[derive(Debug)]
struct Attention {
    qkv: nn::Linear,
    projection: nn::Linear,
    heads: i64,
}

impl Attention {
    fn forward(&self, x: &Tensor) -> Tensor {
        let (b, n, d) = x.size3().expect("hidden states are [batch, tokens, dim]");
        let qkv = self
            .qkv
            .forward(x)
            .reshape([b, n, 3, self.heads, d / self.heads])
            .permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let y = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            None::<Tensor>,
            0.0,
            false,
            None,
            false,
        );
        self.projection
            .forward(&y.transpose(1, 2).reshape([b, n, d]))
    }
}

#[derive(Debug)]
struct Layer {
    layer_norm1: nn::LayerNorm,
    self_attn: Attention,
    layer_norm2: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl Layer {
    fn new(p: nn::Path, cfg: &BlipVisionConfig) -> Self {
        let d = cfg.hidden_size;
        let ln = nn::LayerNormConfig {
            eps: cfg.layer_norm_eps,
            ..Default::default()
        };
        let attn = &p / "self_attn";
        Self {
            layer_norm1: nn::layer_norm(&p / "layer_norm1", vec![d], ln),
            self_attn: Attention {
                qkv: nn::linear(&attn / "qkv", d, 3 * d, Default::default()),
                projection: nn::linear(&attn / "projection", d, d, Default::default()),
                heads: cfg.num_attention_heads,
            },
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
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let x = x + self.self_attn.forward(&self.layer_norm1.forward(x));
        let h = self.fc1.forward(&self.layer_norm2.forward(&x)).gelu("none");
        x + self.fc2.forward(&h)
    }
}

/// transformers' `BlipVisionModel` (the part captioning uses: the last hidden state).
#[derive(Debug)]
pub struct BlipVisionModel {
    patch_embedding: nn::Conv2D,
    class_embedding: Tensor,
    position_embedding: Tensor,
    layers: Vec<Layer>,
    post_layernorm: nn::LayerNorm,
    image_size: i64,
}

impl BlipVisionModel {
    /// `p` is the `vision_model` path.
    pub fn new(p: &nn::Path, cfg: &BlipVisionConfig) -> Self {
        let d = cfg.hidden_size;
        let emb = p / "embeddings";
        let patches = (cfg.image_size / cfg.patch_size).pow(2);
        let conv = nn::ConvConfig {
            stride: cfg.patch_size,
            ..Default::default()
        };
        Self {
            patch_embedding: nn::conv2d(&emb / "patch_embedding", 3, d, cfg.patch_size, conv),
            class_embedding: emb.zeros("class_embedding", &[1, 1, d]),
            position_embedding: emb.zeros("position_embedding", &[1, patches + 1, d]),
            layers: (0..cfg.num_hidden_layers)
                .map(|i| Layer::new(p / "encoder" / "layers" / i, cfg))
                .collect(),
            post_layernorm: nn::layer_norm(
                p / "post_layernorm",
                vec![d],
                nn::LayerNormConfig {
                    eps: cfg.layer_norm_eps,
                    ..Default::default()
                },
            ),
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
        let patches = self
            .patch_embedding
            .forward(&pixel_values.to_kind(self.class_embedding.kind()))
            .flatten(2, -1)
            .transpose(1, 2);
        let cls = self.class_embedding.expand([b, 1, -1], false);
        let mut h = Tensor::cat(&[cls, patches], 1) + &self.position_embedding;
        for layer in &self.layers {
            h = layer.forward(&h);
        }
        self.post_layernorm.forward(&h)
    }
}
