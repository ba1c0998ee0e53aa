//! The UNet of Stable Diffusion 1.x (diffusers' `UNet2DConditionModel`).
use super::blocks::{BlockCommon, DownBlock, LevelSpec, MidBlock, UpBlock};
use super::config::UNetConfig;
use super::embeddings::{timestep_features, TimestepEmbedding};
use crate::models::blocks::group_norm;
use anyhow::Result;
use tch::nn::{self, Module};
use tch::Tensor;

#[derive(Debug)]
pub struct UNet2DConditionModel {
    conv_in: nn::Conv2D,
    time_embedding: TimestepEmbedding,
    down: Vec<DownBlock>,
    mid: MidBlock,
    up: Vec<UpBlock>,
    conv_norm_out: nn::GroupNorm,
    conv_out: nn::Conv2D,
    config: UNetConfig,
}

impl UNet2DConditionModel {
    pub fn new(p: &nn::Path, cfg: &UNetConfig) -> Result<Self> {
        cfg.validate()?;
        let ch = &cfg.block_out_channels;
        let n = ch.len();
        let (heads, layers, tlayers) = (cfg.heads(), cfg.layers(), cfg.transformer_layers());
        let temb = ch[0] * 4;
        let common = BlockCommon {
            temb,
            groups: cfg.norm_num_groups,
            eps: cfg.norm_eps,
            context_dim: cfg.cross_attention_dim,
            linear_projection: cfg.use_linear_projection,
            upcast_attention: cfg.upcast_attention,
        };
        let conv = |name: &str, a: i64, b: i64, k: i64| {
            nn::conv2d(
                p / name,
                a,
                b,
                k,
                nn::ConvConfig {
                    padding: (k - 1) / 2,
                    ..Default::default()
                },
            )
        };

        let mut down = Vec::with_capacity(n);
        for i in 0..n {
            let spec = LevelSpec {
                c_in: if i == 0 { ch[0] } else { ch[i - 1] },
                c_out: ch[i],
                layers: layers[i],
                heads: heads[i],
                transformer_layers: tlayers[i],
                attention: cfg.down_block_types[i] == "CrossAttnDownBlock2D",
            };
            down.push(DownBlock::new(
                p / "down_blocks" / i as i64,
                &spec,
                i + 1 < n,
                cfg.downsample_padding,
                &common,
            ));
        }
        let mid = MidBlock::new(
            p / "mid_block",
            ch[n - 1],
            heads[n - 1],
            tlayers[n - 1],
            cfg.mid_block_scale_factor,
            &common,
        );

        let mut up = Vec::with_capacity(n);
        let mut prev = ch[n - 1];
        for i in 0..n {
            let level = n - 1 - i; // the down level this up block mirrors
            let spec = LevelSpec {
                c_in: ch[level.saturating_sub(1)],
                c_out: ch[level],
                layers: layers[level] + 1,
                heads: heads[level],
                transformer_layers: tlayers[level],
                attention: cfg.up_block_types[i] == "CrossAttnUpBlock2D",
            };
            up.push(UpBlock::new(
                p / "up_blocks" / i as i64,
                &spec,
                prev,
                i + 1 < n,
                &common,
            ));
            prev = ch[level];
        }
        Ok(Self {
            conv_in: conv("conv_in", cfg.in_channels, ch[0], cfg.conv_in_kernel),
            time_embedding: TimestepEmbedding::new(p / "time_embedding", ch[0], temb),
            down,
            mid,
            up,
            conv_norm_out: group_norm(
                p / "conv_norm_out",
                cfg.norm_num_groups,
                ch[0],
                cfg.norm_eps,
            ),
            conv_out: conv("conv_out", ch[0], cfg.out_channels, cfg.conv_out_kernel),
            config: cfg.clone(),
        })
    }

    pub fn config(&self) -> &UNetConfig {
        &self.config
    }

    /// Noise (or velocity) prediction. `timestep`: a 0-dim tensor or one per sample (any numeric
    /// kind); `context`: text embeddings `[B, 77, cross_attention_dim]`.
    pub fn forward(&self, sample: &Tensor, timestep: &Tensor, context: &Tensor) -> Tensor {
        let b = sample.size()[0];
        let t = timestep
            .to_device(sample.device())
            .reshape([-1])
            .expand([b], false);
        let c = &self.config;
        let features =
            timestep_features(&t, c.block_out_channels[0], c.flip_sin_to_cos, c.freq_shift);
        let temb = self
            .time_embedding
            .forward(&features.to_kind(sample.kind()));
        let context = context.to_kind(sample.kind());

        let x = if c.center_input_sample {
            sample * 2.0 - 1.0
        } else {
            sample.shallow_clone()
        };
        let mut h = self.conv_in.forward(&x);
        let mut skips = vec![h.shallow_clone()];
        for block in &self.down {
            let (out, s) = block.forward(&h, &temb, &context);
            h = out;
            skips.extend(s);
        }
        h = self.mid.forward(&h, &temb, &context);
        let last = self.up.len() - 1;
        for (i, block) in self.up.iter().enumerate() {
            // Upsample to the size of the next skip connection (odd sizes round-trip exactly).
            let size = (i < last).then(|| {
                let s = skips[skips.len() - block.num_resnets() - 1].size();
                (s[2], s[3])
            });
            h = block.forward(&h, &mut skips, &temb, &context, size);
        }
        self.conv_out
            .forward(&self.conv_norm_out.forward(&h).silu())
    }
}
