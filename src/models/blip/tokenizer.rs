//! BLIP's tokenizer: BERT uncased WordPiece plus `[DEC]` (the decoder's start token) and
//! `[ENC]`. Reads `tokenizer.json` when present (the Salesforce repositories have one), else
//! builds the same pipeline from `vocab.txt`. Decoding skips special tokens and joins `##`
//! pieces, as transformers' `decode(..., skip_special_tokens=True)`.
use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};
use std::path::Path;
use std::str::FromStr;
use tokenizers::Tokenizer;

pub struct BlipTokenizer {
    inner: Tokenizer,
    cls_id: i64,
    sep_id: i64,
}

impl BlipTokenizer {
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let json_path = dir.join("tokenizer.json");
        let inner = if json_path.is_file() {
            Tokenizer::from_file(&json_path)
                .map_err(|e| anyhow::anyhow!("{}: invalid tokenizer ({e})", json_path.display()))?
        } else {
            Self::from_vocab(dir)?
        };
        let id = |tok: &str| -> Result<i64> {
            inner
                .token_to_id(tok)
                .map(i64::from)
                .with_context(|| format!("{}: the tokenizer has no '{tok}' token", dir.display()))
        };
        Ok(Self {
            cls_id: id("[CLS]")?,
            sep_id: id("[SEP]")?,
            inner,
        })
    }

    fn from_vocab(dir: &Path) -> Result<Tokenizer> {
        let path = dir.join("vocab.txt");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{}: cannot read (a BLIP folder needs tokenizer.json or vocab.txt)",
                path.display()
            )
        })?;
        let mut vocab = Map::new();
        for (i, line) in text.lines().enumerate() {
            vocab.insert(line.trim_end_matches('\r').to_string(), json!(i));
        }
        let mut added = Vec::new();
        let mut next = vocab.len();
        for tok in [
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]",
        ] {
            let id = match vocab.get(tok) {
                Some(v) => v.as_u64().expect("ids written above"),
                None if tok == "[DEC]" || tok == "[ENC]" => {
                    next += 1;
                    (next - 1) as u64
                }
                None => bail!("{}: the vocabulary has no '{tok}' token", path.display()),
            };
            added.push(
                json!({"id": id, "content": tok, "single_word": false, "lstrip": false,
                              "rstrip": false, "normalized": false, "special": true}),
            );
        }
        let spec = json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
            "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                           "strip_accents": null, "lowercase": true},
            "pre_tokenizer": {"type": "BertPreTokenizer"},
            "post_processor": null,
            "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
            "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                      "max_input_chars_per_word": 100, "vocab": Value::Object(vocab)}
        });
        Tokenizer::from_str(&spec.to_string())
            .map_err(|e| anyhow::anyhow!("{}: cannot build the tokenizer ({e})", dir.display()))
    }

    /// `[CLS] tokens [SEP]`, as the processor tokenises a prompt.
    pub fn encode(&self, text: &str) -> Result<Vec<i64>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| anyhow::anyhow!("cannot tokenize {text:?}: {e}"))?;
        let mut ids = vec![self.cls_id];
        ids.extend(enc.get_ids().iter().map(|&i| i64::from(i)));
        ids.push(self.sep_id);
        Ok(ids)
    }

    /// Text of `ids` without special tokens.
    pub fn decode(&self, ids: &[i64]) -> Result<String> {
        let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
        self.inner
            .decode(&ids, true)
            .map_err(|e| anyhow::anyhow!("cannot decode {ids:?}: {e}"))
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}
