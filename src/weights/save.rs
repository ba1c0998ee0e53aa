//! Writing safetensors files tensor by tensor: the header is computed from the shapes, then
//! each tensor is converted (dtype, device) and written on its own, so writing a model costs one
//! tensor of extra memory, not a second copy of the model. Files are written through
//! [`crate::fsutil::write_atomic_with`]: whole or absent, the path in every error.
use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// The safetensors dtype name of a tch kind.
fn dtype_name(kind: Kind) -> Result<(&'static str, usize)> {
    Ok(match kind {
        Kind::Float => ("F32", 4),
        Kind::Half => ("F16", 2),
        Kind::BFloat16 => ("BF16", 2),
        Kind::Double => ("F64", 8),
        Kind::Int64 => ("I64", 8),
        Kind::Int => ("I32", 4),
        Kind::Int16 => ("I16", 2),
        Kind::Int8 => ("I8", 1),
        Kind::Uint8 => ("U8", 1),
        Kind::Bool => ("BOOL", 1),
        other => bail!("cannot store a {other:?} tensor in safetensors"),
    })
}

/// How tensors are stored.
#[derive(Debug, Clone, Default)]
pub struct SaveOptions {
    /// Floating-point tensors are converted to this kind (`None`: kept as they are); integer
    /// tensors are never converted.
    pub float_kind: Option<Kind>,
    /// `__metadata__` of the header (transformers wants `{"format": "pt"}`).
    pub metadata: BTreeMap<String, String>,
}

impl SaveOptions {
    /// `{"format": "pt"}` metadata (transformers refuses files without it; diffusers accepts
    /// both), floats stored as `float_kind`.
    pub fn pt(float_kind: Option<Kind>) -> Self {
        Self {
            float_kind,
            metadata: BTreeMap::from([("format".to_string(), "pt".to_string())]),
        }
    }
}

fn stored_kind(t: &Tensor, opts: &SaveOptions) -> Kind {
    match opts.float_kind {
        Some(k) if t.is_floating_point() => k,
        _ => t.kind(),
    }
}

/// One tensor of a safetensors file to be written: its name, shape and stored kind.
#[derive(Debug, Clone)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<i64>,
    pub kind: Kind,
}

/// Writes a safetensors file to `w` from its specs: the header first (8-byte aligned, as the
/// reference writer pads it), then each tensor, obtained from `tensor(i)` only when it is
/// written (converted to its spec's kind, moved to the CPU), so that one tensor at a time is in
/// memory. `progress` is told the bytes of each tensor written.
pub fn write_stream(
    w: &mut impl Write,
    specs: &[TensorSpec],
    metadata: &BTreeMap<String, String>,
    mut tensor: impl FnMut(usize) -> Result<Tensor>,
    mut progress: impl FnMut(u64),
) -> Result<()> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), serde_json::to_value(metadata)?);
    }
    let mut offset = 0usize;
    let mut sizes = Vec::with_capacity(specs.len());
    for s in specs {
        if s.name == "__metadata__" || header.contains_key(&s.name) {
            bail!("tensor name '{}' is reserved or repeated", s.name);
        }
        let (dtype, size) = dtype_name(s.kind)?;
        let bytes = s.shape.iter().product::<i64>().max(0) as usize * size;
        header.insert(
            s.name.clone(),
            serde_json::json!({"dtype": dtype, "shape": s.shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
        sizes.push(bytes);
    }
    let mut json = serde_json::to_string(&header)?.into_bytes();
    json.resize(json.len().next_multiple_of(8), b' ');
    w.write_all(&(json.len() as u64).to_le_bytes())?;
    w.write_all(&json)?;
    for (i, (s, &n)) in specs.iter().zip(&sizes).enumerate() {
        let t = tensor(i)?;
        if t.size() != s.shape {
            bail!(
                "tensor '{}' has shape {:?}, expected {:?}",
                s.name,
                t.size(),
                s.shape
            );
        }
        let c = tch::no_grad(|| {
            t.detach()
                .to_device(Device::Cpu)
                .to_kind(s.kind)
                .contiguous()
        });
        if n > 0 {
            // SAFETY: `c` is a contiguous CPU tensor of `n` bytes, alive for the whole borrow.
            let bytes = unsafe { std::slice::from_raw_parts(c.data_ptr() as *const u8, n) };
            w.write_all(bytes)
                .map_err(|e| anyhow::anyhow!("tensor '{}': {e}", s.name))?;
        }
        progress(n as u64);
    }
    Ok(())
}

/// Writes `tensors` (in the given order) to `path` as safetensors, whole or absent.
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    opts: &SaveOptions,
) -> Result<()> {
    let specs: Vec<TensorSpec> = tensors
        .iter()
        .map(|(name, t)| TensorSpec {
            name: name.clone(),
            shape: t.size(),
            kind: stored_kind(t, opts),
        })
        .collect();
    crate::fsutil::write_atomic_with(path, |w| {
        write_stream(
            w,
            &specs,
            &opts.metadata,
            |i| Ok(tensors[i].1.shallow_clone()),
            |_| {},
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_reference_reader() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.safetensors");
        let a = Tensor::arange(6, (Kind::Float, Device::Cpu)).view([2, 3]) / 7.0;
        let b = Tensor::from_slice(&[1i64, -2, 3]);
        let c = Tensor::zeros([0, 4], (Kind::Float, Device::Cpu));
        let tensors = vec![
            ("z.a".to_string(), a.shallow_clone()),
            ("b".into(), b.shallow_clone()),
            ("c".into(), c),
        ];
        write_safetensors(&p, &tensors, &SaveOptions::pt(Some(Kind::Half))).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.tensor("z.a").unwrap().dtype(), safetensors::Dtype::F16);
        assert_eq!(st.tensor("b").unwrap().dtype(), safetensors::Dtype::I64);
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(meta.metadata().as_ref().unwrap()["format"], "pt");
        let back: std::collections::HashMap<String, Tensor> =
            Tensor::read_safetensors(&p).unwrap().into_iter().collect();
        assert!(back["z.a"]
            .to_kind(Kind::Float)
            .allclose(&a, 1e-3, 1e-3, false));
        assert_eq!(Vec::<i64>::try_from(&back["b"]).unwrap(), vec![1, -2, 3]);
        assert_eq!(back["c"].size(), vec![0, 4]);
    }
}
