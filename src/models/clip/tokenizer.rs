//! The CLIP tokenizer: NFC + whitespace collapsing + lowercase, CLIP's split regex, byte-level
//! BPE with `</w>` word ends; `<|startoftext|>` ... `<|endoftext|>`, truncated and padded to 77
//! as transformers' `CLIPTokenizer(padding="max_length", truncation=True)` does.
//!
//! Reads `tokenizer.json` when the folder has one, else builds the same pipeline from
//! `vocab.json` + `merges.txt` (the layout of the SD 1.x repositories).
//!
//! Textual-inversion tokens are added as transformers' `tokenizer.add_tokens` adds them (ids
//! after the vocabulary, normalized: matched before BPE, anywhere, case-insensitively); a token
//! of `n` vectors also adds `<tok>_1` ... `<tok>_{n-1}` and stands for all of them in a prompt,
//! as diffusers' `maybe_convert_prompt` rewrites it (`a <tok> mug` -> `a <tok> <tok>_1 <tok>_2
//! mug`).
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use tokenizers::{AddedToken, Tokenizer};

/// Whether the truncation warning was printed (once per process).
static TRUNCATION_WARNED: AtomicBool = AtomicBool::new(false);

const BOS: &str = "<|startoftext|>";
const EOS: &str = "<|endoftext|>";
const SPLIT_PATTERN: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

pub struct ClipTokenizer {
    inner: Tokenizer,
    bos_id: i64,
    eos_id: i64,
    pad_id: i64,
    max_length: usize,
    /// Tokens of several vectors: (the token's id, its `_1` ... `_{n-1}` tokens).
    multi_vector: Vec<(u32, Vec<String>)>,
}

