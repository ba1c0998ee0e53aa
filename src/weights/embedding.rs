//! Textual-inversion embeddings: new token vectors for the CLIP text encoder, in the
//! layouts the ecosystem writes and reads.
//!
//! - diffusers (`textual_inversion.py`'s `learned_embeds.safetensors`, or the older
//!   `learned_embeds.bin` of `torch.save`): one tensor named by its token, `[n, D]` (or `[D]`); a
//!   folder holding `learned_embeds.safetensors` (else `learned_embeds.bin`) reads that file.
//! - kohya (`train_textual_inversion.py`): one tensor `emb_params` `[n, D]`, which A1111 and
//!   ComfyUI read; its token is the file stem, as A1111 names embeddings (diffusers' literal
//!   `emb_params` token would never be typed).
//! - A1111 (`.pt`, `torch.save`): `string_to_param` holding one `[n, D]` tensor (a plain tensor,
//!   an `nn.Parameter` or an `nn.ParameterDict`), token the file stem, `name` / `step` kept.
//!
//! `.pt` / `.bin` files are read by [`super::torch_save`], whose [`super::pickle`] interprets
//! the pickle as data and refuses any global but tensor rebuilding (nothing is imported or run).
//! Refused in one line naming the file: other pickle layouts, `.ckpt` / `.pth`, SDXL's `clip_l` /
//! `clip_g` pairs, files with other tensors (a LoRA, a model), shapes other than `[n, D]`.
//!
//! The writers make the two files training gives: diffusers' (`{token: [n, D]}` fp32,
//! `{"format": "pt"}`) and the `emb_params` file A1111 / ComfyUI load by file name.
use super::files::is_pickle;
use super::{pickle, torch_save};
use super::{read_safetensors, read_safetensors_metadata, write_safetensors, SaveOptions};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// diffusers' file name in a textual-inversion output folder.
pub const DIFFUSERS_FILE: &str = "learned_embeds.safetensors";
/// kohya's single tensor name, read by A1111 and ComfyUI.
pub const EMB_PARAMS: &str = "emb_params";

/// Which layout a file had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddingFormat {
    /// `{token: [n, D]}`.
    Diffusers,
    /// `{"emb_params": [n, D]}`.
    EmbParams,
    /// A1111's pickled `{"string_to_param": {"*": [n, D]}, "name": .., "step": ..}`.
    A1111,
}

impl EmbeddingFormat {
    pub fn name(self) -> &'static str {
        match self {
            Self::Diffusers => "diffusers",
            Self::EmbParams => "emb_params",
            Self::A1111 => "a1111",
        }
    }
}

/// One embedding file, read.
#[derive(Debug)]
pub struct EmbeddingFile {
    /// The file read (inside the folder, for a folder).
    pub path: PathBuf,
    pub format: EmbeddingFormat,
    /// The token the file names: the tensor's key (diffusers) or the file stem (`emb_params`).
    pub token: String,
    /// `[n, D]` fp32 on the CPU, one row per vector.
    pub vectors: Tensor,
    /// The header's `__metadata__` (kohya and studioize put `name` / `step` there); an A1111
    /// file's `name`, `step`, `sd_checkpoint` and `sd_checkpoint_name` when they are set.
    pub metadata: BTreeMap<String, String>,
    /// The first 12 hex digits of the file's sha256: A1111's short hash (`TI hashes`).
    pub short_hash: String,
}

impl EmbeddingFile {
    pub fn vector_count(&self) -> i64 {
        self.vectors.size()[0]
    }

    pub fn dim(&self) -> i64 {
        self.vectors.size()[1]
    }

    /// Reads a file (or a folder with `learned_embeds.safetensors`).
    pub fn read(path: &Path) -> Result<Self> {
        let file = resolve(path)?;
        let shown = file.display().to_string();
        let (format, token, key, tensor, metadata) = if is_pickle(&file) {
            read_pickled(&file)?
        } else {
            let tensors = read_safetensors(&file)?;
            let metadata = read_safetensors_metadata(&file)?;
            let (format, token, key, tensor) = one_tensor(&file, tensors)?;
            (format, token, key, tensor, metadata)
        };
        let vectors = match tensor.dim() {
            1 => tensor.unsqueeze(0),
            2 => tensor,
            _ => bail!(
                "{shown}: tensor '{key}' has shape {:?}; an embedding is [vectors, dim] or [dim]",
                tensor.size()
            ),
        };
        if !vectors.is_floating_point() {
            bail!(
                "{shown}: tensor '{key}' is {:?}, not floating point",
                vectors.kind()
            );
        }
        if vectors.size()[0] == 0 || vectors.size()[1] == 0 {
            bail!("{shown}: tensor '{key}' is empty ({:?})", vectors.size());
        }
        let vectors = vectors.to_kind(Kind::Float);
        if !bool::try_from(vectors.isfinite().all())? {
            bail!("{shown}: tensor '{key}' holds NaN or infinite values");
        }
        Ok(Self {
            short_hash: short_hash(&file)?,
            path: file,
            format,
            token,
            vectors,
            metadata,
        })
    }
}

