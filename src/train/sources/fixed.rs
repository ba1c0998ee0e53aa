//! The validation and prior sets and their deterministic loss. The training loss, over random
//! timesteps and noise, is too noisy to show deconvergence; this loss is computed on a fixed
//! set of images at fixed timesteps with fixed noise, identical at every validation and in
//! every run with the same data and `validation_seed`, so that its changes come from the
//! weights alone.
use crate::data::{Batches, Dataset, LoaderOptions};
use crate::pipelines::StableDiffusion;
use crate::train::objective::Objective;
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
                let post = crate::profile::time("vae encode", || sd.vae.encode(&px));
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
        objective: &Objective,
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
                        let noisy = objective.noisy(&x0, &eps, &ts);
                        let pred = sd.unet.forward(&noisy, &ts, &emb);
                        objective
                            .per_sample_error(&pred, &x0, &eps, &ts)
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
