//! Loading an original single-file Stable Diffusion 1.x checkpoint (CompVis / latent-diffusion
//! key names) by renaming its tensors to the diffusers / transformers layout.
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
mod text;
mod unet;
mod vae;

use super::WeightSet;
use anyhow::{bail, Result};

pub use text::convert_text_encoder;
pub use unet::convert_unet;
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

/// Renames every tensor of `ws` through `map`; a name for which `map` gives `None` has no
/// counterpart and is an error. `component` and `shown_prefix` (the prefix already removed
/// from the names, if any) only serve the messages.
fn rename_all(
    mut ws: WeightSet,
    component: &str,
    shown_prefix: &str,
    mut map: impl FnMut(&str) -> Option<String>,
) -> Result<WeightSet> {
    let names: Vec<String> = ws.names().map(str::to_string).collect();
    let mut out = WeightSet::new();
    let mut sources: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut problems = Problems::default();
    for name in names {
        let e = ws.remove(&name).expect("name listed above");
        match map(&name) {
            None => problems.push(format!(
                "{component}: tensor '{shown_prefix}{name}' in {} has no counterpart in the \
                 diffusers layout",
                e.file.display()
            )),
            Some(target) => {
                if let Some(prev) = sources.get(&target) {
                    problems.push(format!(
                        "{component}: tensors '{shown_prefix}{prev}' and '{shown_prefix}{name}' in \
                         {} both map to '{target}'",
                        e.file.display()
                    ));
                    continue;
                }
                sources.insert(target.clone(), name);
                out.insert(target, e.tensor, e.file);
            }
        }
    }
    problems.finish()?;
    Ok(out)
}

/// Parses a block index written in canonical decimal form (no sign, no leading zeros).
fn index(s: &str) -> Option<usize> {
    let n: usize = s.parse().ok()?;
    (n.to_string() == s).then_some(n)
}

/// True for the parameter leaves of conv, linear and norm layers.
fn is_leaf(s: &str) -> bool {
    s == "weight" || s == "bias"
}
