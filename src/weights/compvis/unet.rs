//! UNet: LDM `UNetModel` names to diffusers `UNet2DConditionModel` names.
//!
//! LDM numbers the encoder and decoder steps flatly: `input_blocks.0` is the input conv, then
//! each level contributes `layers_per_block` (resnet, optional spatial transformer) steps and,
//! except the last level, one downsampling step. The decoder (`output_blocks`) has
//! `layers_per_block + 1` steps per level, deepest level first, each a resnet optionally
//! followed by a spatial transformer, the last step of every level but the top one ending
//! with an upsampler.
use super::{index, is_leaf, rename_all, UNetLayout};
use crate::weights::WeightSet;
use anyhow::{bail, Result};

/// Converts UNet tensors (names without the `model.diffusion_model.` prefix) to diffusers names.
pub fn convert_unet(ws: WeightSet, layout: &UNetLayout) -> Result<WeightSet> {
    convert(ws, layout, "")
}

pub(super) fn convert(ws: WeightSet, layout: &UNetLayout, shown_prefix: &str) -> Result<WeightSet> {
    if layout.levels == 0 || layout.layers_per_block == 0 {
        bail!("unet: invalid layout {layout:?} (levels and layers_per_block must be at least 1)");
    }
    rename_all(ws, "unet", shown_prefix, |name| map_name(name, layout))
}

/// The diffusers name of one LDM UNet tensor, or `None` if it has none.
fn map_name(name: &str, layout: &UNetLayout) -> Option<String> {
    let parts: Vec<&str> = name.split('.').collect();
    let steps = layout.layers_per_block + 1;
    let last_level = layout.levels - 1;
    match parts.as_slice() {
        ["time_embed", "0", leaf] if is_leaf(leaf) => {
            Some(format!("time_embedding.linear_1.{leaf}"))
        }
        ["time_embed", "2", leaf] if is_leaf(leaf) => {
            Some(format!("time_embedding.linear_2.{leaf}"))
        }
        ["input_blocks", "0", "0", leaf] if is_leaf(leaf) => Some(format!("conv_in.{leaf}")),
        ["out", "0", leaf] if is_leaf(leaf) => Some(format!("conv_norm_out.{leaf}")),
        ["out", "2", leaf] if is_leaf(leaf) => Some(format!("conv_out.{leaf}")),
        ["input_blocks", i, rest @ ..] => {
            let i = index(i)?.checked_sub(1)?;
            let (level, j) = (i / steps, i % steps);
            if level > last_level {
                return None;
            }
            let block = format!("down_blocks.{level}");
            match rest {
                ["0", "op", leaf]
                    if j == layout.layers_per_block && level < last_level && is_leaf(leaf) =>
                {
                    Some(format!("{block}.downsamplers.0.conv.{leaf}"))
                }
                ["0", inner @ ..] if j < layout.layers_per_block => {
                    Some(format!("{block}.resnets.{j}.{}", resnet(inner)?))
                }
                ["1", inner @ ..] if j < layout.layers_per_block => {
                    Some(format!("{block}.attentions.{j}.{}", transformer(inner)?))
                }
                _ => None,
            }
        }
        ["middle_block", "0", inner @ ..] => {
            Some(format!("mid_block.resnets.0.{}", resnet(inner)?))
        }
        ["middle_block", "1", inner @ ..] => {
            Some(format!("mid_block.attentions.0.{}", transformer(inner)?))
        }
        ["middle_block", "2", inner @ ..] => {
            Some(format!("mid_block.resnets.1.{}", resnet(inner)?))
        }
        ["output_blocks", i, rest @ ..] => {
            let i = index(i)?;
            let (level, j) = (i / steps, i % steps);
            if level > last_level {
                return None;
            }
            let block = format!("up_blocks.{level}");
            // Only the last step of a level other than the top one upsamples; its conv sits
            // right after the resnet (`.1`) or after the resnet and transformer (`.2`).
            let upsamples = j == layout.layers_per_block && level < last_level;
            match rest {
                ["1" | "2", "conv", leaf] if upsamples && is_leaf(leaf) => {
                    Some(format!("{block}.upsamplers.0.conv.{leaf}"))
                }
                ["0", inner @ ..] => Some(format!("{block}.resnets.{j}.{}", resnet(inner)?)),
                ["1", inner @ ..] => {
                    Some(format!("{block}.attentions.{j}.{}", transformer(inner)?))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// Names inside an LDM `ResBlock`, as in diffusers' `ResnetBlock2D`.
fn resnet(inner: &[&str]) -> Option<String> {
    let (layer, leaf) = match inner {
        ["in_layers", "0", leaf] => ("norm1", leaf),
        ["in_layers", "2", leaf] => ("conv1", leaf),
        ["emb_layers", "1", leaf] => ("time_emb_proj", leaf),
        ["out_layers", "0", leaf] => ("norm2", leaf),
        ["out_layers", "3", leaf] => ("conv2", leaf),
        ["skip_connection", leaf] => ("conv_shortcut", leaf),
        _ => return None,
    };
    is_leaf(leaf).then(|| format!("{layer}.{leaf}"))
}

/// Names inside an LDM `SpatialTransformer`: already those of diffusers' `Transformer2DModel`,
/// so they are only checked against the known set.
fn transformer(inner: &[&str]) -> Option<String> {
    let known = match inner {
        ["norm" | "proj_in" | "proj_out", leaf] => is_leaf(leaf),
        ["transformer_blocks", n, block @ ..] => {
            index(n).is_some()
                && match block {
                    ["norm1" | "norm2" | "norm3", leaf] => is_leaf(leaf),
                    ["attn1" | "attn2", "to_q" | "to_k" | "to_v", leaf] => is_leaf(leaf),
                    ["attn1" | "attn2", "to_out", "0", leaf] => is_leaf(leaf),
                    ["ff", "net", "0", "proj", leaf] => is_leaf(leaf),
                    ["ff", "net", "2", leaf] => is_leaf(leaf),
                    _ => false,
                }
        }
        _ => false,
    };
    known.then(|| inner.join("."))
}
