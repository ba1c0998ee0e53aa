//! diffusers' `ResnetBlock2D` (time-embedding norm "default"): two norm-SiLU-conv stages, the
//! time embedding added between them, a 1x1 shortcut when the channel count changes.
use super::{conv1, conv3, group_norm};
use tch::nn::{self, Module};
use tch::Tensor;

#[derive(Debug)]
pub struct ResnetBlock2D {
    norm1: nn::GroupNorm,
    conv1: nn::Conv2D,
    time_emb_proj: Option<nn::Linear>,
    norm2: nn::GroupNorm,
    conv2: nn::Conv2D,
    conv_shortcut: Option<nn::Conv2D>,
    output_scale_factor: f64,
}

impl ResnetBlock2D {
    /// `temb_channels`: `Some(n)` for UNet blocks that take a time embedding.
    pub fn new(
        p: nn::Path,
        c_in: i64,
        c_out: i64,
        temb_channels: Option<i64>,
        groups: i64,
        eps: f64,
        output_scale_factor: f64,
    ) -> Self {
        Self {
            norm1: group_norm(&p / "norm1", groups, c_in, eps),
            conv1: conv3(&p / "conv1", c_in, c_out),
            time_emb_proj: temb_channels
                .map(|t| nn::linear(&p / "time_emb_proj", t, c_out, Default::default())),
            norm2: group_norm(&p / "norm2", groups, c_out, eps),
            conv2: conv3(&p / "conv2", c_out, c_out),
            conv_shortcut: (c_in != c_out).then(|| conv1(&p / "conv_shortcut", c_in, c_out)),
            output_scale_factor,
        }
    }

    pub fn forward(&self, x: &Tensor, temb: Option<&Tensor>) -> Tensor {
        let mut h = self.conv1.forward(&self.norm1.forward(x).silu());
        if let (Some(proj), Some(t)) = (&self.time_emb_proj, temb) {
            h += proj.forward(&t.silu()).unsqueeze(-1).unsqueeze(-1);
        }
        let h = self.conv2.forward(&self.norm2.forward(&h).silu());
        let skip = match &self.conv_shortcut {
            Some(c) => c.forward(x),
            None => x.shallow_clone(),
        };
        let out = skip + h;
        if self.output_scale_factor == 1.0 {
            out
        } else {
            out / self.output_scale_factor
        }
    }
}
