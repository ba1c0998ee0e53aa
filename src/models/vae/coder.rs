//! The VAE's encoder and decoder stacks (diffusers' `Encoder` / `Decoder` of `vae.py`, with
//! their `DownEncoderBlock2D` / `UpDecoderBlock2D` levels).
use super::attention::SpatialAttention;
use super::config::VaeConfig;
use crate::models::blocks::{
    conv3, group_norm, BlockConfig, Downsample2D, ResnetBlock2D, ResnetConfig, Upsample2D,
};
use crate::models::lora::Conv2d;
use tch::nn::{self, Module};
use tch::Tensor;

/// The resnets' settings: no time embedding, eps 1e-6, the config's groups.
fn resnet_config(cfg: &VaeConfig) -> ResnetConfig {
    ResnetConfig {
        groups: cfg.norm_num_groups,
        ..Default::default()
    }
}

/// resnet - attention - resnet at the lowest resolution.
#[derive(Debug)]
struct MidBlock {
    resnets: [ResnetBlock2D; 2],
    attention: Option<SpatialAttention>,
}

impl MidBlock {
    fn new(p: nn::Path, c: i64, cfg: &VaeConfig) -> Self {
        let resnet = resnet_config(cfg);
        let r = |i: i64| ResnetBlock2D::new(&p / "resnets" / i, c, c, &resnet);
        Self {
            resnets: [r(0), r(1)],
            attention: cfg.mid_block_add_attention.then(|| {
                SpatialAttention::new(&p / "attentions" / 0, c, resnet.groups, resnet.eps)
            }),
        }
    }
}

impl Module for MidBlock {
    fn forward(&self, x: &Tensor) -> Tensor {
        let h = self.resnets[0].forward(x, None).apply_opt(&self.attention);
        self.resnets[1].forward(&h, None)
    }
}

/// What ends a level: a downsampler, an upsampler or nothing (the last level).
#[derive(Debug)]
enum Resample {
    Down(Downsample2D),
    Up(Upsample2D),
    None,
}

/// One level: `cfg.layers` resnets, then the resampler.
#[derive(Debug)]
struct Block {
    resnets: Vec<ResnetBlock2D>,
    resample: Resample,
}

impl Block {
    /// A `DownEncoderBlock2D` (`up == false`) or an `UpDecoderBlock2D` from `c_in` to `c_out`
    /// channels.
    fn new(p: nn::Path, c_in: i64, c_out: i64, cfg: &BlockConfig, up: bool) -> Self {
        let resnets = (0..cfg.layers)
            .map(|j| {
                let from = if j == 0 { c_in } else { c_out };
                ResnetBlock2D::new(&p / "resnets" / j, from, c_out, &cfg.resnet)
            })
            .collect();
        let resample = match (cfg.resample, up) {
            (false, _) => Resample::None,
            (true, false) => Resample::Down(Downsample2D::new(
                &p / "downsamplers" / 0,
                c_out,
                cfg.downsample_padding,
            )),
            (true, true) => Resample::Up(Upsample2D::new(&p / "upsamplers" / 0, c_out)),
        };
        Self { resnets, resample }
    }
}

impl Module for Block {
    fn forward(&self, x: &Tensor) -> Tensor {
        let h = self
            .resnets
            .iter()
            .fold(x.shallow_clone(), |h, r| r.forward(&h, None));
        match &self.resample {
            Resample::Down(d) => h.apply(d),
            Resample::Up(u) => u.forward(&h, None),
            Resample::None => h,
        }
    }
}

/// The levels of the down (`up == false`) or up path under `p`, over `channels` in path order,
/// each with `layers` resnets.
fn levels(p: nn::Path, channels: &[i64], layers: i64, cfg: &VaeConfig, up: bool) -> Vec<Block> {
    let mut c_prev = channels[0];
    let mut out = Vec::with_capacity(channels.len());
    for (i, &c) in channels.iter().enumerate() {
        let block = BlockConfig {
            layers,
            resnet: resnet_config(cfg),
            resample: i + 1 < channels.len(),
            downsample_padding: 0,
        };
        out.push(Block::new(&p / i as i64, c_prev, c, &block, up));
        c_prev = c;
    }
    out
}

#[derive(Debug)]
pub struct Encoder {
    conv_in: Conv2d,
    down: Vec<Block>,
    mid: MidBlock,
    conv_norm_out: crate::models::vars::GroupNorm,
    conv_out: Conv2d,
}

impl Encoder {
    pub fn new(p: nn::Path, cfg: &VaeConfig) -> Self {
        let ch = &cfg.block_out_channels;
        let last = *ch.last().expect("validated non-empty");
        let down = levels(
            &p / "down_blocks",
            ch,
            cfg.layers_per_block as i64,
            cfg,
            false,
        );
        Self {
            conv_in: conv3(&p / "conv_in", cfg.in_channels, ch[0]),
            down,
            mid: MidBlock::new(&p / "mid_block", last, cfg),
            conv_norm_out: group_norm(&p / "conv_norm_out", cfg.norm_num_groups, last, 1e-6),
            conv_out: conv3(&p / "conv_out", last, 2 * cfg.latent_channels),
        }
    }
}

impl Module for Encoder {
    fn forward(&self, x: &Tensor) -> Tensor {
        let h = self
            .down
            .iter()
            .fold(x.apply(&self.conv_in), |h, b| h.apply(b));
        h.apply(&self.mid)
            .apply(&self.conv_norm_out)
            .silu()
            .apply(&self.conv_out)
    }
}

#[derive(Debug)]
pub struct Decoder {
    conv_in: Conv2d,
    mid: MidBlock,
    up: Vec<Block>,
    conv_norm_out: crate::models::vars::GroupNorm,
    conv_out: Conv2d,
}

impl Decoder {
    pub fn new(p: nn::Path, cfg: &VaeConfig) -> Self {
        let rev: Vec<i64> = cfg.block_out_channels.iter().rev().copied().collect();
        let first = cfg.block_out_channels[0];
        let up = levels(
            &p / "up_blocks",
            &rev,
            cfg.layers_per_block as i64 + 1,
            cfg,
            true,
        );
        Self {
            conv_in: conv3(&p / "conv_in", cfg.latent_channels, rev[0]),
            mid: MidBlock::new(&p / "mid_block", rev[0], cfg),
            up,
            conv_norm_out: group_norm(&p / "conv_norm_out", cfg.norm_num_groups, first, 1e-6),
            conv_out: conv3(&p / "conv_out", first, cfg.out_channels),
        }
    }
}

impl Module for Decoder {
    fn forward(&self, z: &Tensor) -> Tensor {
        let h = z.apply(&self.conv_in).apply(&self.mid);
        let h = self.up.iter().fold(h, |h, b| h.apply(b));
        h.apply(&self.conv_norm_out).silu().apply(&self.conv_out)
    }
}