/// The file stem: the token A1111 gives an embedding file.
fn stem(file: &Path) -> String {
    file.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// (format, token, key, tensor) of a file's single tensor: diffusers' `{token: ..}` or
/// kohya's `{"emb_params": ..}`.
type Single = (EmbeddingFormat, String, String, Tensor);

fn one_tensor(file: &Path, tensors: Vec<(String, Tensor)>) -> Result<Single> {
    let shown = file.display();
    let names: Vec<String> = tensors.iter().map(|(n, _)| n.clone()).collect();
    if names.iter().any(|n| *n == "clip_l" || *n == "clip_g") {
        bail!("{shown}: an SDXL embedding (clip_l / clip_g vectors); studioize runs SD 1.x");
    }
    let (key, tensor) = match tensors.len() {
        1 => tensors.into_iter().next().expect("one tensor"),
        0 => bail!("{shown}: no tensor; an embedding file holds one"),
        n => bail!(
            "{shown}: {n} tensors ({}); an embedding file holds one{}",
            list(&names),
            lora_hint(&names)
        ),
    };
    Ok(if key == EMB_PARAMS {
        (EmbeddingFormat::EmbParams, stem(file), key, tensor)
    } else {
        (EmbeddingFormat::Diffusers, key.clone(), key, tensor)
    })
}

/// A pickled file's single tensor, as [`Single`], and its metadata.
type Pickled = (
    EmbeddingFormat,
    String,
    String,
    Tensor,
    BTreeMap<String, String>,
);

/// A `.pt` / `.bin`: A1111's `string_to_param` dict, or a `{token: tensor}` dict (diffusers'
/// `learned_embeds.bin`, kohya's `emb_params`), read by the data-only unpickler.
fn read_pickled(file: &Path) -> Result<Pickled> {
    let shown = file.display();
    let top = torch_save::load(file)?;
    let Some(entries) = top
        .entries()
        .filter(|_| matches!(top, pickle::Value::Dict(_)))
    else {
        bail!(
            "{shown}: the pickle holds {}, not an embedding's dict",
            top.kind_name()
        );
    };
    let tensor_of = |v: &pickle::Value| match v {
        pickle::Value::Tensor(t) => Some(t.shallow_clone()),
        _ => None,
    };
    if let Some(params) = top.get("string_to_param") {
        // As A1111: string_to_param (or its `_parameters`) holds exactly one tensor.
        let params = params.entries().unwrap_or_default();
        let [(key, value)] = params.as_slice() else {
            bail!(
                "{shown}: string_to_param holds {} entries; an A1111 embedding holds one tensor",
                params.len()
            );
        };
        let key = key.as_str().unwrap_or("*").to_string();
        let tensor = tensor_of(value).ok_or_else(|| {
            anyhow::anyhow!(
                "{shown}: string_to_param['{key}'] is {}, not a tensor",
                value.kind_name()
            )
        })?;
        let mut metadata = BTreeMap::new();
        for k in ["name", "step", "sd_checkpoint", "sd_checkpoint_name"] {
            if let Some(v) = top.get(k).and_then(|v| v.scalar_text()) {
                metadata.insert(k.to_string(), v);
            }
        }
        return Ok((
            EmbeddingFormat::A1111,
            stem(file),
            format!("string_to_param.{key}"),
            tensor,
            metadata,
        ));
    }
    let mut tensors = Vec::new();
    for (k, v) in &entries {
        match (k.as_str(), tensor_of(v)) {
            (Some(k), Some(t)) => tensors.push((k.to_string(), t)),
            _ => {
                let keys: Vec<String> = entries
                    .iter()
                    .map(|(k, _)| k.as_str().unwrap_or("?").to_string())
                    .collect();
                bail!(
                    "{shown}: neither A1111's string_to_param nor a {{token: tensor}} dict ({})",
                    list(&keys)
                );
            }
        }
    }
    let (format, token, key, tensor) = one_tensor(file, tensors)?;
    Ok((format, token, key, tensor, BTreeMap::new()))
}

/// The file behind `path`: itself, or a folder's `learned_embeds.safetensors` (else
/// `learned_embeds.bin`); model pickles (`.ckpt`, `.pth`) are refused.
fn resolve(path: &Path) -> Result<PathBuf> {
    let file = if path.is_dir() {
        let f = path.join(DIFFUSERS_FILE);
        let bin = path.join("learned_embeds.bin");
        match (f.is_file(), bin.is_file()) {
            (true, _) => f,
            (false, true) => bin,
            _ => bail!("{}: a folder without {DIFFUSERS_FILE}", path.display()),
        }
    } else {
        path.to_path_buf()
    };
    let ext = file
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    if matches!(ext.as_deref(), Some("ckpt" | "pth")) {
        bail!(
            "{}: a .ckpt / .pth is a model's pickle, not read as an embedding (A1111 embeddings \
             are .pt, diffusers' .bin)",
            file.display()
        );
    }
    if !file.is_file() {
        bail!("{}: no such file", file.display());
    }
    Ok(file)
}

fn list(names: &[String]) -> String {
    let mut shown: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
    if names.len() > 3 {
        shown.push("...");
    }
    shown.join(", ")
}

fn lora_hint(names: &[String]) -> &'static str {
    if names.iter().any(|n| n.contains("lora")) {
        " (this looks like a LoRA: use --lora)"
    } else {
        ""
    }
}

