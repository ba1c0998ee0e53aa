//! Writing a LoRA in the two formats the ecosystem loads: diffusers' (`save_lora_weights`:
//! `unet.<module>.lora_A.weight` / `lora_B.weight`, `text_encoder.` keys, the PEFT configs in
//! the header's `lora_adapter_metadata`) and kohya's (`lora_unet_<module with '_'>.lora_down.
//! weight` / `.lora_up.weight` / `.alpha`, `lora_te_...`), which A1111 and ComfyUI read.
use super::keys::{flatten, Component};
use super::metadata::{self, AdapterConfig, METADATA_KEY};
use crate::weights::{write_safetensors, SaveOptions};
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::Path;
use tch::{Kind, Tensor};

/// One trained adapter to be written.
#[derive(Debug)]
pub struct NamedAdapter<'a> {
    pub component: Component,
    /// The module path in the model's own names.
    pub path: &'a str,
    pub down: &'a Tensor,
    pub up: &'a Tensor,
    pub alpha: f64,
}

/// diffusers' format with the PEFT configs in the header; floats stored as `kind`.
pub fn write_diffusers(
    file: &Path,
    adapters: &[NamedAdapter],
    configs: &[(Component, &AdapterConfig)],
    kind: Kind,
) -> Result<()> {
    let mut tensors = Vec::with_capacity(2 * adapters.len());
    for a in adapters {
        let stem = format!("{}.{}", a.component.prefix(), a.path);
        tensors.push((format!("{stem}.lora_A.weight"), a.down.shallow_clone()));
        tensors.push((format!("{stem}.lora_B.weight"), a.up.shallow_clone()));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let mut opts = SaveOptions::pt(Some(kind));
    opts.metadata
        .insert(METADATA_KEY.into(), metadata::to_string(configs));
    write_safetensors(file, &tensors, &opts)
}

/// kohya's format (diffusers module names, as sd-scripts writes SD 1.x LoRAs); `network_dim`
/// / `network_alpha` (and the conv ones) go to the `ss_` metadata A1111 shows.
pub fn write_kohya(
    file: &Path,
    adapters: &[NamedAdapter],
    network: &BTreeMap<String, String>,
    kind: Kind,
) -> Result<()> {
    let mut tensors = Vec::with_capacity(3 * adapters.len());
    for a in adapters {
        let head = match a.component {
            Component::Unet => "lora_unet",
            Component::TextEncoder => "lora_te",
        };
        let stem = format!("{head}_{}", flatten(a.path));
        tensors.push((format!("{stem}.lora_down.weight"), a.down.shallow_clone()));
        tensors.push((format!("{stem}.lora_up.weight"), a.up.shallow_clone()));
        tensors.push((format!("{stem}.alpha"), Tensor::from(a.alpha as f32)));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let mut opts = SaveOptions::pt(Some(kind));
    opts.metadata
        .insert("ss_network_module".into(), "networks.lora".into());
    opts.metadata
        .insert("ss_base_model_version".into(), "sd_v1".into());
    opts.metadata.extend(network.clone());
    write_safetensors(file, &tensors, &opts)
}
