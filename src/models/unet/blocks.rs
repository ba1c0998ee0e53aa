//! The UNet's down, mid and up blocks (diffusers' `CrossAttnDownBlock2D` / `DownBlock2D`,
//! `UNetMidBlock2DCrossAttn`, `CrossAttnUpBlock2D` / `UpBlock2D`). A block with attention runs
//! a transformer after each resnet; one without is the same minus the transformers. Each
//! resnet, transformer and resampler runs as one segment of the UNet (`models::segments`).
use super::attention::{Transformer2D, Transformer2DConfig};
use super::UNet2DConditionModel;
use crate::models::blocks::{BlockConfig, Downsample2D, ResnetBlock2D, ResnetConfig, Upsample2D};
use crate::models::segments::{run1, Segments};
use tch::nn;
use tch::Tensor;

/// The segments of a UNet forward pass.
pub type Run<'a> = dyn Segments<UNet2DConditionModel> + 'a;

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

    /// Block `at` of the down path, one segment per resnet, transformer and downsampler.
    /// Returns the output and the skip connections it leaves for the up path.
    pub fn forward(
        &self,
        at: usize,
        x: Tensor,
        temb: &Tensor,
        context: &Tensor,
        run: &mut Run,
    ) -> (Tensor, Vec<Tensor>) {
        let mut h = x;
        let mut skips = Vec::with_capacity(self.resnets.len() + 1);
        for j in 0..self.resnets.len() {
            h = resnet(run, vec![h], temb, move |u| &u.down[at].resnets[j]);
            if j < self.attentions.len() {
                h = transformer(run, h, context, move |u| &u.down[at].attentions[j]);
            }
            skips.push(h.shallow_clone());
        }
        if self.downsample.is_some() {
            h = run1(run, vec![h], move |u, x| {
                let d = u.down[at].downsample.as_ref();
                x[0].apply(d.expect("the block's downsampler"))
            });
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

    pub fn forward(&self, x: Tensor, temb: &Tensor, context: &Tensor, run: &mut Run) -> Tensor {
        let mut h = resnet(run, vec![x], temb, |u| &u.mid.resnets[0]);
        for j in 0..self.attentions.len() {
            h = transformer(run, h, context, move |u| &u.mid.attentions[j]);
            h = resnet(run, vec![h], temb, move |u| &u.mid.resnets[j + 1]);
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

    /// Block `at` of the up path, one segment per resnet (on the input and its skip
    /// connection), transformer and upsampler. `skips` are consumed from the end; `size` is
    /// the spatial size to upsample to.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        at: usize,
        x: Tensor,
        skips: &mut Vec<Tensor>,
        temb: &Tensor,
        context: &Tensor,
        size: Option<(i64, i64)>,
        run: &mut Run,
    ) -> Tensor {
        let mut h = x;
        for j in 0..self.resnets.len() {
            let skip = skips.pop().expect("one skip connection per resnet");
            h = resnet(run, vec![h, skip], temb, move |u| &u.up[at].resnets[j]);
            if j < self.attentions.len() {
                h = transformer(run, h, context, move |u| &u.up[at].attentions[j]);
            }
        }
        if self.upsample.is_none() {
            return h;
        }
        run1(run, vec![h], move |u, x| {
            let up = u.up[at].upsample.as_ref();
            up.expect("the block's upsampler").forward(&x[0], size)
        })
    }
}

/// The segment of one resnet: its input (channels concatenated: an up block's input and skip
/// connection) and the time embedding.
fn resnet(
    run: &mut Run,
    mut x: Vec<Tensor>,
    temb: &Tensor,
    layer: impl Fn(&UNet2DConditionModel) -> &ResnetBlock2D + 'static,
) -> Tensor {
    x.push(temb.shallow_clone());
    run1(run, x, move |u, x| {
        let (temb, x) = x.split_last().expect("a resnet's inputs");
        let h = match x {
            [h] => h.shallow_clone(),
            _ => Tensor::cat(x, 1),
        };
        layer(u).forward(&h, Some(temb))
    })
}

/// The segment of one transformer: hidden states and the text embeddings.
fn transformer(
    run: &mut Run,
    x: Tensor,
    context: &Tensor,
    layer: impl Fn(&UNet2DConditionModel) -> &Transformer2D + 'static,
) -> Tensor {
    let inputs = vec![x, context.shallow_clone()];
    run1(run, inputs, move |u, x| layer(u).forward(&x[0], &x[1]))
}
