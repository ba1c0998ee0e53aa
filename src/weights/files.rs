//! Locating and reading checkpoint files.
use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Extensions of pickle-based checkpoints, which studioize does not execute.
const PICKLE_EXTS: [&str; 4] = ["bin", "ckpt", "pt", "pth"];

fn pickle_error(path: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "{}: pickle checkpoints (.bin/.ckpt/.pt/.pth) are not loaded, because unpickling can run \
         arbitrary code; convert it to safetensors first (e.g. in Python: \
         safetensors.torch.save_file(torch.load(path, weights_only=True), 'model.safetensors'))",
        path.display()
    )
}

pub(crate) fn is_pickle(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| PICKLE_EXTS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Reads every tensor of one `.safetensors` file without copying it: the file is mapped once,
/// privately (copy-on-write: the tensors are writable, the file never changes, pages are read
/// when first touched), and each tensor is a view into that mapping, which lives as long as any
/// of them. A tensor whose offset is not a multiple of its element size is copied instead.
pub fn read_safetensors(path: &Path) -> Result<Vec<(String, Tensor)>> {
    Ok(read_mapped(path)?.0)
}

/// A file's tensors, and the mapping of the whole file as one `uint8` tensor (`None` where the
/// file could not be mapped privately and every tensor was copied).
pub(crate) type Mapped = (Vec<(String, Tensor)>, Option<Tensor>);

/// [`read_safetensors`], and the mapping of the whole file ([`Mapped`]).
pub(crate) fn read_mapped(path: &Path) -> Result<Mapped> {
    if is_pickle(path) {
        return Err(pickle_error(path));
    }
    let file =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    // SAFETY: the file is only read; a concurrent truncation by another process could fault, as
    // with any memory-mapped reader (the reference libraries map the same way).
    let mmap = unsafe { memmap2::Mmap::map(&file) }
        .with_context(|| format!("{}: cannot map", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&mmap)
        .map_err(|e| anyhow::anyhow!("{}: not a valid safetensors file ({e})", path.display()))?;
    let whole = map_private(path, mmap.len())?;
    let mut out = Vec::with_capacity(st.len());
    for (name, view) in st.tensors() {
        let Some(kind) = kind_of(view.dtype()) else {
            bail!(
                "{}: tensor '{name}' has unsupported dtype {:?}",
                path.display(),
                view.dtype()
            );
        };
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let start = view.data().as_ptr() as usize - mmap.as_ptr() as usize;
        let t = match &whole {
            Some(whole) if start.is_multiple_of(kind.elt_size_in_bytes()) => {
                view_of(whole, start, view.data().len(), kind, &shape)
            }
            _ => Ok(Tensor::f_from_data_size(view.data(), &shape, kind)?),
        }
        .with_context(|| format!("{}: cannot read tensor '{name}'", path.display()))?;
        out.push((name, t));
    }
    Ok((out, whole))
}

/// The whole file as a private (copy-on-write) mapping owned by a `uint8` tensor, which unmaps
/// it when the last view of it is dropped; `None` for paths libtorch cannot be given (not UTF-8).
fn map_private(path: &Path, len: usize) -> Result<Option<Tensor>> {
    let Some(name) = path.to_str() else {
        return Ok(None);
    };
    Tensor::f_from_file(name, false, len as i64, (Kind::Uint8, tch::Device::Cpu))
        .map(Some)
        .with_context(|| format!("{}: cannot map", path.display()))
}

/// Bytes `start..start + len` of `whole` as a tensor of `kind` and `shape`, sharing its memory.
fn view_of(whole: &Tensor, start: usize, len: usize, kind: Kind, shape: &[i64]) -> Result<Tensor> {
    let bytes = whole.f_narrow(0, start as i64, len as i64)?;
    Ok(bytes.f_view_dtype(kind)?.f_reshape(shape)?)
}

/// The tch kind of a safetensors dtype.
pub(crate) fn kind_of(dtype: safetensors::Dtype) -> Option<Kind> {
    Some(match dtype {
        safetensors::Dtype::F32 => Kind::Float,
        safetensors::Dtype::F16 => Kind::Half,
        safetensors::Dtype::BF16 => Kind::BFloat16,
        safetensors::Dtype::F64 => Kind::Double,
        safetensors::Dtype::I64 => Kind::Int64,
        safetensors::Dtype::I32 => Kind::Int,
        safetensors::Dtype::I16 => Kind::Int16,
        safetensors::Dtype::I8 => Kind::Int8,
        safetensors::Dtype::U8 => Kind::Uint8,
        safetensors::Dtype::BOOL => Kind::Bool,
        _ => return None,
    })
}

/// The `__metadata__` strings of a `.safetensors` file's header (empty when it has none).
pub fn read_safetensors_metadata(
    path: &Path,
) -> Result<std::collections::BTreeMap<String, String>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    // SAFETY: as in `read_safetensors`.
    let mmap = unsafe { memmap2::Mmap::map(&file) }
        .with_context(|| format!("{}: cannot map", path.display()))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&mmap)
        .map_err(|e| anyhow::anyhow!("{}: not a valid safetensors file ({e})", path.display()))?;
    Ok(meta
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default())
}