/// A1111's short hash: the first 12 hex digits of the file's sha256.
fn short_hash(file: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut f =
        std::fs::File::open(file).with_context(|| format!("{}: cannot open", file.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("{}: cannot read", file.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(hex[..12].to_string())
}

/// `[n, D]` fp32 rows, whatever `vectors` was (`[D]` or `[n, D]`, any float kind, any device).
fn rows(vectors: &Tensor) -> Result<Tensor> {
    let v = tch::no_grad(|| {
        vectors
            .detach()
            .to_device(tch::Device::Cpu)
            .to_kind(Kind::Float)
    });
    match v.dim() {
        1 => Ok(v.unsqueeze(0)),
        2 => Ok(v),
        _ => bail!("an embedding is [vectors, dim], not {:?}", v.size()),
    }
}

/// diffusers' `learned_embeds.safetensors`: `{token: [n, D]}` fp32, `{"format": "pt"}`.
pub fn write_diffusers(file: &Path, token: &str, vectors: &Tensor) -> Result<()> {
    let t = rows(vectors).with_context(|| file.display().to_string())?;
    write_safetensors(
        file,
        &[(token.to_string(), t)],
        &SaveOptions::pt(Some(Kind::Float)),
    )
}

/// kohya's `{"emb_params": [n, D]}` (fp32), which A1111 and ComfyUI load under the file's
/// stem; `name` and `step` go to the header's metadata (as kohya's `ss_` keys do not).
pub fn write_emb_params(
    file: &Path,
    name: &str,
    step: Option<u64>,
    vectors: &Tensor,
) -> Result<()> {
    let t = rows(vectors).with_context(|| file.display().to_string())?;
    let mut opts = SaveOptions::pt(Some(Kind::Float));
    opts.metadata.insert("name".into(), name.to_string());
    if let Some(s) = step {
        opts.metadata.insert("step".into(), s.to_string());
    }
    write_safetensors(file, &[(EMB_PARAMS.to_string(), t)], &opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_files_read_back_with_their_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let v = Tensor::arange(6, (Kind::Float, tch::Device::Cpu)).view([2, 3]) / 7.0;
        let d = dir.path().join("learned_embeds.safetensors");
        write_diffusers(&d, "<mug>", &v).unwrap();
        let e = EmbeddingFile::read(dir.path()).unwrap();
        assert_eq!(
            (e.format, e.token.as_str()),
            (EmbeddingFormat::Diffusers, "<mug>")
        );
        assert_eq!(e.metadata.get("format").map(String::as_str), Some("pt"));
        assert!(e.vectors.equal(&v));
        let k = dir.path().join("red-mug.safetensors");
        write_emb_params(&k, "red-mug", Some(500), &v.get(0)).unwrap();
        let e = EmbeddingFile::read(&k).unwrap();
        assert_eq!(
            (e.format, e.token.as_str()),
            (EmbeddingFormat::EmbParams, "red-mug")
        );
        assert_eq!(e.vectors.size(), [1, 3]);
        assert_eq!(e.metadata.get("step").map(String::as_str), Some("500"));
        assert_eq!(e.short_hash.len(), 12);
    }

    #[test]
    fn pickles_that_are_not_torch_zips_and_model_pickles_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let pt = dir.path().join("style.pt");
        std::fs::write(&pt, b"not read").unwrap();
        let e = EmbeddingFile::read(&pt).unwrap_err().to_string();
        assert!(
            e.contains("style.pt") && e.contains("not a torch.save zip"),
            "{e}"
        );
        std::fs::write(dir.path().join("learned_embeds.bin"), b"\x80\x02}q\x00.").unwrap();
        let e = EmbeddingFile::read(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("learned_embeds.bin") && e.contains("legacy format"),
            "{e}"
        );
        let ckpt = dir.path().join("model.ckpt");
        std::fs::write(&ckpt, b"x").unwrap();
        let e = EmbeddingFile::read(&ckpt).unwrap_err().to_string();
        assert!(
            e.contains("model.ckpt") && e.contains("model's pickle"),
            "{e}"
        );
    }
}
