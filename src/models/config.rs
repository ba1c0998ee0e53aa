//! Reading `config.json` files into typed configs.
use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use std::path::Path;

/// Reads and parses a JSON config, naming the file in every error.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let mut de = serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        if key == "." {
            anyhow::anyhow!("{}: invalid config ({inner})", path.display())
        } else {
            anyhow::anyhow!("{}: {key}: invalid config ({inner})", path.display())
        }
    })
}

/// Reads a JSON config and checks it with `validate`, naming the file in every error.
pub fn read_validated<T: DeserializeOwned>(
    path: &Path,
    validate: impl Fn(&T) -> Result<()>,
) -> Result<T> {
    let cfg: T = read_json(path)?;
    validate(&cfg).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(cfg)
}

/// A config value that diffusers allows as either one integer or one per block
/// (e.g. `attention_head_dim`, `layers_per_block`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(i64),
    Many(Vec<i64>),
}

impl OneOrMany {
    /// The value for each of `n` blocks.
    pub fn per_block(&self, n: usize) -> Vec<i64> {
        match self {
            Self::One(v) => vec![*v; n],
            Self::Many(v) => v.clone(),
        }
    }
}

/// The level checks of a UNet or VAE config: `n` levels (`block_out_channels`), at least one,
/// and one down and one up block type per level.
pub fn check_levels(
    n: usize,
    down_block_types: &[String],
    up_block_types: &[String],
) -> Result<()> {
    if n == 0 {
        bail!("block_out_channels is empty");
    }
    if down_block_types.len() != n || up_block_types.len() != n {
        bail!(
            "down_block_types ({}) and up_block_types ({}) must have one entry per block_out_channels ({n})",
            down_block_types.len(),
            up_block_types.len()
        );
    }
    Ok(())
}

/// Refuses a block type (of the list under `key`) that is not one of `supported`.
pub fn check_block_types(key: &str, types: &[String], supported: &[&str]) -> Result<()> {
    match types.iter().find(|t| !supported.contains(&t.as_str())) {
        Some(t) => bail!("{key}: '{t}' is not supported ({})", supported.join(", ")),
        None => Ok(()),
    }
}
