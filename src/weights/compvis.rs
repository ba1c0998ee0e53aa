//! Loading an original single-file Stable Diffusion 1.x checkpoint (CompVis / latent-diffusion
//! key names) by renaming its tensors to the diffusers / transformers layout, and writing one
//! from diffusers tensors ([`plan_export`], [`write_export`]) with the same rules run backwards.
//!
//! A CompVis checkpoint holds the three networks side by side under fixed prefixes:
//! `model.diffusion_model.*` (UNet), `first_stage_model.*` (VAE) and
//! `cond_stage_model.transformer.*` (CLIP text encoder), plus training leftovers (EMA copies,
//! noise-schedule buffers) that inference does not use.
//!
//! Conversion works on names and tensors only, so it does not depend on the model types. It is
//! strict: a tensor whose name has no counterpart in the diffusers layout is an error naming the
//! tensor and its file, never silently dropped. Only the non-model keys listed in
//! [`NON_MODEL_KEYS`] and `position_ids` buffers are dropped, deliberately.
//!
//! The geometry that the LDM block numbering hides (how many levels, how many resnets per level)
//! comes from the diffusers configs, via [`UNetLayout`] and [`VaeLayout`].
mod export;
mod lazy;
mod rules;
mod text;
mod unet;
mod vae;

use super::WeightSet;
use anyhow::{bail, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use export::{export_data_bytes, plan_export, write_export, Components, ExportEntry};
pub use lazy::{LazyFiles, TensorRef};
pub use text::convert_text_encoder;
pub use unet::{convert_unet, ldm_module_names};
pub use vae::convert_vae;

/// Prefix of the UNet tensors in a CompVis checkpoint.
pub const UNET_PREFIX: &str = "model.diffusion_model.";
/// Prefix of the VAE tensors in a CompVis checkpoint.
pub const VAE_PREFIX: &str = "first_stage_model.";
/// Prefix of the CLIP text encoder tensors in a CompVis checkpoint.
pub const TEXT_ENCODER_PREFIX: &str = "cond_stage_model.transformer.";

/// Top-level keys of a CompVis checkpoint that are not part of the three inference networks and
/// are dropped on purpose. A trailing `*` matches any continuation.
///
/// - `model_ema.*`: the EMA shadow copy of the UNet kept during training (with its flattened key
///   names), plus its `model_ema.decay` and `model_ema.num_updates` counters;
/// - the rest are the DDPM noise-schedule buffers of the training wrapper (`betas`,
///   `alphas_cumprod`, `alphas_cumprod_prev`, `sqrt_*`, `log_one_minus_alphas_cumprod`,
///   `posterior_*`); the diffusers scheduler recomputes them from its own config.
pub const NON_MODEL_KEYS: &[&str] = &[
    "model_ema.*",
    "betas",
    "alphas_cumprod*",
    "sqrt_*",
    "log_one_minus_alphas_cumprod",
    "posterior_*",
];

/// Geometry needed to map LDM UNet block indices to diffusers blocks: `levels` is the length of
/// `block_out_channels` and `layers_per_block` the value of the same name in `unet/config.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UNetLayout {
    pub levels: usize,
    pub layers_per_block: usize,
}

/// Geometry needed to map LDM VAE block indices to diffusers blocks: `levels` is the length of
/// `block_out_channels` and `layers_per_block` the value of the same name in `vae/config.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VaeLayout {
    pub levels: usize,
    pub layers_per_block: usize,
}

/// The three SD components of a single-file checkpoint, with diffusers / transformers names.
#[derive(Debug)]
pub struct CompVisParts {
    pub unet: WeightSet,
    pub vae: WeightSet,
    pub text_encoder: WeightSet,
}

/// True if the set looks like a CompVis SD checkpoint (has `model.diffusion_model.*` keys).
pub fn is_compvis(ws: &WeightSet) -> bool {
    ws.names().any(|n| n.starts_with(UNET_PREFIX))
}

/// True for a top-level key listed in [`NON_MODEL_KEYS`].
fn is_non_model_key(name: &str) -> bool {
    NON_MODEL_KEYS
        .iter()
        .any(|pat| match pat.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == *pat,
        })
}