/// The weight files of one component folder, in the conventions of diffusers and transformers:
/// `{stem}.safetensors`, `{stem}.{variant}.safetensors`, or sharded with an index
/// (`{stem}.safetensors.index.json` / `{stem}.safetensors.index.{variant}.json`).
///
/// Without a requested variant, the plain file is preferred; when only a variant exists
/// (e.g. a folder saved with `variant="fp16"`), that is used. Pickle files alone give an
/// error that says to convert them.
pub fn component_files(dir: &Path, stem: &str, variant: Option<&str>) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        bail!("{}: no such folder", dir.display());
    }
    let mut candidates: Vec<Option<String>> = vec![variant.map(str::to_string)];
    if variant.is_none() {
        candidates.extend(variants_present(dir, stem).into_iter().map(Some));
    }
    for v in &candidates {
        let single = match v {
            None => dir.join(format!("{stem}.safetensors")),
            Some(v) => dir.join(format!("{stem}.{v}.safetensors")),
        };
        if single.is_file() {
            return Ok(vec![single]);
        }
        let index = match v {
            None => dir.join(format!("{stem}.safetensors.index.json")),
            Some(v) => dir.join(format!("{stem}.safetensors.index.{v}.json")),
        };
        if index.is_file() {
            return shards_from_index(&index);
        }
    }
    for ext in PICKLE_EXTS {
        let p = dir.join(format!("{stem}.{ext}"));
        if p.is_file() {
            return Err(pickle_error(&p));
        }
    }
    match variant {
        Some(v) => bail!(
            "{}: no {stem}.{v}.safetensors (or sharded index) in this folder",
            dir.display()
        ),
        None => bail!(
            "{}: no {stem}.safetensors (or sharded index) in this folder",
            dir.display()
        ),
    }
}

/// The variant a weight file name carries for `stem`: `fp16` for `stem.fp16.safetensors` or
/// `stem.safetensors.index.fp16.json`; `None` for the plain files, shards and other names.
pub fn variant_of(name: &str, stem: &str) -> Option<String> {
    if let Some(rest) = name.strip_prefix(&format!("{stem}.safetensors.index.")) {
        return rest.strip_suffix(".json").map(str::to_string);
    }
    let v = name
        .strip_prefix(&format!("{stem}."))?
        .strip_suffix(".safetensors")?;
    (!v.contains('-') && !v.is_empty()).then(|| v.to_string())
}

/// Variants saved beside a component (`stem.fp16.safetensors`, `stem.safetensors.index.fp16.json`).
fn variants_present(dir: &Path, stem: &str) -> Vec<String> {
    let mut found = BTreeSet::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            found.extend(variant_of(&e.file_name().to_string_lossy(), stem));
        }
    }
    found.into_iter().collect()
}

fn shards_from_index(index: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(index)
        .with_context(|| format!("{}: cannot read", index.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: invalid JSON ({e})", index.display()))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{}: no \"weight_map\" object in shard index",
                index.display()
            )
        })?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut shards = BTreeSet::new();
    for (tensor, file) in map {
        let file = file.as_str().ok_or_else(|| {
            anyhow::anyhow!(
                "{}: weight_map entry for '{tensor}' is not a file name",
                index.display()
            )
        })?;
        shards.insert(file.to_string());
    }
    let mut out = Vec::new();
    for s in shards {
        let p = dir.join(&s);
        if !p.is_file() {
            bail!(
                "{}: shard {s} listed in the index is missing",
                index.display()
            );
        }
        out.push(p);
    }
    Ok(out)
}
