//! Safetensors files read on demand: the headers (names, dtypes, shapes) are read when a file
//! is opened, a tensor's values only when it is loaded, from the memory map. An export walks a
//! whole model this way holding one tensor at a time.
use anyhow::{anyhow, bail, Context, Result};
use safetensors::tensor::TensorInfo;
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
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
    mmap: memmap2::Mmap,
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
                    kind: kind(info.dtype).with_context(|| {
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
        let bytes = &f.mmap[f.data_start + start..f.data_start + end];
        Tensor::f_from_data_size(bytes, &r.shape, r.kind)
            .with_context(|| format!("{}: cannot read tensor '{}'", r.file.display(), r.name))
    }
}

fn open(path: &Path) -> Result<LazyFile> {
    let file =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    // SAFETY: the file is only read; a concurrent truncation by another process could fault, as
    // with any memory-mapped reader (the reference libraries map the same way).
    let mmap = unsafe { memmap2::Mmap::map(&file) }
        .with_context(|| format!("{}: cannot map", path.display()))?;
    let (n, meta) = SafeTensors::read_metadata(&mmap)
        .map_err(|e| anyhow!("{}: not a valid safetensors file ({e})", path.display()))?;
    let tensors = meta
        .tensors()
        .into_iter()
        .map(|(k, v)| (k, v.clone()))
        .collect();
    Ok(LazyFile {
        mmap,
        data_start: 8 + n,
        tensors,
    })
}

/// The tch kind of a safetensors dtype (those studioize reads).
fn kind(dtype: Dtype) -> Result<Kind> {
    Ok(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F64 => Kind::Double,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::I16 => Kind::Int16,
        Dtype::I8 => Kind::Int8,
        Dtype::U8 => Kind::Uint8,
        Dtype::BOOL => Kind::Bool,
        other => bail!("{other:?}"),
    })
}
