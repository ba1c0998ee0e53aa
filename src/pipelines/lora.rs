//! Putting LoRA files on a loaded model (`--lora PATH[:SCALE]`, repeatable): each module a
//! file names is resolved to one adaptable layer of the UNet or the text encoder (by path; a
//! kohya name by the flattened diffusers path or the flattened LDM path), shapes are checked,
//! and the adapter is attached with its file's scale times the user's. Every module must land:
//! a key for a layer the model does not have is an error naming it, never skipped.
use super::StableDiffusion;
use crate::models::lora::{AdaptableLayers, Adapter};
use crate::models::unet::UNetConfig;
use crate::weights::compvis::{ldm_module_names, UNetLayout};
use crate::weights::lora::{flatten, Component, KeyFormat, LoraFile, ModuleName};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;

/// `PATH[:SCALE]` as the command line gives it (scale 1 when absent).
#[derive(Debug, Clone, PartialEq)]
pub struct LoraSpec {
    pub path: PathBuf,
    pub scale: f64,
}

impl FromStr for LoraSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some((p, scale)) = s.rsplit_once(':') {
            if let Ok(v) = scale.parse::<f64>() {
                if !v.is_finite() {
                    return Err(format!("'{s}': the scale {scale} is not a finite number"));
                }
                return Ok(Self {
                    path: PathBuf::from(p),
                    scale: v,
                });
            }
        }
        if s.is_empty() {
            return Err("an empty LoRA path".into());
        }
        Ok(Self {
            path: PathBuf::from(s),
            scale: 1.0,
        })
    }
}

impl std::fmt::Display for LoraSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.scale)
    }
}

/// What one applied file did.
#[derive(Debug, Clone)]
pub struct AppliedLora {
    pub spec: LoraSpec,
    pub file: PathBuf,
    pub format: KeyFormat,
    pub unet_modules: usize,
    pub text_encoder_modules: usize,
}

/// The text encoder's module paths begin with this; PEFT under transformers 5 names them
/// without it (`encoder.layers.0.self_attn.q_proj`), so both spellings resolve.
const TEXT_MODEL: &str = "text_model.";

/// kohya's flat names of a model's layers, both spellings, to the layer paths.
struct FlatIndex {
    unet: HashMap<String, String>,
    text_encoder: HashMap<String, String>,
}

impl FlatIndex {
    fn new(sd: &StableDiffusion) -> Result<Self> {
        let layers = sd.unet.lora_layers();
        let mut unet: HashMap<String, String> = layers
            .iter()
            .map(|(p, _)| (flatten(p), p.to_string()))
            .collect();
        let cfg = sd.unet.config();
        for (path, ldm) in ldm_module_names(
            &unet_layout(cfg)?,
            &up_attention(cfg),
            layers.iter().map(|(p, _)| p),
        )? {
            unet.entry(flatten(&ldm)).or_insert(path);
        }
        let text_encoder = sd
            .text_encoder
            .lora_layers()
            .iter()
            .map(|(p, _)| (flatten(p), p.to_string()))
            .collect();
        Ok(Self { unet, text_encoder })
    }
}

fn unet_layout(cfg: &UNetConfig) -> Result<UNetLayout> {
    Ok(UNetLayout {
        levels: cfg.block_out_channels.len(),
        layers_per_block: cfg.layers_per_block_uniform()?,
    })
}

/// Whether each up level has attentions (where LDM puts its upsampler).
fn up_attention(cfg: &UNetConfig) -> Vec<bool> {
    cfg.up_block_types
        .iter()
        .map(|t| t == "CrossAttnUpBlock2D")
        .collect()
}

/// Reads each file and attaches its adapters to `sd`, in order; on an error no adapter of
/// that file stays attached (the earlier files' do).
pub fn apply(sd: &StableDiffusion, specs: &[LoraSpec]) -> Result<Vec<AppliedLora>> {
    if specs.is_empty() {
        return Ok(Vec::new());
    }
    let index = FlatIndex::new(sd)?;
    let mut applied = Vec::with_capacity(specs.len());
    for spec in specs {
        let file = LoraFile::read(&spec.path)?;
        let shown = file.path.display().to_string();
        let mut plan = Vec::with_capacity(file.modules.len());
        for m in &file.modules {
            let (layers, flat): (&AdaptableLayers, _) = match m.component {
                Component::Unet => (sd.unet.lora_layers(), &index.unet),
                Component::TextEncoder => (sd.text_encoder.lora_layers(), &index.text_encoder),
            };
            let path = match &m.module {
                ModuleName::Path(p) => [p.clone(), format!("{TEXT_MODEL}{p}")]
                    .into_iter()
                    .find(|p| layers.get(p).is_some()),
                ModuleName::Flat(f) => flat.get(f).cloned(),
            };
            let Some(path) = path else {
                bail!(
                    "{shown}: key '{}' maps to no layer of this model (a LoRA for another architecture?)",
                    m.key_stem()
                );
            };
            let layer = layers.get(&path).expect("resolved paths exist");
            let (down, up) = layer.shape.adapter_shapes(m.rank());
            if m.down.size() != down || m.up.size() != up {
                bail!(
                    "{shown}: key '{}' has down {:?} / up {:?}, but the layer needs {down:?} / {up:?} (a LoRA for another architecture or model size, e.g. SDXL?)",
                    m.key_stem(),
                    m.down.size(),
                    m.up.size()
                );
            }
            plan.push((m, path, layer.weight.kind(), layer.weight.device()));
        }
        let (mut n_unet, mut n_text) = (0, 0);
        for (m, path, kind, device) in plan {
            let adapter = Adapter {
                down: m.down.to_device(device).to_kind(kind),
                up: m.up.to_device(device).to_kind(kind),
                scale: m.scale * spec.scale,
                dropout: 0.0,
            };
            let layers = match m.component {
                Component::Unet => {
                    n_unet += 1;
                    sd.unet.lora_layers()
                }
                Component::TextEncoder => {
                    n_text += 1;
                    sd.text_encoder.lora_layers()
                }
            };
            layers
                .attach(&path, adapter)
                .with_context(|| shown.clone())?;
        }
        applied.push(AppliedLora {
            spec: spec.clone(),
            file: file.path.clone(),
            format: file.format,
            unet_modules: n_unet,
            text_encoder_modules: n_text,
        });
    }
    Ok(applied)
}

/// Folds every attached adapter into the base weights (for `lora merge`).
pub fn merge(sd: &StableDiffusion) {
    sd.unet.lora_layers().merge();
    sd.text_encoder.lora_layers().merge();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_with_and_without_a_scale() {
        let s: LoraSpec = "a/b.safetensors:0.5".parse().unwrap();
        assert_eq!((s.path, s.scale), (PathBuf::from("a/b.safetensors"), 0.5));
        let s: LoraSpec = "dir/lora".parse().unwrap();
        assert_eq!((s.path, s.scale), (PathBuf::from("dir/lora"), 1.0));
        let s: LoraSpec = "c:/x.safetensors".parse().unwrap();
        assert_eq!(s.path, PathBuf::from("c:/x.safetensors"));
        assert!("x:inf".parse::<LoraSpec>().is_err());
        assert!("".parse::<LoraSpec>().is_err());
    }
}
