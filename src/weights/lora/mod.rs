//! LoRA files: reading anyone's (diffusers / PEFT with or without `lora_adapter_metadata`, the
//! older diffusers keys, kohya's keys with diffusers or LDM module names, LoCon convolutions)
//! and writing studioize's own in diffusers' and kohya's formats ([`write`]).
//!
//! A file is read into [`LoraFile`]: per module its down and up matrices and its scale
//! (`alpha / rank`: alpha from the metadata's `lora_alpha` / `alpha_pattern`, kohya's `.alpha`
//! tensor, or the rank itself when the file has neither, as diffusers does). Module names stay as
//! the file has them; `pipelines::lora` resolves them against a model's layers.
mod keys;
mod metadata;
pub mod write;

pub use keys::{flatten, parse, Component, KeyFormat, ModuleName, ParsedKey, Part};
pub use metadata::{AdapterConfig, METADATA_KEY};

use super::files::{read_safetensors, read_safetensors_metadata};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// The file name diffusers' `save_lora_weights` writes (and `load_lora_weights` looks for in a
/// folder).
pub const DIFFUSERS_FILE: &str = "pytorch_lora_weights.safetensors";
/// The kohya-format file studioize writes beside it.
pub const KOHYA_FILE: &str = "lora_kohya.safetensors";

/// One module's adapter as a file holds it.
#[derive(Debug)]
pub struct ModuleLora {
    pub component: Component,
    pub module: ModuleName,
    /// `[rank, in]` or `[rank, in, kh, kw]`, fp32.
    pub down: Tensor,
    /// `[out, rank]` or `[out, rank, 1, 1]`, fp32.
    pub up: Tensor,
    /// `alpha / rank` (or `alpha / sqrt(rank)` for rsLoRA), before the user's weight.
    pub scale: f64,
}

impl ModuleLora {
    pub fn rank(&self) -> i64 {
        self.down.size()[0]
    }

    /// The module's keys in the file without the tensor suffix (`lora_unet_..._to_q`,
    /// `unet.down_blocks....to_q`), for messages.
    pub fn key_stem(&self) -> String {
        match (&self.module, self.component) {
            (ModuleName::Flat(f), Component::Unet) => format!("lora_unet_{f}"),
            (ModuleName::Flat(f), Component::TextEncoder) => format!("lora_te_{f}"),
            (ModuleName::Path(p), c) => format!("{}.{p}", c.prefix()),
        }
    }
}

/// A LoRA file read whole.
#[derive(Debug)]
pub struct LoraFile {
    pub path: PathBuf,
    pub format: KeyFormat,
    /// Sorted by component and module name.
    pub modules: Vec<ModuleLora>,
}

impl LoraFile {
    /// Reads `path`: a LoRA `.safetensors` file, or a folder holding diffusers'
    /// `pytorch_lora_weights.safetensors`.
    pub fn read(path: &Path) -> Result<Self> {
        let file = if path.is_dir() {
            let f = path.join(DIFFUSERS_FILE);
            if !f.is_file() {
                bail!("{}: a folder without {DIFFUSERS_FILE}", path.display());
            }
            f
        } else {
            path.to_path_buf()
        };
        let shown = file.display().to_string();
        let configs = metadata::read(&read_safetensors_metadata(&file)?)
            .with_context(|| format!("{shown}: unreadable {METADATA_KEY}"))?;
        let mut parts: BTreeMap<(Component, ModuleName), [Option<Tensor>; 3]> = BTreeMap::new();
        let mut format = None;
        for (key, tensor) in read_safetensors(&file)? {
            if key == "__metadata__" {
                continue;
            }
            let k = parse(&key).with_context(|| shown.clone())?;
            match format {
                None => format = Some(k.format),
                Some(f) if (f == KeyFormat::Kohya) != (k.format == KeyFormat::Kohya) => {
                    bail!("{shown}: key '{key}' mixes kohya keys with diffusers keys")
                }
                Some(_) => {}
            }
            let slot = match k.part {
                Part::Down => 0,
                Part::Up => 1,
                Part::Alpha => 2,
            };
            let entry = parts.entry((k.component, k.module)).or_default();
            if entry[slot].replace(tensor).is_some() {
                bail!("{shown}: key '{key}' appears twice under different spellings");
            }
        }
        let Some(format) = format else {
            bail!("{shown}: no LoRA tensors in the file");
        };
        let mut modules = Vec::with_capacity(parts.len());
        for ((component, module), [down, up, alpha]) in parts {
            let name = format!("{} module '{}'", component.prefix(), module.as_str());
            let (Some(down), Some(up)) = (down, up) else {
                bail!("{shown}: {name} lacks its down or up matrix");
            };
            let rank = down.size().first().copied().unwrap_or(0);
            if rank == 0 || up.size().get(1) != Some(&rank) || down.dim() != up.dim() {
                bail!(
                    "{shown}: {name}: down {:?} and up {:?} are not a rank-r pair",
                    down.size(),
                    up.size()
                );
            }
            let alpha = match alpha {
                Some(a) => Some(
                    a.to_kind(Kind::Double)
                        .f_double_value(&[])
                        .with_context(|| format!("{shown}: {name}: alpha is not a scalar"))?,
                ),
                None => configs.get(&component).map(|c| c.alpha_of(module.as_str())),
            };
            let rslora = configs.get(&component).is_some_and(|c| c.use_rslora);
            let rank_f = rank as f64;
            let alpha = alpha.unwrap_or(rank_f);
            let scale = if rslora {
                alpha / rank_f.sqrt()
            } else {
                alpha / rank_f
            };
            modules.push(ModuleLora {
                component,
                module,
                down: down.to_kind(Kind::Float),
                up: up.to_kind(Kind::Float),
                scale,
            });
        }
        Ok(Self {
            path: file,
            format,
            modules,
        })
    }
}
