//! The tokenizer of the tiny model: CLIP's real BPE (the merges of openai/clip-vit-large-patch14
//! that the project's fixtures carry), cut down to the merges its captions use, in CLIP's own
//! file format (`vocab.json`, `merges.txt`, `tokenizer_config.json`,
//! `special_tokens_map.json`).
//!
//! CLIP's vocabulary is the 256 byte symbols, the same with `</w>`, one token per merge in
//! merge order, then `<|startoftext|>` and `<|endoftext|>`. Keeping all byte symbols and the
//! merges that BPE applies to the caption words (in their original order) gives a tokenizer
//! that splits those words exactly as the full one does (BPE always applies the lowest-ranked
//! merge present, and it is kept), and any other word into smaller known pieces. The text
//! encoder's embedding then has a few hundred rows instead of 49408.
use anyhow::Result;
use serde_json::{json, Map, Value};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// CLIP's merges (`#version: 0.2` and 48894 merges, by rank).
const CLIP_MERGES: &str = include_str!("../../tests/fixtures/sd/tiny-a/tokenizer/merges.txt");

const BOS: &str = "<|startoftext|>";
const EOS: &str = "<|endoftext|>";

/// GPT-2 / CLIP `bytes_to_unicode`: the printable symbol of each byte, in vocabulary order
/// (the printable Latin-1 bytes first, then the rest mapped above U+0100), as (byte, symbol).
pub fn byte_symbols() -> Vec<(u8, char)> {
    let mut bytes: Vec<u32> = (33..=126).chain(161..=172).chain(174..=255).collect();
    let mut chars = bytes.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bytes.contains(&b) {
            bytes.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    bytes
        .into_iter()
        .zip(chars)
        .map(|(b, c)| (b as u8, char::from_u32(c).expect("valid code point")))
        .collect()
}

/// CLIP's pre-tokenisation, simplified to what changes the merges used: lower case, then runs
/// of letters, single digits and runs of other non-space characters.
pub fn words(text: &str) -> Vec<String> {
    #[derive(PartialEq, Clone, Copy)]
    enum Class {
        Letter,
        Digit,
        Other,
    }
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut class = None;
    for c in text.to_lowercase().chars() {
        let k = if c.is_whitespace() {
            None
        } else if c.is_alphabetic() {
            Some(Class::Letter)
        } else if c.is_numeric() {
            Some(Class::Digit)
        } else {
            Some(Class::Other)
        };
        if (k != class || k == Some(Class::Digit) || k.is_none()) && !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
        if k.is_some() {
            current.push(c);
        }
        class = k;
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The CLIP merges as (rank, left, right).
fn clip_merges() -> Vec<(&'static str, &'static str)> {
    CLIP_MERGES
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(' '))
        .collect()
}

/// The ranks of the merges BPE applies to `word` (CLIP's `bpe`: the byte symbols with `</w>`
/// on the last, then the lowest-ranked adjacent pair merged everywhere, until none is left).
fn merges_used(word: &str, ranks: &HashMap<(&str, &str), usize>, enc: &[char; 256]) -> Vec<usize> {
    let mut syms: Vec<String> = word.bytes().map(|b| enc[b as usize].to_string()).collect();
    if let Some(last) = syms.last_mut() {
        last.push_str("</w>");
    }
    let mut used = Vec::new();
    loop {
        let best = syms
            .windows(2)
            .filter_map(|w| ranks.get(&(w[0].as_str(), w[1].as_str())).copied())
            .min();
        let Some(rank) = best else { break };
        used.push(rank);
        let mut merged = Vec::with_capacity(syms.len());
        let mut i = 0;
        while i < syms.len() {
            if i + 1 < syms.len()
                && ranks.get(&(syms[i].as_str(), syms[i + 1].as_str())) == Some(&rank)
            {
                merged.push(format!("{}{}", syms[i], syms[i + 1]));
                i += 2;
            } else {
                merged.push(syms[i].clone());
                i += 1;
            }
        }
        syms = merged;
    }
    used
}

/// A cut-down CLIP vocabulary.
pub struct Vocabulary {
    /// token -> id
    pub vocab: Map<String, Value>,
    /// The kept merges in rank order.
    pub merges: Vec<String>,
}

impl Vocabulary {
    /// The byte symbols, the merges `texts` use, and the two special tokens.
    pub fn for_texts<'a>(texts: impl IntoIterator<Item = &'a str>) -> Self {
        let all = clip_merges();
        let ranks: HashMap<(&str, &str), usize> = all
            .iter()
            .enumerate()
            .map(|(i, &(a, b))| ((a, b), i))
            .collect();
        let symbols = byte_symbols();
        let mut enc = [' '; 256];
        for &(b, c) in &symbols {
            enc[b as usize] = c;
        }
        let unique: BTreeSet<String> = texts.into_iter().flat_map(words).collect();
        let used: BTreeSet<usize> = unique
            .iter()
            .flat_map(|w| merges_used(w, &ranks, &enc))
            .collect();
        let mut vocab = Map::new();
        let push = |tok: String, vocab: &mut Map<String, Value>| {
            let id = vocab.len();
            vocab.insert(tok, json!(id));
        };
        for &(_, c) in &symbols {
            push(c.to_string(), &mut vocab);
        }
        for &(_, c) in &symbols {
            push(format!("{c}</w>"), &mut vocab);
        }
        let mut merges = Vec::with_capacity(used.len());
        for &r in &used {
            let (a, b) = all[r];
            push(format!("{a}{b}"), &mut vocab);
            merges.push(format!("{a} {b}"));
        }
        push(BOS.into(), &mut vocab);
        push(EOS.into(), &mut vocab);
        Self { vocab, merges }
    }

    pub fn len(&self) -> usize {
        self.vocab.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vocab.is_empty()
    }

    /// Writes the four tokenizer files of the SD 1.x layout into `dir` (atomically each).
    pub fn write(&self, dir: &Path) -> Result<()> {
        use crate::fsutil::write_atomic;
        write_atomic(
            &dir.join("vocab.json"),
            serde_json::to_string(&self.vocab)?.as_bytes(),
        )?;
        let mut merges = String::from("#version: 0.2\n");
        for m in &self.merges {
            merges.push_str(m);
            merges.push('\n');
        }
        write_atomic(&dir.join("merges.txt"), merges.as_bytes())?;
        let config = json!({
            "add_prefix_space": false,
            "bos_token": BOS,
            "do_lower_case": true,
            "eos_token": EOS,
            "errors": "replace",
            "model_max_length": 77,
            "pad_token": EOS,
            "tokenizer_class": "CLIPTokenizer",
            "unk_token": EOS
        });
        write_atomic(
            &dir.join("tokenizer_config.json"),
            serde_json::to_string_pretty(&config)?.as_bytes(),
        )?;
        let special =
            json!({"bos_token": BOS, "eos_token": EOS, "pad_token": EOS, "unk_token": EOS});
        write_atomic(
            &dir.join("special_tokens_map.json"),
            serde_json::to_string_pretty(&special)?.as_bytes(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_like_clip() {
        assert_eq!(
            words("A Red mug, studio  photo 42"),
            ["a", "red", "mug", ",", "studio", "photo", "4", "2"]
        );
    }

    #[test]
    fn byte_symbols_are_clips_first_tokens() {
        let s = byte_symbols();
        assert_eq!(s.len(), 256);
        assert_eq!(s[0], (b'!', '!'));
        assert_eq!(s[188], (0, '\u{100}'));
        assert_eq!(s[255].1, '\u{143}');
    }

    #[test]
    fn keeps_the_merges_of_the_words() {
        let v = Vocabulary::for_texts(["a red mug"]);
        assert!(v.vocab.contains_key("red</w>") && v.vocab.contains_key("mug</w>"));
        assert_eq!(v.vocab[EOS], json!(v.len() - 1));
        assert!(v.len() < 600);
    }
}
