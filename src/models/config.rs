//! Reading `config.json` files into typed configs.
use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use std::path::Path;

/// Reads and parses a JSON config, naming the file in every error.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: invalid config ({e})", path.display()))
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
