//! The inverse of loading: diffusers / transformers tensors to one original single-file
//! checkpoint with CompVis/LDM names (`model.diffusion_model.*`, `first_stage_model.*`,
//! `cond_stage_model.transformer.text_model.*`), the layout A1111 and ComfyUI load and
//! diffusers' `from_single_file` converts.
//!
//! The names come from the same rule tables as loading ([`super::rules`]), run backwards, and
//! the mapping is as strict: a tensor without an LDM counterpart is an error naming it and its
//! file. The only tensors left out on purpose are the text encoder's `position_ids` buffers.
//! The VAE's mid-block attention projections become 1x1 convolutions `[C, C, 1, 1]`, as LDM's
//! `AttnBlock` (and so A1111 and ComfyUI) holds them.
//!
//! Writing streams: the header is computed from the tensors' shapes, then each tensor is read
//! from its memory-mapped source, converted to the export dtype and written before the next.
use super::lazy::{LazyFiles, TensorRef};
use super::{plan_renames, text, unet, vae, UNetLayout, VaeLayout};
use super::{TEXT_ENCODER_PREFIX, UNET_PREFIX, VAE_PREFIX};
use crate::weights::{write_stream, TensorSpec};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::io::Write;
use tch::Kind;

/// The three networks to export, each as (diffusers / transformers name, where its values are).
#[derive(Debug, Default)]
pub struct Components {
    pub unet: Vec<(String, TensorRef)>,
    pub vae: Vec<(String, TensorRef)>,
    pub text_encoder: Vec<(String, TensorRef)>,
}

/// One tensor of the exported file.
#[derive(Debug, Clone)]
pub struct ExportEntry {
    /// Its full CompVis/LDM name.
    pub name: String,
    /// Its shape in the file (the source's, but `[C, C, 1, 1]` for VAE attention projections).
    pub shape: Vec<i64>,
    pub source: TensorRef,
}

