//! Safetensors files read on demand: the headers (names, dtypes, shapes) are read when a file
//! is opened, a tensor's bytes only when it is loaded (a positioned read of just that tensor,
//! no memory map), so an export walks a whole model holding one tensor at a time.
use crate::weights::files::kind_of;
use anyhow::{anyhow, bail, Context, Result};
use safetensors::tensor::{Metadata, TensorInfo};
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// One tensor of an opened file, known by its header.
#[derive(Debug, Clone)]
pub struct TensorRef {
    pub file: PathBuf,
    /// Its name in the file.
    pub name: String,
    pub shape: Vec<i64>,
    pub kind: Kind,
}

impl TensorRef {
    /// Number of elements.
    pub fn numel(&self) -> i64 {
        self.shape.iter().product()
    }
}

struct LazyFile {
    file: File,
    /// Where the data section starts in the file.
    data_start: usize,
    tensors: HashMap<String, TensorInfo>,
}

/// The opened files, by path.
#[derive(Default)]
pub struct LazyFiles {
    files: HashMap<PathBuf, LazyFile>,
}

impl LazyFiles {
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens `path` (once; later calls reuse it) and lists its tensors, sorted by name.
    pub fn open(&mut self, path: &Path) -> Result<Vec<TensorRef>> {
        if !self.files.contains_key(path) {
            let file = open(path)?;
            self.files.insert(path.to_path_buf(), file);
        }
        let f = &self.files[path];
        let mut out = f
            .tensors
            .iter()
            .map(|(name, info)| {
                Ok(TensorRef {
                    file: path.to_path_buf(),
                    name: name.clone(),
                    shape: info.shape.iter().map(|&d| d as i64).collect(),
                    kind: kind_of(info.dtype).with_context(|| {
                        format!("{}: tensor '{name}' has unsupported dtype", path.display())
                    })?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Opens every file and lists all their tensors; a name in two files is an error.
    pub fn open_all(&mut self, paths: &[PathBuf]) -> Result<Vec<TensorRef>> {
        let mut out: Vec<TensorRef> = Vec::new();
        let mut seen: HashMap<String, PathBuf> = HashMap::new();
        for p in paths {
            for r in self.open(p)? {
                if let Some(prev) = seen.insert(r.name.clone(), p.clone()) {
                    bail!(
                        "tensor '{}' appears twice: in {} and in {}",
                        r.name,
                        prev.display(),
                        p.display()
                    );
                }
                out.push(r);
            }
        }
        Ok(out)
    }

    /// The values of one tensor (a copy out of the memory map).
    pub fn load(&self, r: &TensorRef) -> Result<Tensor> {
        let f = self
            .files
            .get(&r.file)
            .ok_or_else(|| anyhow!("{}: file was not opened", r.file.display()))?;
        let info = f
            .tensors
            .get(&r.name)
            .ok_or_else(|| anyhow!("{}: no tensor '{}' in this file", r.file.display(), r.name))?;
        let (start, end) = info.data_offsets;
        let mut bytes = vec![0u8; end - start];
        f.file
            .read_exact_at(&mut bytes, (f.data_start + start) as u64)
            .with_context(|| format!("{}: cannot read tensor '{}'", r.file.display(), r.name))?;
        Tensor::f_from_data_size(&bytes, &r.shape, r.kind)
            .with_context(|| format!("{}: cannot read tensor '{}'", r.file.display(), r.name))
    }
}

/// Largest header accepted (as the safetensors crate).
const MAX_HEADER: u64 = 100_000_000;

/// Opens a file and reads its header; every tensor must lie inside the file with the size its
/// dtype and shape give.
fn open(path: &Path) -> Result<LazyFile> {
    let invalid = |why: String| anyhow!("{}: not a valid safetensors file ({why})", path.display());
    let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let len = file
        .metadata()
        .with_context(|| format!("{}: cannot read", path.display()))?
        .len();
    let mut n = [0u8; 8];
    file.read_exact_at(&mut n, 0)
        .map_err(|_| invalid("shorter than its header".into()))?;
    let n = u64::from_le_bytes(n);
    if n > MAX_HEADER || 8 + n > len {
        return Err(invalid(format!(
            "header length {n} in a file of {len} bytes"
        )));
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact_at(&mut header, 8)
        .map_err(|e| invalid(e.to_string()))?;
    let meta: Metadata = serde_json::from_slice(&header).map_err(|e| invalid(e.to_string()))?;
    let data_len = (len - 8 - n) as usize;
    let mut tensors = HashMap::new();
    for (name, info) in meta.tensors() {
        let (start, end) = info.data_offsets;
        let numel: usize = info.shape.iter().product();
        if end < start || end > data_len || (end - start) * 8 != numel * info.dtype.bitsize() {
            return Err(invalid(format!("tensor '{name}' has inconsistent offsets")));
        }
        tensors.insert(name, info.clone());
    }
    Ok(LazyFile {
        file,
        data_start: 8 + n as usize,
        tensors,
    })
}
