//! The VAE's encoder and decoder stacks (diffusers' `Encoder` / `Decoder` of `vae.py`).
use super::attention::SpatialAttention;
use super::config::VaeConfig;
use crate::models::blocks::{conv3, group_norm, Downsample2D, ResnetBlock2D, Upsample2D};
use tch::nn::{self, Module};
use tch::Tensor;

const EPS: f64 = 1e-6;

/// resnet - attention - resnet at the lowest resolution.
#[derive(Debug)]
struct MidBlock {
    resnets: [ResnetBlock2D; 2],
    attention: Option<SpatialAttention>,
}

impl MidBlock {
    fn new(p: nn::Path, c: i64, cfg: &VaeConfig) -> Self {
        let g = cfg.norm_num_groups;
        let r = |i: i64| ResnetBlock2D::new(&p / "resnets" / i, c, c, None, g, EPS, 1.0);
        Self {
            resnets: [r(0), r(1)],
            attention: cfg
                .mid_block_add_attention
                .then(|| SpatialAttention::new(&p / "attentions" / 0, c, g, EPS)),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let mut h = self.resnets[0].forward(x, None);
        if let Some(a) = &self.attention {
            h = a.forward(&h);
        }
        self.resnets[1].forward(&h, None)
    }
}

#[derive(Debug)]
pub struct Encoder {
    conv_in: nn::Conv2D,
    down: Vec<(Vec<ResnetBlock2D>, Option<Downsample2D>)>,
    mid: MidBlock,
    conv_norm_out: nn::GroupNorm,
    conv_out: nn::Conv2D,
}

impl Encoder {
    pub fn new(p: nn::Path, cfg: &VaeConfig) -> Self {
        let ch = &cfg.block_out_channels;
        let g = cfg.norm_num_groups;
        let mut down = Vec::new();
        let mut c_prev = ch[0];
        for (i, &c) in ch.iter().enumerate() {
            let bp = &p / "down_blocks" / i as i64;
            let resnets = (0..cfg.layers_per_block)
                .map(|j| {
                    let c_in = if j == 0 { c_prev } else { c };
                    ResnetBlock2D::new(&bp / "resnets" / j as i64, c_in, c, None, g, EPS, 1.0)
                })
                .collect();
            let down_s =
                (i + 1 < ch.len()).then(|| Downsample2D::new(&bp / "downsamplers" / 0, c, 0));
            down.push((resnets, down_s));
            c_prev = c;
        }
        let last = *ch.last().expect("validated non-empty");
        Self {
            conv_in: conv3(&p / "conv_in", cfg.in_channels, ch[0]),
            down,
            mid: MidBlock::new(&p / "mid_block", last, cfg),
            conv_norm_out: group_norm(&p / "conv_norm_out", g, last, EPS),
            conv_out: conv3(&p / "conv_out", last, 2 * cfg.latent_channels),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let mut h = self.conv_in.forward(x);
        for (resnets, down) in &self.down {
            for r in resnets {
                h = r.forward(&h, None);
            }
            if let Some(d) = down {
                h = d.forward(&h);
            }
        }
        let h = self.mid.forward(&h);
        self.conv_out
            .forward(&self.conv_norm_out.forward(&h).silu())
    }
}

#[derive(Debug)]
pub struct Decoder {
    conv_in: nn::Conv2D,
    mid: MidBlock,
    up: Vec<(Vec<ResnetBlock2D>, Option<Upsample2D>)>,
    conv_norm_out: nn::GroupNorm,
    conv_out: nn::Conv2D,
}

impl Decoder {
    pub fn new(p: nn::Path, cfg: &VaeConfig) -> Self {
        let rev: Vec<i64> = cfg.block_out_channels.iter().rev().copied().collect();
        let g = cfg.norm_num_groups;
        let mut up = Vec::new();
        let mut c_prev = rev[0];
        for (i, &c) in rev.iter().enumerate() {
            let bp = &p / "up_blocks" / i as i64;
            let resnets = (0..=cfg.layers_per_block)
                .map(|j| {
                    let c_in = if j == 0 { c_prev } else { c };
                    ResnetBlock2D::new(&bp / "resnets" / j as i64, c_in, c, None, g, EPS, 1.0)
                })
                .collect();
            let up_s = (i + 1 < rev.len()).then(|| Upsample2D::new(&bp / "upsamplers" / 0, c));
            up.push((resnets, up_s));
            c_prev = c;
        }
        let first = cfg.block_out_channels[0];
        Self {
            conv_in: conv3(&p / "conv_in", cfg.latent_channels, rev[0]),
            mid: MidBlock::new(&p / "mid_block", rev[0], cfg),
            up,
            conv_norm_out: group_norm(&p / "conv_norm_out", g, first, EPS),
            conv_out: conv3(&p / "conv_out", first, cfg.out_channels),
        }
    }

    pub fn forward(&self, z: &Tensor) -> Tensor {
        let mut h = self.mid.forward(&self.conv_in.forward(z));
        for (resnets, upsample) in &self.up {
            for r in resnets {
                h = r.forward(&h, None);
            }
            if let Some(u) = upsample {
                h = u.forward(&h, None);
            }
        }
        self.conv_out
            .forward(&self.conv_norm_out.forward(&h).silu())
    }
}
