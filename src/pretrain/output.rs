//! The output folder: everything is written into a hidden staging folder beside `--out`, which
//! is renamed to `--out` only when the whole model is written; a failed run leaves nothing.
use crate::fsutil::write_atomic;
use crate::weights::{write_safetensors, SaveOptions};
use anyhow::{anyhow, bail, Result};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// A staging folder that is removed unless [`Staging::finish`] renames it into place.
pub struct Staging {
    dir: PathBuf,
    target: PathBuf,
    done: bool,
}

impl Staging {
    /// Refuses an `out` that is a file or a non-empty folder, and creates the staging folder
    /// (so an unwritable parent fails here, before any training).
    pub fn new(out: &Path) -> Result<Self> {
        if out.as_os_str().is_empty() {
            bail!("--out: no output folder given");
        }
        if out.is_file() {
            bail!(
                "{}: exists and is a file (give a new folder)",
                out.display()
            );
        }
        if out.is_dir() {
            let mut entries = std::fs::read_dir(out)
                .map_err(|e| anyhow!("{}: cannot read ({e})", out.display()))?;
            if entries.next().is_some() {
                bail!(
                    "{}: exists and is not empty (give a new folder)",
                    out.display()
                );
            }
        }
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| anyhow!("{}: not a folder name", out.display()))?;
        let parent = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent)
            .map_err(|e| anyhow!("{}: cannot create folder ({e})", parent.display()))?;
        let dir = parent.join(format!(".{name}.pretrain-{}.tmp", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .map_err(|e| anyhow!("{}: cannot remove ({e})", dir.display()))?;
        }
        std::fs::create_dir(&dir)
            .map_err(|e| anyhow!("{}: cannot create folder ({e})", dir.display()))?;
        Ok(Self {
            dir,
            target: out.to_path_buf(),
            done: false,
        })
    }

    /// The staging folder (write the model here).
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Renames the staging folder to the output folder (replacing it only if it is empty).
    pub fn finish(mut self) -> Result<PathBuf> {
        if self.target.is_dir() {
            std::fs::remove_dir(&self.target)
                .map_err(|e| anyhow!("{}: cannot replace ({e})", self.target.display()))?;
        }
        std::fs::rename(&self.dir, &self.target).map_err(|e| {
            anyhow!(
                "{}: cannot rename {} into place ({e})",
                self.target.display(),
                self.dir.display()
            )
        })?;
        self.done = true;
        Ok(self.target.clone())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Writes a JSON value, pretty-printed, to `path` (atomically).
pub fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// Writes `tensors` sorted by name as fp32 safetensors with `{"format": "pt"}` metadata.
pub fn write_weights(path: &Path, tensors: Vec<(String, Tensor)>) -> Result<()> {
    let mut tensors = tensors;
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    write_safetensors(path, &tensors, &SaveOptions::pt(Some(Kind::Float)))
}
