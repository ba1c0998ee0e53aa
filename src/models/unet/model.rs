//! The UNet of Stable Diffusion 1.x (diffusers' `UNet2DConditionModel`).
use super::attention::Transformer2DConfig;
use super::blocks::{DownBlock, LevelConfig, MidBlock, UpBlock};
use super::config::UNetConfig;
use super::embeddings::{timestep_features, TimestepEmbedding};
use crate::models::blocks::{conv, group_norm, BlockConfig, ResnetConfig};
use crate::models::lora::{self, AdaptableLayers, Conv2d};
use crate::models::segments::{run1, Direct, Segments};
use anyhow::Result;
use tch::nn;
use tch::Tensor;

#[derive(Debug)]
pub struct UNet2DConditionModel {
    conv_in: Conv2d,
    time_embedding: TimestepEmbedding,
    pub(super) down: Vec<DownBlock>,
    pub(super) mid: MidBlock,
    pub(super) up: Vec<UpBlock>,
    conv_norm_out: crate::models::vars::GroupNorm,
    conv_out: Conv2d,
    config: UNetConfig,
    lora: AdaptableLayers,
}

impl UNet2DConditionModel {
    pub fn new(p: &nn::Path, cfg: &UNetConfig) -> Result<Self> {
        cfg.validate()?;
        let (unet, layers) = lora::collect(|| Self::build(p, cfg));
        Ok(Self {
            lora: layers,
            ..unet
        })
    }

    /// Every linear and convolution layer by its diffusers module path, for LoRA adapters.
    pub fn lora_layers(&self) -> &AdaptableLayers {
        &self.lora
    }

    fn build(p: &nn::Path, cfg: &UNetConfig) -> Self {
        let ch = &cfg.block_out_channels;
        let n = ch.len();
        let (heads, layers, tlayers) = (cfg.heads(), cfg.layers(), cfg.transformer_layers());
        let temb = ch[0] * 4;
        let resnet = ResnetConfig {
            temb_channels: Some(temb),
            groups: cfg.norm_num_groups,
            eps: cfg.norm_eps,
            output_scale_factor: 1.0,
        };
        let attention = |level: usize| Transformer2DConfig {
            heads: heads[level],
            layers: tlayers[level],
            context_dim: cfg.cross_attention_dim,
            groups: cfg.norm_num_groups,
            linear_projection: cfg.use_linear_projection,
            upcast_attention: cfg.upcast_attention,
        };
        // Level `level`'s block, the `i`-th of its path (the last one does not resample).
        let block = |level: usize, i: usize, layers: i64, cross_attention: bool| LevelConfig {
            block: BlockConfig {
                layers,
                resnet,
                resample: i + 1 < n,
                downsample_padding: cfg.downsample_padding,
            },
            attention: cross_attention.then(|| attention(level)),
        };

        let down = (0..n)
            .map(|i| {
                let cross = cfg.down_block_types[i] == "CrossAttnDownBlock2D";
                let c_in = if i == 0 { ch[0] } else { ch[i - 1] };
                let level = block(i, i, layers[i], cross);
                DownBlock::new(p / "down_blocks" / i as i64, c_in, ch[i], &level)
            })
            .collect();
        let mid_resnet = ResnetConfig {
            output_scale_factor: cfg.mid_block_scale_factor,
            ..resnet
        };
        let mid = MidBlock::new(p / "mid_block", ch[n - 1], &mid_resnet, &attention(n - 1));
        let up = (0..n)
            .map(|i| {
                let level = n - 1 - i; // the down level this up block mirrors
                let cross = cfg.up_block_types[i] == "CrossAttnUpBlock2D";
                let c_prev = if i == 0 { ch[n - 1] } else { ch[level + 1] };
                let c_skip = ch[level.saturating_sub(1)];
                let spec = block(level, i, layers[level] + 1, cross);
                UpBlock::new(p / "up_blocks" / i as i64, c_prev, c_skip, ch[level], &spec)
            })
            .collect();
        Self {
            conv_in: conv(p / "conv_in", cfg.in_channels, ch[0], cfg.conv_in_kernel),
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
            conv_out: conv(p / "conv_out", ch[0], cfg.out_channels, cfg.conv_out_kernel),
            config: cfg.clone(),
            lora: AdaptableLayers::default(),
        }
    }

    pub fn config(&self) -> &UNetConfig {
        &self.config
    }

    /// Noise (or velocity) prediction. `timestep`: a 0-dim tensor or one per sample (any numeric
    /// kind); `context`: text embeddings `[B, 77, cross_attention_dim]`.
    pub fn forward(&self, sample: &Tensor, timestep: &Tensor, context: &Tensor) -> Tensor {
        self.forward_segments(sample, timestep, context, &mut Direct(self))
    }

    /// [`forward`](Self::forward) as segments run by `run`: `conv_in`, each resnet,
    /// transformer and resampler, and the output layers; the time embedding and `context` are
    /// the segments' shared inputs.
    pub fn forward_segments(
        &self,
        sample: &Tensor,
        timestep: &Tensor,
        context: &Tensor,
        run: &mut dyn Segments<Self>,
    ) -> Tensor {
        let b = sample.size()[0];
        let t = timestep
            .to_device(sample.device())
            .reshape([-1])
            .expand([b], false);
        let c = &self.config;
        let features =
            timestep_features(&t, c.block_out_channels[0], c.flip_sin_to_cos, c.freq_shift);
        let temb = run.input(&features.to_kind(sample.kind()).apply(&self.time_embedding));
        let context = run.input(&context.to_kind(sample.kind()));

        let x = if c.center_input_sample {
            sample * 2.0 - 1.0
        } else {
            sample.shallow_clone()
        };
        let mut h = run1(run, vec![x], |u, x| x[0].apply(&u.conv_in));
        let mut skips = vec![h.shallow_clone()];
        for (i, block) in self.down.iter().enumerate() {
            let (out, s) = block.forward(i, h, &temb, &context, run);
            h = out;
            skips.extend(s);
        }
        h = self.mid.forward(h, &temb, &context, run);
        let last = self.up.len() - 1;
        for (i, block) in self.up.iter().enumerate() {
            // Upsample to the size of the next skip connection (odd sizes round-trip exactly).
            let size = (i < last).then(|| {
                let s = skips[skips.len() - block.num_resnets() - 1].size();
                (s[2], s[3])
            });
            h = block.forward(i, h, &mut skips, &temb, &context, size, run);
        }
        run1(run, vec![h], |u, x| {
            x[0].apply(&u.conv_norm_out).silu().apply(&u.conv_out)
        })
    }
}
