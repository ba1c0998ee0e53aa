//! `train.cache_text_embeddings`: the frozen text encoder's output per caption, computed once.
//!
//! When no text path trains (no `train_text_encoder`, no text-encoder LoRA, no textual
//! inversion), a caption's embedding never changes, so a run that sees each caption many times
//! (thousands of steps over a few hundred images) can keep it instead of running CLIP again:
//! diffusers' training scripts have no such option. Only the captions a batch has not met yet
//! are encoded, together, in the order they first appear; the cache stops growing at
//! `budget_bytes` (later captions are then encoded every time, as without the cache).
use anyhow::Result;
use std::collections::HashMap;
use tch::Tensor;

/// Text embeddings by caption, within a memory budget.
pub struct TextCache {
    rows: HashMap<String, Tensor>,
    budget_bytes: u64,
    used_bytes: u64,
    /// Captions answered from the cache, and captions encoded.
    pub hits: u64,
    pub misses: u64,
}

impl TextCache {
    pub fn new(budget_bytes: u64) -> Self {
        Self {
            rows: HashMap::new(),
            budget_bytes,
            used_bytes: 0,
            hits: 0,
            misses: 0,
        }
    }

    /// The embeddings `[B, tokens, width]` of `captions`, encoding the ones not cached with
    /// `encode` (given the distinct new captions, it returns their embeddings in that order).
    pub fn embed(
        &mut self,
        captions: &[&str],
        encode: impl FnOnce(&[&str]) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let mut new: Vec<&str> = Vec::new();
        for c in captions {
            if !self.rows.contains_key(*c) && !new.contains(c) {
                new.push(c);
            }
        }
        let mut fresh: HashMap<&str, Tensor> = HashMap::new();
        if !new.is_empty() {
            let encoded = encode(&new)?;
            for (i, c) in new.iter().enumerate() {
                let row = encoded.get(i as i64).copy();
                let bytes = (row.numel() * row.kind().elt_size_in_bytes()) as u64;
                if self.used_bytes + bytes <= self.budget_bytes {
                    self.used_bytes += bytes;
                    self.rows.insert(c.to_string(), row);
                } else {
                    fresh.insert(c, row);
                }
            }
        }
        let rows: Vec<&Tensor> = captions
            .iter()
            .map(|c| match self.rows.get(*c) {
                Some(row) => row,
                None => &fresh[c],
            })
            .collect();
        let misses = new.len() as u64;
        self.misses += misses;
        self.hits += captions.len() as u64 - misses.min(captions.len() as u64);
        Ok(Tensor::stack(&rows, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use tch::{Device, Kind};

    /// A stand-in encoder: caption `c` gives a `[2, 3]` block filled with its length; records
    /// what it was asked.
    fn encoder(calls: &RefCell<Vec<Vec<String>>>) -> impl FnOnce(&[&str]) -> Result<Tensor> + '_ {
        move |cs: &[&str]| {
            calls
                .borrow_mut()
                .push(cs.iter().map(|c| c.to_string()).collect());
            let rows: Vec<Tensor> = cs
                .iter()
                .map(|c| Tensor::full([2, 3], c.len() as f64, (Kind::Float, Device::Cpu)))
                .collect();
            Ok(Tensor::stack(&rows, 0))
        }
    }

    fn lengths(t: &Tensor) -> Vec<f64> {
        (0..t.size()[0])
            .map(|i| t.get(i).mean(Kind::Float).double_value(&[]))
            .collect()
    }

    #[test]
    fn encodes_each_caption_once_and_keeps_the_batch_order() {
        let calls = RefCell::new(vec![]);
        let mut cache = TextCache::new(1 << 20);
        let a = cache
            .embed(&["mug", "a bottle", "mug"], encoder(&calls))
            .unwrap();
        assert_eq!(lengths(&a), [3.0, 8.0, 3.0]);
        let b = cache
            .embed(&["a bottle", "", "mug"], encoder(&calls))
            .unwrap();
        assert_eq!(lengths(&b), [8.0, 0.0, 3.0]);
        let c = cache.embed(&["mug", ""], encoder(&calls)).unwrap();
        assert_eq!(lengths(&c), [3.0, 0.0]);
        assert_eq!(*calls.borrow(), [vec!["mug", "a bottle"], vec![""]]);
        assert_eq!((cache.hits, cache.misses), (5, 3));
    }

    #[test]
    fn stops_growing_at_its_budget() {
        let calls = RefCell::new(vec![]);
        // room for one 2x3 fp32 row (24 bytes)
        let mut cache = TextCache::new(30);
        let a = cache.embed(&["mug", "cup"], encoder(&calls)).unwrap();
        assert_eq!(lengths(&a), [3.0, 3.0]);
        let b = cache.embed(&["cup", "mug"], encoder(&calls)).unwrap();
        assert_eq!(lengths(&b), [3.0, 3.0]);
        assert_eq!(*calls.borrow(), [vec!["mug", "cup"], vec!["cup"]]);
    }
}
