//! VAE: LDM `AutoencoderKL` names and diffusers `AutoencoderKL` names, both ways.
//!
//! The encoder levels keep their order; the decoder levels are numbered from the top
//! resolution in LDM (`decoder.up.0` has no upsampler) but from the bottom in diffusers, so
//! they are reversed. The mid-block attention stores its projections as 1x1 convolutions in
//! LDM and as linear layers in diffusers, so those weights are reshaped (see [`ldm_shape`] for
//! the export direction).
use super::rules::{Inner, Rule, Rules};
use super::{rename_all, VaeLayout};
use crate::weights::WeightSet;
use anyhow::{bail, Result};

/// Converts VAE tensors (names without the `first_stage_model.` prefix) to diffusers names.
pub fn convert_vae(ws: WeightSet, layout: &VaeLayout) -> Result<WeightSet> {
    convert(ws, layout, "")
}

pub(super) fn convert(ws: WeightSet, layout: &VaeLayout, shown_prefix: &str) -> Result<WeightSet> {
    let rules = rules(layout)?;
    let mut out = rename_all(ws, "vae", shown_prefix, |name| rules.to_diffusers(name))?;
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

/// The layers of an LDM VAE `ResnetBlock` and of diffusers' `ResnetBlock2D`.
const RESNET: &[(&str, &str)] = &[
    ("norm1", "norm1"),
    ("conv1", "conv1"),
    ("norm2", "norm2"),
    ("conv2", "conv2"),
    ("nin_shortcut", "conv_shortcut"),
];

/// The layers of the mid-block attention: LDM `AttnBlock` and diffusers' `Attention`, then the
/// names of diffusers' older `AttentionBlock` (`query`, ..., `proj_attn`), accepted on export.
const ATTENTION: &[(&str, &str)] = &[
    ("norm", "group_norm"),
    ("q", "to_q"),
    ("k", "to_k"),
    ("v", "to_v"),
    ("proj_out", "to_out.0"),
    ("q", "query"),
    ("k", "key"),
    ("v", "value"),
    ("proj_out", "proj_attn"),
];

/// The name rules of a VAE of this geometry.
pub(super) fn rules(layout: &VaeLayout) -> Result<Rules> {
    let (levels, lpb) = (layout.levels, layout.layers_per_block);
    if levels == 0 || lpb == 0 {
        bail!("vae: invalid layout {layout:?} (levels and layers_per_block must be at least 1)");
    }
    let mut r = vec![
        Rule::new("quant_conv.", "quant_conv.", Inner::Leaf),
        Rule::new("post_quant_conv.", "post_quant_conv.", Inner::Leaf),
    ];
    for side in ["encoder", "decoder"] {
        for (ldm, diffusers, inner) in [
            ("conv_in", "conv_in", Inner::Leaf),
            ("conv_out", "conv_out", Inner::Leaf),
            ("norm_out", "conv_norm_out", Inner::Leaf),
            ("mid.block_1", "mid_block.resnets.0", Inner::Layers(RESNET)),
            ("mid.block_2", "mid_block.resnets.1", Inner::Layers(RESNET)),
            (
                "mid.attn_1",
                "mid_block.attentions.0",
                Inner::Layers(ATTENTION),
            ),
        ] {
            r.push(Rule::new(
                format!("{side}.{ldm}."),
                format!("{side}.{diffusers}."),
                inner,
            ));
        }
    }
    for l in 0..levels {
        for j in 0..lpb {
            r.push(Rule::new(
                format!("encoder.down.{l}.block.{j}."),
                format!("encoder.down_blocks.{l}.resnets.{j}."),
                Inner::Layers(RESNET),
            ));
        }
        if l + 1 < levels {
            r.push(Rule::new(
                format!("encoder.down.{l}.downsample.conv."),
                format!("encoder.down_blocks.{l}.downsamplers.0.conv."),
                Inner::Leaf,
            ));
        }
        // The decoder levels are numbered from the bottom in diffusers.
        let up = levels - 1 - l;
        for j in 0..=lpb {
            r.push(Rule::new(
                format!("decoder.up.{l}.block.{j}."),
                format!("decoder.up_blocks.{up}.resnets.{j}."),
                Inner::Layers(RESNET),
            ));
        }
        if l >= 1 {
            r.push(Rule::new(
                format!("decoder.up.{l}.upsample.conv."),
                format!("decoder.up_blocks.{up}.upsamplers.0.conv."),
                Inner::Leaf,
            ));
        }
    }
    Ok(Rules(r))
}

/// True for an LDM mid-block attention projection weight (`encoder.mid.attn_1.q.weight`, ...),
/// a 1x1 convolution `[C, C, 1, 1]` in LDM and a linear `[C, C]` in diffusers.
pub(super) fn is_ldm_attention_projection(name: &str) -> bool {
    ["encoder.mid.attn_1.", "decoder.mid.attn_1."]
        .iter()
        .any(|p| {
            name.strip_prefix(p).is_some_and(|rest| {
                matches!(
                    rest,
                    "q.weight" | "k.weight" | "v.weight" | "proj_out.weight"
                )
            })
        })
}

/// The LDM shape of a VAE tensor of diffusers shape `shape`: attention projections become 1x1
/// convolutions (a `[C, C, 1, 1]` one stays as it is); anything else keeps its shape. `None` for
/// an attention projection that is neither `[C, C]` nor `[C, C, 1, 1]`.
pub(super) fn ldm_shape(ldm_name: &str, shape: &[i64]) -> Option<Vec<i64>> {
    if !is_ldm_attention_projection(ldm_name) {
        return Some(shape.to_vec());
    }
    match shape {
        [o, i] | [o, i, 1, 1] => Some(vec![*o, *i, 1, 1]),
        _ => None,
    }
}
