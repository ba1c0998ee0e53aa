//! UNet: LDM `UNetModel` names and diffusers `UNet2DConditionModel` names, both ways.
//!
//! LDM numbers the encoder and decoder steps flatly: `input_blocks.0` is the input conv, then
//! each level contributes `layers_per_block` (resnet, optional spatial transformer) steps and,
//! except the last level, one downsampling step. The decoder (`output_blocks`) has
//! `layers_per_block + 1` steps per level, deepest level first, each a resnet optionally
//! followed by a spatial transformer, the last step of every level but the top one ending
//! with an upsampler (`.1.conv` after a lone resnet, `.2.conv` after resnet + transformer).
use super::rules::{Inner, Rule, Rules};
use super::{rename_all, UNetLayout};
use crate::weights::WeightSet;
use anyhow::{bail, Result};

/// The layers of an LDM `ResBlock` and of diffusers' `ResnetBlock2D`.
const RESNET: &[(&str, &str)] = &[
    ("in_layers.0", "norm1"),
    ("in_layers.2", "conv1"),
    ("emb_layers.1", "time_emb_proj"),
    ("out_layers.0", "norm2"),
    ("out_layers.3", "conv2"),
    ("skip_connection", "conv_shortcut"),
];

/// Converts UNet tensors (names without the `model.diffusion_model.` prefix) to diffusers names.
pub fn convert_unet(ws: WeightSet, layout: &UNetLayout) -> Result<WeightSet> {
    convert(ws, layout, "")
}

pub(super) fn convert(ws: WeightSet, layout: &UNetLayout, shown_prefix: &str) -> Result<WeightSet> {
    let rules = rules(layout, None)?;
    rename_all(ws, "unet", shown_prefix, |name| rules.to_diffusers(name))
}

/// The name rules of a UNet of this geometry.
///
/// `up_attention[l]` says whether diffusers' up level `l` has attentions, which decides where
/// LDM puts its upsampler conv (`.2.conv` after a transformer, else `.1.conv`). For loading it is
/// `None` and both places are accepted; an export must name one.
pub(super) fn rules(layout: &UNetLayout, up_attention: Option<&[bool]>) -> Result<Rules> {
    let (levels, lpb) = (layout.levels, layout.layers_per_block);
    if levels == 0 || lpb == 0 {
        bail!("unet: invalid layout {layout:?} (levels and layers_per_block must be at least 1)");
    }
    let steps = lpb + 1;
    let mut r = vec![
        Rule::new("time_embed.0.", "time_embedding.linear_1.", Inner::Leaf),
        Rule::new("time_embed.2.", "time_embedding.linear_2.", Inner::Leaf),
        Rule::new("input_blocks.0.0.", "conv_in.", Inner::Leaf),
        Rule::new("out.0.", "conv_norm_out.", Inner::Leaf),
        Rule::new("out.2.", "conv_out.", Inner::Leaf),
        Rule::new(
            "middle_block.0.",
            "mid_block.resnets.0.",
            Inner::Layers(RESNET),
        ),
        Rule::new(
            "middle_block.1.",
            "mid_block.attentions.0.",
            Inner::Transformer,
        ),
        Rule::new(
            "middle_block.2.",
            "mid_block.resnets.1.",
            Inner::Layers(RESNET),
        ),
    ];
    for l in 0..levels {
        for j in 0..lpb {
            let i = 1 + l * steps + j;
            let down = format!("down_blocks.{l}");
            r.push(Rule::new(
                format!("input_blocks.{i}.0."),
                format!("{down}.resnets.{j}."),
                Inner::Layers(RESNET),
            ));
            r.push(Rule::new(
                format!("input_blocks.{i}.1."),
                format!("{down}.attentions.{j}."),
                Inner::Transformer,
            ));
        }
        if l + 1 < levels {
            r.push(Rule::new(
                format!("input_blocks.{}.0.op.", 1 + l * steps + lpb),
                format!("down_blocks.{l}.downsamplers.0.conv."),
                Inner::Leaf,
            ));
        }
        for j in 0..steps {
            let i = l * steps + j;
            let up = format!("up_blocks.{l}");
            r.push(Rule::new(
                format!("output_blocks.{i}.0."),
                format!("{up}.resnets.{j}."),
                Inner::Layers(RESNET),
            ));
            r.push(Rule::new(
                format!("output_blocks.{i}.1."),
                format!("{up}.attentions.{j}."),
                Inner::Transformer,
            ));
        }
        if l + 1 < levels {
            let i = l * steps + lpb;
            let places: &[usize] = match up_attention.map(|a| a.get(l).copied().unwrap_or(false)) {
                None => &[1, 2],
                Some(false) => &[1],
                Some(true) => &[2],
            };
            for p in places {
                r.push(Rule::new(
                    format!("output_blocks.{i}.{p}.conv."),
                    format!("up_blocks.{l}.upsamplers.0.conv."),
                    Inner::Leaf,
                ));
            }
        }
    }
    Ok(Rules(r))
}

/// The LDM names (without `model.diffusion_model.`) of diffusers UNet module paths (`down_blocks.
/// 0.attentions.0.transformer_blocks.0.attn1.to_q` -> `input_blocks.1.1.transformer_blocks.0.
/// attn1.to_q`), for LoRA files keyed by LDM names; `up_attention[l]` as in [`rules`]. Paths no
/// rule covers are left out.
pub fn ldm_module_names<'a>(
    layout: &UNetLayout,
    up_attention: &[bool],
    paths: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<(String, String)>> {
    let rules = rules(layout, Some(up_attention))?;
    Ok(paths
        .into_iter()
        .filter_map(|p| {
            let ldm = rules.to_ldm(&format!("{p}.weight"))?;
            Some((p.to_string(), ldm.strip_suffix(".weight")?.to_string()))
        })
        .collect())
}
