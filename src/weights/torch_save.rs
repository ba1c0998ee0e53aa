//! `torch.save`'s zip files (`<name>/data.pkl`, `<name>/data/<key>` storages, `byteorder`):
//! the pickle through the data-only [`super::pickle`], its tensors built from the storages
//! (bounds-checked views, fp32 on the CPU).
use super::pickle::{unpickle, TensorRef, Value};
use anyhow::{anyhow, bail, Result};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use tch::{Kind, Tensor};

/// Largest `data.pkl` read (an embedding's is under 1 KiB).
const MAX_PICKLE_BYTES: u64 = 1 << 20;

type Zip = zip::ZipArchive<std::fs::File>;

/// Reads a `torch.save` zip file into its top-level value; no code is imported or run.
pub fn load(path: &Path) -> Result<Value> {
    let shown = path.display();
    let mut head = [0u8; 2];
    let file = std::fs::File::open(path).map_err(|e| anyhow!("{shown}: cannot open ({e})"))?;
    if (&file).read_exact(&mut head).is_ok() && head[0] == 0x80 {
        bail!("{shown}: torch.save's legacy format (torch < 1.6) is not read; re-save it");
    }
    let mut zip =
        Zip::new(file).map_err(|e| anyhow!("{shown}: not a torch.save zip file ({e})"))?;
    let pkl = (0..zip.len())
        .filter_map(|i| zip.by_index(i).ok().map(|f| f.name().to_string()))
        .find(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .ok_or_else(|| anyhow!("{shown}: a zip without torch.save's <name>/data.pkl"))?;
    let prefix = pkl.trim_end_matches("data.pkl").to_string();
    if let Ok(mut f) = zip.by_name(&format!("{prefix}byteorder")) {
        let mut order = String::new();
        f.read_to_string(&mut order)
            .map_err(|e| anyhow!("{shown}: cannot read the byte order ({e})"))?;
        if order != "little" {
            bail!("{shown}: byte order '{order}'; only little-endian files are read");
        }
    }
    let bytes =
        read_entry(&mut zip, &pkl, MAX_PICKLE_BYTES).map_err(|e| anyhow!("{shown}: {pkl}: {e}"))?;
    let mut storages: HashMap<String, Tensor> = HashMap::new();
    let mut tensor = |r: TensorRef| -> Result<Tensor> {
        if !storages.contains_key(r.key) {
            let s = storage(
                &mut zip,
                &format!("{prefix}data/{}", r.key),
                r.kind,
                r.numel,
            )?;
            storages.insert(r.key.to_string(), s);
        }
        strided(&storages[r.key], &r)
    };
    unpickle(&bytes, &mut tensor).map_err(|e| anyhow!("{shown}: {e}"))
}

fn read_entry(zip: &mut Zip, name: &str, max: u64) -> Result<Vec<u8>> {
    let mut f = zip
        .by_name(name)
        .map_err(|e| anyhow!("missing from the zip ({e})"))?;
    if f.size() > max {
        bail!("{} bytes, more than the {max} expected", f.size());
    }
    let mut out = Vec::with_capacity(f.size() as usize);
    f.by_ref()
        .take(max)
        .read_to_end(&mut out)
        .map_err(|e| anyhow!("cannot read ({e})"))?;
    Ok(out)
}

/// Storage `name` as a flat fp32 tensor of `numel` elements of `kind`.
fn storage(zip: &mut Zip, name: &str, kind: Kind, numel: i64) -> Result<Tensor> {
    let want = (numel as u64)
        .checked_mul(kind.elt_size_in_bytes() as u64)
        .ok_or_else(|| anyhow!("{name}: {numel} elements"))?;
    let bytes = read_entry(zip, name, want).map_err(|e| anyhow!("{name}: {e}"))?;
    if bytes.len() as u64 != want {
        bail!(
            "{name}: {} bytes for {numel} elements of {kind:?}",
            bytes.len()
        );
    }
    Ok(Tensor::f_from_data_size(&bytes, &[numel], kind)?.to_kind(Kind::Float))
}

/// The view `size` / `stride` at `offset` of a flat storage, copied out, after checking that it
/// stays inside the storage.
fn strided(storage: &Tensor, r: &TensorRef) -> Result<Tensor> {
    let (size, stride, offset, key) = (&r.size, &r.stride, r.offset, r.key);
    if size.len() != stride.len() || offset < 0 {
        bail!("storage {key}: size {size:?}, stride {stride:?}, offset {offset}");
    }
    let numel = storage.size()[0];
    if !size.contains(&0) {
        let last = size.iter().zip(stride).try_fold(offset, |acc, (&n, &s)| {
            (n - 1).checked_mul(s).and_then(|x| acc.checked_add(x))
        });
        if last.is_none_or(|l| l >= numel) {
            let view = format!("size {size:?} stride {stride:?} offset {offset}");
            bail!("storage {key} of {numel} elements: a view {view} reaches past it");
        }
    } else if offset > numel {
        bail!("storage {key}: offset {offset} past its {numel} elements");
    }
    Ok(storage
        .f_as_strided(size, stride, Some(offset))?
        .contiguous())
}