/// The tensors of the single file for these components, sorted by name. `unet` and `vae` are
/// the geometries of the networks (from their `config.json`).
pub fn plan_export(
    parts: &Components,
    unet: &UNetLayout,
    vae: &VaeLayout,
) -> Result<Vec<ExportEntry>> {
    for (component, list) in [
        ("unet", &parts.unet),
        ("vae", &parts.vae),
        ("text_encoder", &parts.text_encoder),
    ] {
        if list.is_empty() {
            bail!("{component}: no tensors to export");
        }
        let float = |k: Kind| matches!(k, Kind::Float | Kind::Half | Kind::BFloat16 | Kind::Double);
        if let Some((name, r)) = list.iter().find(|(_, r)| !float(r.kind)) {
            bail!(
                "{component}: tensor '{name}' in {} is {:?}, not floating point; only weights are \
                 exported",
                r.file.display(),
                r.kind
            );
        }
    }
    let up_attention: Vec<bool> = (0..unet.levels)
        .map(|l| {
            let prefix = format!("up_blocks.{l}.attentions.");
            parts.unet.iter().any(|(n, _)| n.starts_with(&prefix))
        })
        .collect();
    let unet_rules = unet::rules(unet, Some(&up_attention))?;
    let vae_rules = vae::rules(vae)?;
    let text: Vec<&(String, TensorRef)> = parts
        .text_encoder
        .iter()
        .filter(|(n, _)| !text::is_position_ids(n))
        .collect();

    let mut out = Vec::new();
    let unet_names = rename(&parts.unet.iter().collect::<Vec<_>>(), "unet", |n| {
        unet_rules.to_ldm(n)
    })?;
    for ((_, r), name) in parts.unet.iter().zip(unet_names) {
        out.push(entry(format!("{UNET_PREFIX}{name}"), r.shape.clone(), r));
    }
    let vae_names = rename(&parts.vae.iter().collect::<Vec<_>>(), "vae", |n| {
        vae_rules.to_ldm(n)
    })?;
    for ((diffusers, r), name) in parts.vae.iter().zip(vae_names) {
        let Some(shape) = vae::ldm_shape(&name, &r.shape) else {
            bail!(
                "vae: tensor '{diffusers}' in {} has shape {:?}; expected a linear [C, C] or 1x1 \
                 convolution [C, C, 1, 1] attention projection",
                r.file.display(),
                r.shape
            );
        };
        out.push(entry(format!("{VAE_PREFIX}{name}"), shape, r));
    }
    let text_names = rename(&text, "text_encoder", text::map_name)?;
    for ((_, r), name) in text.iter().zip(text_names) {
        out.push(entry(
            format!("{TEXT_ENCODER_PREFIX}{name}"),
            r.shape.clone(),
            r,
        ));
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn entry(name: String, shape: Vec<i64>, r: &TensorRef) -> ExportEntry {
    ExportEntry {
        name,
        shape,
        source: r.clone(),
    }
}

/// The LDM names (without the component prefix) of `items`, strictly.
fn rename(
    items: &[&(String, TensorRef)],
    component: &str,
    map: impl FnMut(&str) -> Option<String>,
) -> Result<Vec<String>> {
    let refs: Vec<(&str, &std::path::Path)> = items
        .iter()
        .map(|(n, r)| (n.as_str(), r.file.as_path()))
        .collect();
    plan_renames(&refs, component, "", "CompVis/LDM", map)
}

/// The number of bytes [`write_export`] writes for the tensor data of `entries` in `kind`.
pub fn export_data_bytes(entries: &[ExportEntry], kind: Kind) -> u64 {
    entries
        .iter()
        .map(|e| (e.source.numel() as u64) * kind.elt_size_in_bytes() as u64)
        .sum()
}

/// Writes `entries` as one safetensors file (`{"format": "pt"}` metadata) to `w`, every tensor
/// converted to `kind` (fp32, fp16 or bf16), one at a time; `progress` is told the bytes of each
/// tensor written. A tensor whose values are not finite, or do not fit in `kind` (fp16 tops out
/// at 65504), is an error naming it and its file.
pub fn write_export(
    w: &mut impl Write,
    entries: &[ExportEntry],
    kind: Kind,
    files: &LazyFiles,
    mut progress: impl FnMut(u64),
) -> Result<()> {
    let dtype_name = match kind {
        Kind::Float => "fp32",
        Kind::Half => "fp16",
        Kind::BFloat16 => "bf16",
        other => bail!("cannot export as {other:?}: expected fp32, fp16 or bf16"),
    };
    let mut specs = Vec::with_capacity(entries.len());
    for e in entries {
        if e.shape.iter().product::<i64>() != e.source.numel() {
            bail!(
                "tensor '{}' in {}: shape {:?} does not hold its {} values",
                e.source.name,
                e.source.file.display(),
                e.shape,
                e.source.numel()
            );
        }
        specs.push(TensorSpec {
            name: e.name.clone(),
            shape: e.shape.clone(),
            kind,
        });
    }
    let metadata = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    write_stream(
        w,
        &specs,
        &metadata,
        |i| {
            let (e, src) = (&entries[i], &entries[i].source);
            let orig = files.load(src)?;
            let t = orig.to_kind(kind);
            if !bool::try_from(t.isfinite().all())? {
                if !bool::try_from(orig.isfinite().all())? {
                    bail!(
                        "tensor '{}' in {} contains NaN or infinite values",
                        src.name,
                        src.file.display()
                    );
                }
                let max = f64::try_from(orig.abs().max().to_kind(Kind::Double))?;
                bail!(
                    "tensor '{}' in {} has values beyond the range of {dtype_name} (largest magnitude \
                     {max:e}); export as fp32 or bf16",
                    src.name,
                    src.file.display(),
                );
            }
            t.f_reshape(&e.shape)
                .with_context(|| format!("tensor '{}' in {}", src.name, src.file.display()))
        },
        &mut progress,
    )?;
    Ok(())
}