/// Splits a CompVis checkpoint into its UNet, VAE and text encoder and converts each to the
/// diffusers names. Fails if the set is not a CompVis SD checkpoint, if a component is absent,
/// or if any tensor cannot be placed.
pub fn split_and_convert(
    mut ws: WeightSet,
    unet: &UNetLayout,
    vae: &VaeLayout,
) -> Result<CompVisParts> {
    if !is_compvis(&ws) {
        bail!(
            "{}: not a CompVis SD checkpoint (no '{UNET_PREFIX}*' tensors); expected a single-file \
             Stable Diffusion 1.x checkpoint with {UNET_PREFIX}*, {VAE_PREFIX}* and \
             {TEXT_ENCODER_PREFIX}* tensors",
            describe_files(&ws)
        );
    }
    let unet_ws = ws.split_prefix(UNET_PREFIX);
    let vae_ws = ws.split_prefix(VAE_PREFIX);
    let text_ws = ws.split_prefix(TEXT_ENCODER_PREFIX);
    let where_ = describe_files(&unet_ws);
    if vae_ws.is_empty() {
        bail!("{where_}: CompVis checkpoint has no VAE tensors ('{VAE_PREFIX}*')");
    }
    if text_ws.is_empty() {
        bail!(
            "{where_}: CompVis checkpoint has no text encoder tensors ('{TEXT_ENCODER_PREFIX}*')"
        );
    }
    let mut problems = Problems::default();
    for (name, e) in ws.iter() {
        if !is_non_model_key(name) {
            problems.push(format!(
                "tensor '{name}' in {} belongs to none of the CompVis SD components \
                 ({UNET_PREFIX}*, {VAE_PREFIX}*, {TEXT_ENCODER_PREFIX}*) and is not a known \
                 non-model key",
                e.file.display()
            ));
        }
    }
    problems.finish()?;
    Ok(CompVisParts {
        unet: unet::convert(unet_ws, unet, UNET_PREFIX)?,
        vae: vae::convert(vae_ws, vae, VAE_PREFIX)?,
        text_encoder: text::convert(text_ws, TEXT_ENCODER_PREFIX)?,
    })
}

/// [`split_and_convert`] on tensor headers only: the tensors of a CompVis checkpoint sorted into
/// the three components under their diffusers names, values unread, so that an export can
/// stream them. The same checks and errors; `position_ids` and [`NON_MODEL_KEYS`] are dropped.
pub fn split_refs(refs: Vec<TensorRef>, unet: &UNetLayout, vae: &VaeLayout) -> Result<Components> {
    let file = refs.first().map_or_else(
        || "an empty checkpoint".to_string(),
        |r| r.file.display().to_string(),
    );
    if !refs.iter().any(|r| r.name.starts_with(UNET_PREFIX)) {
        bail!(
            "{file}: not a CompVis SD checkpoint (no '{UNET_PREFIX}*' tensors); expected a \
             single-file Stable Diffusion 1.x checkpoint"
        );
    }
    let (mut u, mut v, mut t) = (Vec::new(), Vec::new(), Vec::new());
    let mut problems = Problems::default();
    for r in refs {
        if let Some(rest) = r.name.strip_prefix(UNET_PREFIX) {
            u.push((rest.to_string(), r));
        } else if let Some(rest) = r.name.strip_prefix(VAE_PREFIX) {
            v.push((rest.to_string(), r));
        } else if let Some(rest) = r.name.strip_prefix(TEXT_ENCODER_PREFIX) {
            if !text::is_position_ids(rest) {
                t.push((rest.to_string(), r));
            }
        } else if !is_non_model_key(&r.name) {
            problems.push(format!(
                "tensor '{}' in {file} belongs to none of the CompVis SD components \
                 ({UNET_PREFIX}*, {VAE_PREFIX}*, {TEXT_ENCODER_PREFIX}*) and is not a known \
                 non-model key",
                r.name
            ));
        }
    }
    problems.finish()?;
    if v.is_empty() {
        bail!("{file}: CompVis checkpoint has no VAE tensors ('{VAE_PREFIX}*')");
    }
    if t.is_empty() {
        bail!("{file}: CompVis checkpoint has no text encoder tensors ('{TEXT_ENCODER_PREFIX}*')");
    }
    let unet_rules = unet::rules(unet, None)?;
    let vae_rules = vae::rules(vae)?;
    Ok(Components {
        unet: rename_refs(u, "unet", UNET_PREFIX, |n| unet_rules.to_diffusers(n))?,
        vae: rename_refs(v, "vae", VAE_PREFIX, |n| vae_rules.to_diffusers(n))?,
        text_encoder: rename_refs(t, "text_encoder", TEXT_ENCODER_PREFIX, text::map_name)?,
    })
}

