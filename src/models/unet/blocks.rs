//! The UNet's down, mid and up blocks (diffusers' `CrossAttnDownBlock2D` / `DownBlock2D`,
//! `UNetMidBlock2DCrossAttn`, `CrossAttnUpBlock2D` / `UpBlock2D`). A block with attention runs
//! a transformer after each resnet; one without is the same minus the transformers.
use super::attention::{Transformer2D, Transformer2DSpec};
use crate::models::blocks::{Downsample2D, ResnetBlock2D, Upsample2D};
use tch::nn;
use tch::Tensor;

/// What every block of one UNet shares.
pub struct BlockCommon {
    pub temb: i64,
    pub groups: i64,
    pub eps: f64,
    pub context_dim: i64,
    pub linear_projection: bool,
    pub upcast_attention: bool,
}

impl BlockCommon {
    fn transformer(&self, p: nn::Path, channels: i64, heads: i64, layers: i64) -> Transformer2D {
        Transformer2D::new(
            p,
            &Transformer2DSpec {
                channels,
                heads,
                layers,
                context_dim: self.context_dim,
                groups: self.groups,
                linear_projection: self.linear_projection,
                upcast_attention: self.upcast_attention,
            },
        )
    }

    fn resnet(&self, p: nn::Path, c_in: i64, c_out: i64, scale: f64) -> ResnetBlock2D {
        ResnetBlock2D::new(
            p,
            c_in,
            c_out,
            Some(self.temb),
            self.groups,
            self.eps,
            scale,
        )
    }
}

/// Shape of one level.
pub struct LevelSpec {
    pub c_in: i64,
    pub c_out: i64,
    pub layers: i64,
    pub heads: i64,
    pub transformer_layers: i64,
    pub attention: bool,
}

#[derive(Debug)]
pub struct DownBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2D>,
    downsample: Option<Downsample2D>,
}

impl DownBlock {
    pub fn new(
        p: nn::Path,
        s: &LevelSpec,
        add_downsample: bool,
        padding: i64,
        c: &BlockCommon,
    ) -> Self {
        let resnets = (0..s.layers)
            .map(|j| {
                c.resnet(
                    &p / "resnets" / j,
                    if j == 0 { s.c_in } else { s.c_out },
                    s.c_out,
                    1.0,
                )
            })
            .collect();
        let attentions = if s.attention {
            (0..s.layers)
                .map(|j| {
                    c.transformer(
                        &p / "attentions" / j,
                        s.c_out,
                        s.heads,
                        s.transformer_layers,
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        let downsample =
            add_downsample.then(|| Downsample2D::new(&p / "downsamplers" / 0, s.c_out, padding));
        Self {
            resnets,
            attentions,
            downsample,
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
            h = d.forward(&h);
            skips.push(h.shallow_clone());
        }
        (h, skips)
    }
}

#[derive(Debug)]
pub struct MidBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2D>,
}

impl MidBlock {
    pub fn new(
        p: nn::Path,
        channels: i64,
        heads: i64,
        transformer_layers: i64,
        scale: f64,
        c: &BlockCommon,
    ) -> Self {
        Self {
            resnets: (0..2)
                .map(|j| c.resnet(&p / "resnets" / j, channels, channels, scale))
                .collect(),
            attentions: vec![c.transformer(
                &p / "attentions" / 0,
                channels,
                heads,
                transformer_layers,
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
    /// `s.c_in` is the channel count of the matching down level's input (the last skip), and
    /// `prev` that of the block below.
    pub fn new(p: nn::Path, s: &LevelSpec, prev: i64, add_upsample: bool, c: &BlockCommon) -> Self {
        let resnets = (0..s.layers)
            .map(|j| {
                let skip = if j == s.layers - 1 { s.c_in } else { s.c_out };
                let from = if j == 0 { prev } else { s.c_out };
                c.resnet(&p / "resnets" / j, from + skip, s.c_out, 1.0)
            })
            .collect();
        let attentions = if s.attention {
            (0..s.layers)
                .map(|j| {
                    c.transformer(
                        &p / "attentions" / j,
                        s.c_out,
                        s.heads,
                        s.transformer_layers,
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        let upsample = add_upsample.then(|| Upsample2D::new(&p / "upsamplers" / 0, s.c_out));
        Self {
            resnets,
            attentions,
            upsample,
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
