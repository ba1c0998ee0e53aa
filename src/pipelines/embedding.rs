//! Textual-inversion embeddings on a loaded model (`--embedding PATH[:TOKEN]`, repeatable), as
//! diffusers' `load_textual_inversion`: each file's vectors become new tokens of the tokenizer
//! (`<tok>`, `<tok>_1`, ... for several vectors; ids after the vocabulary) and new rows of the
//! text encoder's token embedding, so that a prompt naming the token uses them. The token is
//! the one given after the colon, else the file's (diffusers' key, or the file stem for
//! `emb_params` files, as A1111 names them).
use super::StableDiffusion;
use crate::weights::embedding::{EmbeddingFile, EmbeddingFormat};
use anyhow::{anyhow, bail, Result};
use std::path::PathBuf;
use std::str::FromStr;
use tch::Tensor;

/// `PATH[:TOKEN]` as the command line gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingSpec {
    pub path: PathBuf,
    /// The token to use instead of the file's.
    pub token: Option<String>,
}

impl FromStr for EmbeddingSpec {
    type Err = String;

    /// The part after the last colon is a token unless it looks like a path (`c:/x`, `./a:b/c`).
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("an empty embedding path".into());
        }
        if let Some((p, token)) = s.rsplit_once(':') {
            if !p.is_empty() && !token.contains(['/', '\\']) {
                if token.is_empty() || token.chars().any(char::is_whitespace) {
                    return Err(format!("'{s}': the token after the colon must be one word"));
                }
                return Ok(Self {
                    path: PathBuf::from(p),
                    token: Some(token.to_string()),
                });
            }
        }
        Ok(Self {
            path: PathBuf::from(s),
            token: None,
        })
    }
}

impl std::fmt::Display for EmbeddingSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.token {
            Some(t) => write!(f, "{}:{t}", self.path.display()),
            None => write!(f, "{}", self.path.display()),
        }
    }
}

/// What one applied file did.
#[derive(Debug, Clone)]
pub struct AppliedEmbedding {
    pub spec: EmbeddingSpec,
    /// The file read (inside the folder, for a folder).
    pub file: PathBuf,
    pub format: EmbeddingFormat,
    /// The token a prompt names it by.
    pub token: String,
    /// The tokenizer ids of `token`, `token_1`, ...: one per vector.
    pub ids: Vec<i64>,
    /// A1111's short hash of the file (`TI hashes`).
    pub short_hash: String,
}

impl AppliedEmbedding {
    /// The record of an image's parameters: `{"path", "token", "vectors", "format", "hash"}`.
    pub fn params(&self) -> serde_json::Value {
        serde_json::json!({
            "path": self.spec.path.to_string_lossy(), "token": self.token,
            "vectors": self.ids.len(), "format": self.format.name(), "hash": self.short_hash,
        })
    }
}

/// The parameters record of several embeddings (a JSON list).
pub fn params(applied: &[AppliedEmbedding]) -> serde_json::Value {
    applied.iter().map(AppliedEmbedding::params).collect()
}

/// Adds `token` with `vectors` (`[n, D]` or `[D]`) to the tokenizer and the text encoder and
/// returns the token ids, one per vector. The vectors' last dimension must be the text
/// encoder's hidden size; a token the tokenizer already has is refused. Training reuses this,
/// then trains the rows it added (`ClipTextModel::token_rows`).
pub fn add_token(sd: &mut StableDiffusion, token: &str, vectors: &Tensor) -> Result<Vec<i64>> {
    let rows = match vectors.dim() {
        1 => vectors.unsqueeze(0),
        2 => vectors.shallow_clone(),
        _ => bail!("an embedding is [vectors, dim], not {:?}", vectors.size()),
    };
    let (n, d) = (rows.size()[0], rows.size()[1]);
    let hidden = sd.text_encoder.config().hidden_size;
    if d != hidden {
        bail!(
            "vectors of size {d}, but this model's text encoder has hidden size {hidden} (an \
             embedding for another model: SD 2.x has 1024, SD 1.x 768)"
        );
    }
    let ids = sd.tokenizer.add_embedding_tokens(token, n as usize)?;
    sd.text_encoder.add_token_rows(ids[0], &rows)?;
    Ok(ids)
}

/// Reads each file and adds its token(s), in order.
pub fn apply(sd: &mut StableDiffusion, specs: &[EmbeddingSpec]) -> Result<Vec<AppliedEmbedding>> {
    let mut applied = Vec::with_capacity(specs.len());
    for spec in specs {
        let file = EmbeddingFile::read(&spec.path)?;
        let shown = file.path.display().to_string();
        let token = spec.token.clone().unwrap_or_else(|| file.token.clone());
        let ids = add_token(sd, &token, &file.vectors).map_err(|e| anyhow!("{shown}: {e}"))?;
        applied.push(AppliedEmbedding {
            spec: spec.clone(),
            file: file.path.clone(),
            format: file.format,
            token,
            ids,
            short_hash: file.short_hash.clone(),
        });
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_with_and_without_a_token() {
        let s: EmbeddingSpec = "a/mug.safetensors:<mug>".parse().unwrap();
        assert_eq!(s.path, PathBuf::from("a/mug.safetensors"));
        assert_eq!(s.token.as_deref(), Some("<mug>"));
        let s: EmbeddingSpec = "dir/emb".parse().unwrap();
        assert_eq!((s.path, s.token), (PathBuf::from("dir/emb"), None));
        let s: EmbeddingSpec = "c:/x.safetensors".parse().unwrap();
        assert_eq!((s.path, s.token), (PathBuf::from("c:/x.safetensors"), None));
        assert!("x.safetensors:".parse::<EmbeddingSpec>().is_err());
        assert!("".parse::<EmbeddingSpec>().is_err());
    }
}