/// Renames (name, tensor) pairs through `map` (see [`plan_renames`]).
fn rename_refs(
    items: Vec<(String, TensorRef)>,
    component: &str,
    shown_prefix: &str,
    map: impl FnMut(&str) -> Option<String>,
) -> Result<Vec<(String, TensorRef)>> {
    let refs: Vec<(&str, &Path)> = items
        .iter()
        .map(|(n, r)| (n.as_str(), r.file.as_path()))
        .collect();
    let names = plan_renames(&refs, component, shown_prefix, "diffusers", map)?;
    Ok(names
        .into_iter()
        .zip(items)
        .map(|(n, (_, r))| (n, r))
        .collect())
}

/// Names the file(s) of a set for messages.
fn describe_files(ws: &WeightSet) -> String {
    let files = ws.files();
    match files.len() {
        0 => "an empty checkpoint".to_string(),
        1 => files[0].display().to_string(),
        n => format!("{} (+{} more file(s))", files[0].display(), n - 1),
    }
}

/// Collects errors so that one message reports the first and counts the rest.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, msg: String) {
        self.0.push(msg);
    }

    fn finish(self) -> Result<()> {
        match self.0.len() {
            0 => Ok(()),
            1 => bail!("{}", self.0[0]),
            n => bail!("{} (and {} more problem(s))", self.0[0], n - 1),
        }
    }
}

/// Renames every tensor of `ws` through `map` (see [`plan_renames`]).
fn rename_all(
    mut ws: WeightSet,
    component: &str,
    shown_prefix: &str,
    map: impl FnMut(&str) -> Option<String>,
) -> Result<WeightSet> {
    let items: Vec<(String, PathBuf)> = ws
        .iter()
        .map(|(n, e)| (n.to_string(), e.file.clone()))
        .collect();
    let refs: Vec<(&str, &Path)> = items
        .iter()
        .map(|(n, f)| (n.as_str(), f.as_path()))
        .collect();
    let targets = plan_renames(&refs, component, shown_prefix, "diffusers", map)?;
    let mut out = ws.sharing_maps();
    for ((name, _), target) in items.iter().zip(targets) {
        let e = ws.remove(name).expect("name listed above");
        out.insert(target, e.tensor, e.file);
    }
    Ok(out)
}

/// The new names of `items` (name and file) under `map`, in order. A name for which `map` gives
/// `None` has no counterpart in the `layout` named ("diffusers", "CompVis/LDM"), and two names
/// with one target are ambiguous: both are errors naming the tensors and file. `component` and
/// `shown_prefix` (the prefix already removed from the names, if any) only serve the messages.
fn plan_renames(
    items: &[(&str, &Path)],
    component: &str,
    shown_prefix: &str,
    layout: &str,
    mut map: impl FnMut(&str) -> Option<String>,
) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(items.len());
    let mut sources: HashMap<String, &str> = HashMap::new();
    let mut problems = Problems::default();
    for &(name, file) in items {
        match map(name) {
            None => problems.push(format!(
                "{component}: tensor '{shown_prefix}{name}' in {} has no counterpart in the \
                 {layout} layout",
                file.display()
            )),
            Some(target) => {
                if let Some(prev) = sources.get(&target) {
                    problems.push(format!(
                        "{component}: tensors '{shown_prefix}{prev}' and '{shown_prefix}{name}' in \
                         {} both map to '{target}'",
                        file.display()
                    ));
                    continue;
                }
                sources.insert(target.clone(), name);
                out.push(target);
            }
        }
    }
    problems.finish()?;
    Ok(out)
}
