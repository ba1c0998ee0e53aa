//! VAE: LDM `AutoencoderKL` names to diffusers `AutoencoderKL` names.
//!
//! The encoder levels keep their order; the decoder levels are numbered from the top
//! resolution in LDM (`decoder.up.0` has no upsampler) but from the bottom in diffusers, so
//! they are reversed. The mid-block attention stores its projections as 1x1 convolutions in
//! LDM and as linear layers in diffusers, so those weights are reshaped.
use super::{index, is_leaf, rename_all, VaeLayout};
use crate::weights::WeightSet;
use anyhow::{bail, Result};

/// Converts VAE tensors (names without the `first_stage_model.` prefix) to diffusers names.
pub fn convert_vae(ws: WeightSet, layout: &VaeLayout) -> Result<WeightSet> {
    convert(ws, layout, "")
}

pub(super) fn convert(ws: WeightSet, layout: &VaeLayout, shown_prefix: &str) -> Result<WeightSet> {
    if layout.levels == 0 || layout.layers_per_block == 0 {
        bail!("vae: invalid layout {layout:?} (levels and layers_per_block must be at least 1)");
    }
    let mut out = rename_all(ws, "vae", shown_prefix, |name| map_name(name, layout))?;
    let names: Vec<String> = out
        .names()
        .filter(|n| is_attention_projection(n))
        .map(str::to_string)
        .collect();
    for name in names {
        let e = out.remove(&name).expect("name listed above");
        let size = e.tensor.size();
        if size.len() < 2 || size[2..].iter().any(|&d| d != 1) {
            bail!(
                "vae: tensor '{name}' in {} has shape {size:?}; expected a linear [C, C] or 1x1 \
                 convolution [C, C, 1, 1] attention projection",
                e.file.display()
            );
        }
        let tensor = if size.len() > 2 {
            e.tensor.reshape([size[0], size[1]])
        } else {
            e.tensor
        };
        out.insert(name, tensor, e.file);
    }
    Ok(out)
}

/// The mid-block attention projection weights (diffusers names), stored as 1x1 convs in LDM.
fn is_attention_projection(name: &str) -> bool {
    ["encoder.", "decoder."].iter().any(|side| {
        name.strip_prefix(side)
            .and_then(|rest| rest.strip_prefix("mid_block.attentions.0."))
            .is_some_and(|rest| {
                matches!(
                    rest,
                    "to_q.weight" | "to_k.weight" | "to_v.weight" | "to_out.0.weight"
                )
            })
    })
}

/// The diffusers name of one LDM VAE tensor, or `None` if it has none.
fn map_name(name: &str, layout: &VaeLayout) -> Option<String> {
    let parts: Vec<&str> = name.split('.').collect();
    let last_level = layout.levels - 1;
    match parts.as_slice() {
        ["quant_conv" | "post_quant_conv", leaf] if is_leaf(leaf) => Some(name.to_string()),
        [side @ ("encoder" | "decoder"), rest @ ..] => {
            let inner = match (*side, rest) {
                (_, ["conv_in" | "conv_out", leaf]) if is_leaf(leaf) => Some(rest.join(".")),
                (_, ["norm_out", leaf]) if is_leaf(leaf) => Some(format!("conv_norm_out.{leaf}")),
                (_, ["mid", "block_1", res @ ..]) => {
                    Some(format!("mid_block.resnets.0.{}", resnet(res)?))
                }
                (_, ["mid", "block_2", res @ ..]) => {
                    Some(format!("mid_block.resnets.1.{}", resnet(res)?))
                }
                (_, ["mid", "attn_1", layer, leaf]) if is_leaf(leaf) => {
                    let layer = match *layer {
                        "norm" => "group_norm",
                        "q" => "to_q",
                        "k" => "to_k",
                        "v" => "to_v",
                        "proj_out" => "to_out.0",
                        _ => return None,
                    };
                    Some(format!("mid_block.attentions.0.{layer}.{leaf}"))
                }
                ("encoder", ["down", l, "block", j, res @ ..]) => {
                    let (l, j) = (index(l)?, index(j)?);
                    (l <= last_level && j < layout.layers_per_block)
                        .then(|| resnet(res).map(|r| format!("down_blocks.{l}.resnets.{j}.{r}")))?
                }
                ("encoder", ["down", l, "downsample", "conv", leaf]) if is_leaf(leaf) => {
                    let l = index(l)?;
                    (l < last_level).then(|| format!("down_blocks.{l}.downsamplers.0.conv.{leaf}"))
                }
                ("decoder", ["up", l, "block", j, res @ ..]) => {
                    let (l, j) = (index(l)?, index(j)?);
                    (l <= last_level && j <= layout.layers_per_block).then(|| {
                        resnet(res).map(|r| format!("up_blocks.{}.resnets.{j}.{r}", last_level - l))
                    })?
                }
                ("decoder", ["up", l, "upsample", "conv", leaf]) if is_leaf(leaf) => {
                    let l = index(l)?;
                    (l >= 1 && l <= last_level)
                        .then(|| format!("up_blocks.{}.upsamplers.0.conv.{leaf}", last_level - l))
                }
                _ => None,
            }?;
            Some(format!("{side}.{inner}"))
        }
        _ => None,
    }
}

/// Names inside an LDM VAE `ResnetBlock`, as in diffusers' `ResnetBlock2D`.
fn resnet(inner: &[&str]) -> Option<String> {
    match inner {
        [layer @ ("norm1" | "conv1" | "norm2" | "conv2"), leaf] if is_leaf(leaf) => {
            Some(format!("{layer}.{leaf}"))
        }
        ["nin_shortcut", leaf] if is_leaf(leaf) => Some(format!("conv_shortcut.{leaf}")),
        _ => None,
    }
}
