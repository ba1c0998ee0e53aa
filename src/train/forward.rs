//! How the networks run in a training step: options of the forward pass, not of the loop.
//! Today autocast (`train.mixed_precision`: bf16 on CPU and CUDA, fp16 on CUDA and CPU, through
//! [`crate::device::autocast`]); gradient checkpointing would be another option here.
use super::config::{MixedPrecision, TrainSection};
use crate::device::autocast;
use crate::pipelines::StableDiffusion;
use anyhow::{anyhow, Result};
use tch::{Device, Kind, Tensor};

/// The forward pass of training.
pub struct Forward {
    /// Autocast of the UNet's forward pass, on this device in this dtype (weights and
    /// optimizer stay fp32); `None`: plain fp32.
    pub autocast: Option<(Device, Kind)>,
}

impl Forward {
    pub fn for_config(t: &TrainSection, device: Device) -> Result<Self> {
        let dtype = match t.mixed_precision {
            MixedPrecision::No => return Ok(Self { autocast: None }),
            MixedPrecision::Fp16 => Kind::Half,
            MixedPrecision::Bf16 => Kind::BFloat16,
        };
        autocast::check(device, dtype)
            .map_err(|e| anyhow!("train.mixed_precision = {:?}: {e}", t.mixed_precision))?;
        Ok(Self {
            autocast: Some((device, dtype)),
        })
    }

    /// The text embeddings of `captions`; with gradients, and under autocast, only when `grad`
    /// (a trained text path; a frozen text encoder runs in its weights' dtype, as in
    /// diffusers' scripts, where only the trained models are wrapped in autocast).
    pub fn embed(&self, sd: &StableDiffusion, captions: &[String], grad: bool) -> Result<Tensor> {
        let captions: Vec<&str> = captions.iter().map(String::as_str).collect();
        if grad {
            self.autocast(|| sd.embed_prompts(&captions))
        } else {
            tch::no_grad(|| sd.embed_prompts(&captions))
        }
    }

    /// The UNet's prediction for the noised latents, in fp32 (as diffusers' training scripts
    /// take `model_pred.float()` for the loss).
    pub fn predict(
        &self,
        sd: &StableDiffusion,
        noisy: &Tensor,
        timesteps: &Tensor,
        embeddings: &Tensor,
    ) -> Tensor {
        // In the UNet's dtype: a frozen half-precision UNet (`model.weights_dtype`) takes
        // half-precision inputs; a no-op otherwise.
        let (noisy, embeddings) = (noisy.to_kind(sd.kind), embeddings.to_kind(sd.kind));
        self.autocast(|| sd.unet.forward(&noisy, timesteps, &embeddings))
            .to_kind(Kind::Float)
    }

    /// `f` under this pass's autocast, if any.
    fn autocast<T>(&self, f: impl FnOnce() -> T) -> T {
        match self.autocast {
            Some((device, dtype)) => autocast::autocast(device, dtype, f),
            None => f(),
        }
    }
}
