//! The UNet's down, mid and up blocks (diffusers' `CrossAttnDownBlock2D` / `DownBlock2D`,
//! `UNetMidBlock2DCrossAttn`, `CrossAttnUpBlock2D` / `UpBlock2D`). A block with attention runs
//! a transformer after each resnet; one without is the same minus the transformers.
use super::attention::{Transformer2D, Transformer2DConfig};
use crate::models::blocks::{BlockConfig, Downsample2D, ResnetBlock2D, ResnetConfig, Upsample2D};
use tch::nn;
use tch::Tensor;

/// How one level's block is built: the block itself and, for the `CrossAttn*Block2D` types,
/// the transformer after each resnet.
#[derive(Debug, Clone, Copy, Default)]
pub struct LevelConfig {
    pub block: BlockConfig,
    pub attention: Option<Transformer2DConfig>,
}

impl LevelConfig {
    /// One transformer per resnet under `p / "attentions"`, none without attention.
    fn transformers(&self, p: &nn::Path, channels: i64) -> Vec<Transformer2D> {
        match &self.attention {
            Some(a) => (0..self.block.layers)
                .map(|j| Transformer2D::new(p / "attentions" / j, channels, a))
                .collect(),
            None => Vec::new(),
        }
    }
}

#[derive(Debug)]
pub struct DownBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2D>,
    downsample: Option<Downsample2D>,
}

impl DownBlock {
    pub fn new(p: nn::Path, c_in: i64, c_out: i64, cfg: &LevelConfig) -> Self {
        let b = &cfg.block;
        Self {
            resnets: (0..b.layers)
                .map(|j| {
                    let from = if j == 0 { c_in } else { c_out };
                    ResnetBlock2D::new(&p / "resnets" / j, from, c_out, &b.resnet)
                })
                .collect(),
            attentions: cfg.transformers(&p, c_out),
            downsample: b
                .resample
                .then(|| Downsample2D::new(&p / "downsamplers" / 0, c_out, b.downsample_padding)),
        }
    }

    /// Returns the output and the skip connections it leaves for the up path.
    pub fn forward(&self, x: &Tensor, temb: &Tensor, context: &Tensor) -> (Tensor, Vec<Tensor>) {
        let mut h = x.shallow_clone();
        let mut skips = Vec::with_capacity(self.resnets.len() + 1);
        for (j, r) in self.resnets.iter().enumerate() {
            h = r.forward(&h, Some(temb));
            if let Some(a) = self.attentions.get(j) {
                h = a.forward(&h, context);
            }
            skips.push(h.shallow_clone());
        }
        if let Some(d) = &self.downsample {
            h = h.apply(d);
            skips.push(h.shallow_clone());
        }
        (h, skips)
    }
}

/// resnet, then (transformer, resnet) at the lowest resolution.
#[derive(Debug)]
pub struct MidBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2D>,
}

impl MidBlock {
    pub fn new(
        p: nn::Path,
        channels: i64,
        resnet: &ResnetConfig,
        attention: &Transformer2DConfig,
    ) -> Self {
        Self {
            resnets: (0..2)
                .map(|j| ResnetBlock2D::new(&p / "resnets" / j, channels, channels, resnet))
                .collect(),
            attentions: vec![Transformer2D::new(
                &p / "attentions" / 0,
                channels,
                attention,
            )],
        }
    }

    pub fn forward(&self, x: &Tensor, temb: &Tensor, context: &Tensor) -> Tensor {
        let mut h = self.resnets[0].forward(x, Some(temb));
        for (a, r) in self.attentions.iter().zip(&self.resnets[1..]) {
            h = r.forward(&a.forward(&h, context), Some(temb));
        }
        h
    }
}

#[derive(Debug)]
pub struct UpBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2D>,
    upsample: Option<Upsample2D>,
}

impl UpBlock {
    /// `c_prev`: the channels of the block below; `c_skip`: those of the matching down level's
    /// input (the last skip connection this block takes).
    pub fn new(p: nn::Path, c_prev: i64, c_skip: i64, c_out: i64, cfg: &LevelConfig) -> Self {
        let b = &cfg.block;
        Self {
            resnets: (0..b.layers)
                .map(|j| {
                    let skip = if j == b.layers - 1 { c_skip } else { c_out };
                    let from = if j == 0 { c_prev } else { c_out };
                    ResnetBlock2D::new(&p / "resnets" / j, from + skip, c_out, &b.resnet)
                })
                .collect(),
            attentions: cfg.transformers(&p, c_out),
            upsample: b
                .resample
                .then(|| Upsample2D::new(&p / "upsamplers" / 0, c_out)),
        }
    }

    pub fn num_resnets(&self) -> usize {
        self.resnets.len()
    }

    /// `skips` are consumed from the end; `size` is the spatial size to upsample to.
    pub fn forward(
        &self,
        x: &Tensor,
        skips: &mut Vec<Tensor>,
        temb: &Tensor,
        context: &Tensor,
        size: Option<(i64, i64)>,
    ) -> Tensor {
        let mut h = x.shallow_clone();
        for (j, r) in self.resnets.iter().enumerate() {
            let skip = skips.pop().expect("one skip connection per resnet");
            h = r.forward(&Tensor::cat(&[&h, &skip], 1), Some(temb));
            if let Some(a) = self.attentions.get(j) {
                h = a.forward(&h, context);
            }
        }
        match &self.upsample {
            Some(u) => u.forward(&h, size),
            None => h,
        }
    }
}
