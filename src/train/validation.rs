//! Deterministic validation loss. The training loss, over random timesteps and noise, is too
//! noisy to show deconvergence; this loss is computed on a fixed set of images at fixed
//! timesteps with fixed noise, identical at every validation and in every run with the same
//! data and `validation_seed`, so that its changes come from the weights alone.
use super::objective::{per_sample_mse, target, NoiseSchedule, PredictionType};
use crate::data::{Batches, Dataset, LoaderOptions};
use crate::models::vae::DiagonalGaussian;
use crate::pipelines::StableDiffusion;
use anyhow::Result;
use std::sync::Arc;
use tch::{Kind, Tensor};

/// `k` timesteps spread evenly over the training schedule (bin centres).
pub fn fixed_timesteps(num_train: i64, k: usize) -> Vec<i64> {
    (0..k)
        .map(|i| ((i as f64 + 0.5) * num_train as f64 / k as f64) as i64)
        .collect()
}

/// Latents, text embeddings and per-timestep noise of a validation set, computed once.
pub struct FixedSet {
    latents: Tensor,
    embeddings: Tensor,
    captions: Vec<String>,
    noises: Vec<Tensor>,
    pub timesteps: Vec<i64>,
}

impl FixedSet {
    /// Encodes every sample of `dataset` (posterior sample drawn with `seed`); `None` for an
    /// empty set.
    pub fn build(
        sd: &StableDiffusion,
        dataset: Arc<Dataset>,
        opts: LoaderOptions,
        timesteps: Vec<i64>,
        seed: u64,
    ) -> Result<Option<Self>> {
        if dataset.is_empty() {
            return Ok(None);
        }
        let mut latents = Vec::new();
        let mut embeddings = Vec::new();
        let mut captions = Vec::new();
        tch::manual_seed(seed as i64);
        for batch in Batches::one_epoch(dataset, opts)? {
            let batch = batch?;
            tch::no_grad(|| -> Result<()> {
                let px = batch.pixels.to_device(sd.device).to_kind(sd.vae_kind);
                let post = sd.vae.encode(&px);
                latents.push((post.sample() * sd.vae.scaling_factor()).to_kind(sd.kind));
                for caption in &batch.captions {
                    embeddings.push(sd.encode_prompt(caption)?);
                    captions.push(caption.clone());
                }
                Ok(())
            })?;
        }
        let latents = Tensor::cat(&latents, 0);
        let embeddings = Tensor::cat(&embeddings, 0);
        let noises = (0..timesteps.len())
            .map(|k| {
                tch::manual_seed(seed as i64 + 1 + k as i64);
                Tensor::randn(latents.size(), (Kind::Float, tch::Device::Cpu))
                    .to_device(sd.device)
                    .to_kind(sd.kind)
            })
            .collect();
        Ok(Some(Self {
            latents,
            embeddings,
            captions,
            noises,
            timesteps,
        }))
    }

    pub fn len(&self) -> i64 {
        self.latents.size()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Mean MSE over samples and timesteps, and the mean per timestep. With
    /// `fresh_text_embeddings` (the text encoder is being trained) the captions are encoded
    /// again with the current weights.
    pub fn loss(
        &self,
        sd: &StableDiffusion,
        schedule: &NoiseSchedule,
        prediction: PredictionType,
        batch: i64,
        fresh_text_embeddings: bool,
    ) -> Result<(f64, Vec<f64>)> {
        let n = self.len();
        let fresh;
        let embeddings = if fresh_text_embeddings {
            let captions: Vec<&str> = self.captions.iter().map(String::as_str).collect();
            fresh = tch::no_grad(|| sd.embed_prompts(&captions))?;
            &fresh
        } else {
            &self.embeddings
        };
        let per_t: Vec<f64> = self
            .timesteps
            .iter()
            .zip(&self.noises)
            .map(|(&t, noise)| {
                let mut total = 0.0;
                let mut start = 0;
                while start < n {
                    let len = batch.min(n - start);
                    let x0 = self.latents.narrow(0, start, len);
                    let eps = noise.narrow(0, start, len);
                    let emb = embeddings.narrow(0, start, len);
                    let ts = Tensor::full([len], t, (Kind::Int64, sd.device));
                    let err = tch::no_grad(|| {
                        let noisy = schedule.add_noise(&x0, &eps, &ts);
                        let pred = sd.unet.forward(&noisy, &ts, &emb);
                        per_sample_mse(&pred, &target(schedule, prediction, &x0, &eps, &ts))
                            .sum(Kind::Double)
                    });
                    total += f64::try_from(err).unwrap_or(f64::NAN);
                    start += len;
                }
                total / n as f64
            })
            .collect();
        let mean = per_t.iter().sum::<f64>() / per_t.len().max(1) as f64;
        Ok((mean, per_t))
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