impl ClipTokenizer {
    pub fn from_dir(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            bail!("{}: no tokenizer folder", dir.display());
        }
        let config: Value = match std::fs::read_to_string(dir.join("tokenizer_config.json")) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| {
                anyhow::anyhow!(
                    "{}: invalid JSON ({e})",
                    dir.join("tokenizer_config.json").display()
                )
            })?,
            Err(_) => json!({}),
        };
        let json_path = dir.join("tokenizer.json");
        let inner = if json_path.is_file() {
            Tokenizer::from_file(&json_path)
                .map_err(|e| anyhow::anyhow!("{}: invalid tokenizer ({e})", json_path.display()))?
        } else {
            Self::from_vocab_and_merges(dir)?
        };
        let id = |tok: &str, what: &str| -> Result<i64> {
            inner.token_to_id(tok).map(i64::from).with_context(|| {
                format!(
                    "{}: the vocabulary has no {what} token '{tok}'",
                    dir.display()
                )
            })
        };
        let token_name = |key: &str, default: &str| -> String {
            match config.get(key) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Object(o)) => o
                    .get("content")
                    .and_then(|c| c.as_str())
                    .unwrap_or(default)
                    .to_string(),
                _ => default.to_string(),
            }
        };
        let max_length = config
            .get("model_max_length")
            .and_then(|v| v.as_u64())
            .filter(|&n| n > 2 && n < 100_000)
            .unwrap_or(77) as usize;
        Ok(Self {
            bos_id: id(&token_name("bos_token", BOS), "bos")?,
            eos_id: id(&token_name("eos_token", EOS), "eos")?,
            pad_id: id(&token_name("pad_token", EOS), "pad")?,
            max_length,
            inner,
            multi_vector: Vec::new(),
        })
    }

    fn from_vocab_and_merges(dir: &Path) -> Result<Tokenizer> {
        let vocab_path = dir.join("vocab.json");
        let merges_path = dir.join("merges.txt");
        let vocab_text = std::fs::read_to_string(&vocab_path)
            .with_context(|| format!("{}: cannot read (a tokenizer folder needs tokenizer.json or vocab.json + merges.txt)", vocab_path.display()))?;
        let vocab: Value = serde_json::from_str(&vocab_text)
            .map_err(|e| anyhow::anyhow!("{}: invalid JSON ({e})", vocab_path.display()))?;
        if !vocab.is_object() {
            bail!(
                "{}: expected a JSON object of token -> id",
                vocab_path.display()
            );
        }
        let merges_text = std::fs::read_to_string(&merges_path)
            .with_context(|| format!("{}: cannot read", merges_path.display()))?;
        let mut merges = Vec::new();
        for (i, line) in merges_text.lines().enumerate() {
            if line.starts_with("#version") || line.trim().is_empty() {
                continue;
            }
            let mut parts = line.split(' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(a), Some(b), None) => merges.push(json!([a, b])),
                _ => bail!(
                    "{}:{}: a merge line must hold two tokens",
                    merges_path.display(),
                    i + 1
                ),
            }
        }
        let special = |id: u64, content: &str| {
            json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        };
        let lookup = |tok: &str| -> Result<u64> {
            vocab.get(tok).and_then(|v| v.as_u64()).with_context(|| {
                format!(
                    "{}: the vocabulary has no '{tok}' token",
                    vocab_path.display()
                )
            })
        };
        let (bos, eos) = (lookup(BOS)?, lookup(EOS)?);
        let spec = json!({
            "version": "1.0", "truncation": null, "padding": null,
            "added_tokens": [special(bos, BOS), special(eos, EOS)],
            "normalizer": {"type": "Sequence", "normalizers": [
                {"type": "NFC"},
                {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
                {"type": "Lowercase"}]},
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": SPLIT_PATTERN}, "behavior": "Removed", "invert": true},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]},
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": EOS, "continuing_subword_prefix": "",
                      "end_of_word_suffix": "</w>", "fuse_unk": false, "byte_fallback": false,
                      "ignore_merges": false, "vocab": vocab, "merges": merges}
        });
        Tokenizer::from_str(&spec.to_string())
            .map_err(|e| anyhow::anyhow!("{}: cannot build the tokenizer ({e})", dir.display()))
    }

    /// Adds a textual-inversion token of `vectors` vectors (`token`, then `token_1` ...
    /// `token_{n-1}`, as diffusers' `load_textual_inversion`) and returns their ids, which
    /// follow the vocabulary and the tokens added before. A token the vocabulary has (or one
    /// an earlier token already matches) is refused.
    pub fn add_embedding_tokens(&mut self, token: &str, vectors: usize) -> Result<Vec<i64>> {
        if token.is_empty() || token.chars().any(char::is_whitespace) {
            bail!("the token {token:?} must be one word without spaces; name one with PATH:TOKEN");
        }
        if vectors == 0 {
            bail!("the token '{token}' has no vectors");
        }
        let names: Vec<String> = std::iter::once(token.to_string())
            .chain((1..vectors).map(|i| format!("{token}_{i}")))
            .collect();
        for name in &names {
            if self.inner.token_to_id(name).is_some() {
                bail!("the token '{name}' is already in the tokenizer's vocabulary; choose another token with PATH:TOKEN");
            }
            let ids = self.raw_ids(name)?;
            if ids.len() == 1 && ids[0] as usize >= self.base_vocab() {
                bail!("the token '{name}' is already added (added tokens match case-insensitively); choose another token with PATH:TOKEN");
            }
        }
        let added: Vec<AddedToken> = names
            .iter()
            .map(|n| AddedToken::from(n.as_str(), false))
            .collect();
        let n = self.inner.add_tokens(&added);
        let ids: Vec<u32> = names
            .iter()
            .filter_map(|n| self.inner.token_to_id(n))
            .collect();
        if n != names.len() || ids.len() != names.len() {
            bail!("the tokenizer did not add the token '{token}'");
        }
        if ids.windows(2).any(|w| w[1] != w[0] + 1) {
            bail!("the tokenizer gave the token '{token}' ids {ids:?}, not consecutive ones");
        }
        if vectors > 1 {
            self.multi_vector.push((ids[0], names[1..].to_vec()));
        }
        Ok(ids.into_iter().map(i64::from).collect())
    }

    /// The vocabulary before any added embedding token: the first id an embedding gets.
    fn base_vocab(&self) -> usize {
        self.inner.get_vocab_size(false)
    }

    fn raw_ids(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| anyhow::anyhow!("cannot tokenize {text:?}: {e}"))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The prompt with every multi-vector token followed by its other tokens, as diffusers'
    /// `maybe_convert_prompt` (`a <tok> mug` -> `a <tok> <tok>_1 <tok>_2 mug`). Unlike its
    /// `str.replace` of the token as the tokenizer reports it (lower-cased), each place the
    /// tokenizer matched is expanded, so a token typed in other capitals gets all its vectors
    /// too; and a token already followed by its `_1` (a prompt written out in full, as
    /// textual_inversion.py's training prompts are) is left as it is, not expanded twice.
    pub fn expand_prompt(&self, text: &str) -> Result<String> {
        if self.multi_vector.is_empty() {
            return Ok(text.to_string());
        }
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| anyhow::anyhow!("cannot tokenize {text:?}: {e}"))?;
        let ids = enc.get_ids();
        let mut out = String::with_capacity(text.len() * 2);
        let mut copied = 0;
        for (k, (id, &(_, end))) in ids.iter().zip(enc.get_offsets()).enumerate() {
            let Some((_, rest)) = self.multi_vector.iter().find(|(m, _)| m == id) else {
                continue;
            };
            if ids.get(k + 1) == Some(&(id + 1)) {
                continue;
            }
            let Some(head) = text.get(copied..end) else {
                bail!("cannot expand the embedding tokens of {text:?}");
            };
            out.push_str(head);
            for r in rest {
                out.push(' ');
                out.push_str(r);
            }
            copied = end;
        }
        match text.get(copied..) {
            Some(tail) => out.push_str(tail),
            None => bail!("cannot expand the embedding tokens of {text:?}"),
        }
        Ok(out)
    }

    /// Exactly `max_length` ids of the prompt as written, without the multi-vector rewrite
    /// (transformers' `tokenizer(text, padding="max_length", truncation=True)`).
    pub fn encode_raw(&self, text: &str) -> Result<Vec<i64>> {
        self.encode_expanded(text, text)
    }

    /// Exactly `max_length` ids: start token, the prompt's tokens (truncated), end token,
    /// padding; multi-vector embedding tokens stand for all their vectors ([`Self::expand_prompt`]).
    pub fn encode(&self, text: &str) -> Result<Vec<i64>> {
        self.encode_expanded(&self.expand_prompt(text)?, text)
    }

    fn encode_expanded(&self, expanded: &str, text: &str) -> Result<Vec<i64>> {
        let enc = self
            .inner
            .encode(expanded, false)
            .map_err(|e| anyhow::anyhow!("cannot tokenize {text:?}: {e}"))?;
        let kept = self.max_length - 2;
        if enc.get_ids().len() > kept && !TRUNCATION_WARNED.swap(true, Ordering::Relaxed) {
            eprintln!(
                "warning: a prompt of {} tokens is longer than CLIP's {kept}; the rest is cut, as diffusers does (said once): {text:?}",
                enc.get_ids().len()
            );
        }
        let mut ids = Vec::with_capacity(self.max_length);
        ids.push(self.bos_id);
        ids.extend(
            enc.get_ids()
                .iter()
                .take(self.max_length - 2)
                .map(|&i| i as i64),
        );
        ids.push(self.eos_id);
        ids.resize(self.max_length, self.pad_id);
        Ok(ids)
    }

    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<i64>>> {
        texts.iter().map(|t| self.encode(t)).collect()
    }

    /// How many tokens of the prompt survive truncation (without start and end tokens).
    pub fn prompt_tokens(&self, text: &str) -> Result<usize> {
        Ok(self.raw_ids(&self.expand_prompt(text)?)?.len())
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn max_length(&self) -> usize {
        self.max_length
    }

    pub fn bos_id(&self) -> i64 {
        self.bos_id
    }

    pub fn eos_id(&self) -> i64 {
        self.eos_id
    }

    pub fn pad_id(&self) -> i64 {
        self.pad_id
    }
}
