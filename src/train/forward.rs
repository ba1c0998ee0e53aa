//! How the networks run in a training step: options of the forward pass, not of the loop.
//! Today autocast (`train.mixed_precision`, on CUDA); gradient checkpointing would be another
//! option here.
use super::config::{MixedPrecision, TrainSection};
use crate::pipelines::StableDiffusion;
use anyhow::Result;
use tch::{Device, Tensor};

/// The forward pass of training.
pub struct Forward {
    /// Run the UNet under autocast (weights and optimizer stay fp32).
    pub autocast: bool,
}

impl Forward {
    pub fn for_config(t: &TrainSection, device: Device) -> Self {
        Self {
            autocast: device.is_cuda() && t.mixed_precision != MixedPrecision::No,
        }
    }

    /// The text embeddings of `captions`; with gradients only when `grad` (a trained text
    /// path).
    pub fn embed(&self, sd: &StableDiffusion, captions: &[String], grad: bool) -> Result<Tensor> {
        let captions: Vec<&str> = captions.iter().map(String::as_str).collect();
        if grad {
            sd.embed_prompts(&captions)
        } else {
            tch::no_grad(|| sd.embed_prompts(&captions))
        }
    }

    /// The UNet's prediction for the noised latents.
    pub fn predict(
        &self,
        sd: &StableDiffusion,
        noisy: &Tensor,
        timesteps: &Tensor,
        embeddings: &Tensor,
    ) -> Tensor {
        tch::autocast(self.autocast, || {
            sd.unet.forward(noisy, timesteps, embeddings)
        })
    }
}
