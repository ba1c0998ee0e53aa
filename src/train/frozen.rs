//! `model.weights_dtype`: the frozen models of a run in half precision, to save memory (as
//! diffusers' training scripts cast the VAE, a frozen text encoder and a LoRA's base UNet to
//! `weight_dtype`). A model is frozen when none of its variables is a trained parameter; trained
//! tensors (a fully trained UNet, LoRA adapters, new token rows) stay fp32, and the LoRA layers
//! run their fp32 adapters in the base layer's dtype (`models/lora.rs`).
use super::config::{MixedPrecision, SaveDtype};
use crate::pipelines::StableDiffusion;
use anyhow::{bail, Result};
use std::collections::{HashMap, HashSet};
use tch::nn::VarStore;
use tch::{Kind, Tensor};

/// Casts the models of `sd` that hold none of the `trained` tensors to `dtype`. A frozen UNet
/// then runs in that dtype, so autocast (`mixed_precision`) must be off or the same dtype.
pub fn apply(
    sd: &mut StableDiffusion,
    dtype: SaveDtype,
    mixed_precision: MixedPrecision,
    trained: &HashMap<String, Tensor>,
) -> Result<()> {
    let kind = dtype.kind();
    if kind == Kind::Float {
        return Ok(());
    }
    let ptrs: HashSet<usize> = trained.values().map(|t| t.data_ptr() as usize).collect();
    let frozen = |vs: &VarStore| {
        vs.variables()
            .values()
            .all(|v| !ptrs.contains(&(v.data_ptr() as usize)))
    };
    let autocast = mixed_precision.kind();
    let unet_frozen = frozen(&sd.unet_vs);
    if unet_frozen && autocast.is_some_and(|k| k != kind) {
        bail!(
            "model.weights_dtype = {dtype:?}: the frozen UNet runs in it, so train.mixed_precision must be \"no\" or the same dtype (not {mixed_precision:?})"
        );
    }
    if frozen(&sd.vae_vs) {
        sd.vae_vs.set_kind(kind);
        sd.vae_kind = kind;
    }
    if frozen(&sd.text_encoder_vs) {
        sd.text_encoder_vs.set_kind(kind);
    }
    if unet_frozen {
        sd.unet_vs.set_kind(kind);
        sd.kind = kind;
    }
    Ok(())
}
