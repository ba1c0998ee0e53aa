//! The training stream: the training set's batches in the loader's deterministic order, each
//! encoded to its VAE posterior (by the VAE, or read from the latent cache).
use super::{Example, Source};
use crate::data::{Batches, Dataset, LoaderOptions};
use crate::models::vae::DiagonalGaussian;
use crate::pipelines::StableDiffusion;
use anyhow::{Context, Result};
use std::sync::Arc;
use tch::{Kind, Tensor};

/// The training set as a [`Source`].
pub struct TrainingSource {
    batches: Batches,
    cache: Option<LatentCache>,
}

impl TrainingSource {
    /// The stream from micro-batch `start` on (`step * gradient_accumulation` on resume).
    pub fn new(
        dataset: Arc<Dataset>,
        opts: LoaderOptions,
        start: u64,
        cache: Option<LatentCache>,
    ) -> Result<Self> {
        let batches = Batches::new(dataset, opts, start)?;
        Ok(Self { batches, cache })
    }
}

impl Source for TrainingSource {
    fn next(&mut self, sd: &StableDiffusion) -> Result<Example> {
        let batch = crate::profile::time("images", || self.batches.next())
            .context("the training data loader ended")??;
        let _stage = crate::profile::scope("vae encode");
        let posterior = match &self.cache {
            Some(c) => c.posterior(&batch.indices)?,
            None => tch::no_grad(|| {
                let px = batch.pixels.to_device(sd.device).to_kind(sd.vae_kind);
                sd.vae.encode(&px).to_kind(Kind::Float)
            }),
        };
        Ok(Example {
            posterior,
            captions: batch.captions,
            epoch: batch.epoch as u64,
            prior_rows: 0,
        })
    }
}

/// `data.latent_cache`: the VAE posterior (mean and std) of every training image, computed once;
/// each step still draws a fresh sample from it, with the same draws as without the cache.
/// Kept per image, since with aspect buckets images have different latent sizes.
pub struct LatentCache {
    entries: Vec<Option<(Tensor, Tensor)>>,
}

impl LatentCache {
    pub fn build(sd: &StableDiffusion, dataset: Arc<Dataset>, opts: LoaderOptions) -> Result<Self> {
        let mut entries: Vec<Option<(Tensor, Tensor)>> = (0..dataset.len()).map(|_| None).collect();
        for batch in Batches::one_epoch(dataset, opts)? {
            let batch = batch?;
            let post = tch::no_grad(|| {
                sd.vae
                    .encode(&batch.pixels.to_device(sd.device).to_kind(sd.vae_kind))
                    .to_kind(Kind::Float)
            });
            for (row, &i) in batch.indices.iter().enumerate() {
                entries[i] = Some((post.mean.get(row as i64), post.std.get(row as i64)));
            }
        }
        if entries.iter().all(Option::is_none) {
            anyhow::bail!("the latent cache is empty: no training images");
        }
        Ok(Self { entries })
    }

    /// The cached posterior of dataset samples `indices`.
    pub fn posterior(&self, indices: &[usize]) -> Result<DiagonalGaussian> {
        let mut means = Vec::with_capacity(indices.len());
        let mut stds = Vec::with_capacity(indices.len());
        for &i in indices {
            let Some((m, s)) = self.entries.get(i).and_then(Option::as_ref) else {
                anyhow::bail!("the latent cache has no entry for training image {i}");
            };
            means.push(m.shallow_clone());
            stds.push(s.shallow_clone());
        }
        let std = Tensor::stack(&stds, 0);
        Ok(DiagonalGaussian {
            mean: Tensor::stack(&means, 0),
            logvar: (&std * &std).log(),
            std,
        })
    }
}
