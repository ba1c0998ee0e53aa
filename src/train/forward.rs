//! How the networks run in a training step: options of the forward pass, not of the loop:
//! autocast (`train.mixed_precision`, on CUDA) and gradient checkpointing
//! (`train.gradient_checkpointing`, see [`super::checkpointing`]).
use super::checkpointing::Tape;
use super::config::{MixedPrecision, TrainSection};
use crate::pipelines::StableDiffusion;
use anyhow::Result;
use std::cell::RefCell;
use tch::{Device, Tensor};

/// The forward pass of training, and its backward pass.
#[derive(Default)]
pub struct Forward {
    /// Run the UNet under autocast (weights and optimizer stay fp32).
    pub autocast: bool,
    /// Keep only the inputs of each UNet resnet / transformer (and text-encoder layer when the
    /// text path trains) and recompute them in [`Forward::backward`].
    pub gradient_checkpointing: bool,
    /// The segments of the pass since the last [`Forward::embed`], when checkpointing.
    tape: RefCell<Tape<StableDiffusion>>,
}

impl Forward {
    pub fn for_config(t: &TrainSection, device: Device) -> Self {
        Self {
            autocast: device.is_cuda() && t.mixed_precision != MixedPrecision::No,
            gradient_checkpointing: t.gradient_checkpointing,
            tape: RefCell::default(),
        }
    }

    /// The text embeddings of `captions`; with gradients only when `grad` (a trained text
    /// path). Starts a new pass.
    pub fn embed(&self, sd: &StableDiffusion, captions: &[String], grad: bool) -> Result<Tensor> {
        let captions: Vec<&str> = captions.iter().map(String::as_str).collect();
        let mut tape = self.tape.replace(Tape::default());
        if !grad {
            return tch::no_grad(|| sd.embed_prompts(&captions));
        }
        if !self.gradient_checkpointing {
            return sd.embed_prompts(&captions);
        }
        let ids = sd.prompt_ids(&captions)?;
        let text = &sd.text_encoder;
        let mut run = tape.recorder(text, |sd| &sd.text_encoder, false);
        let embeddings = text.forward_segments(&ids, 0, &mut run);
        *self.tape.borrow_mut() = tape;
        Ok(embeddings)
    }

    /// The UNet's prediction for the noised latents.
    pub fn predict(
        &self,
        sd: &StableDiffusion,
        noisy: &Tensor,
        timesteps: &Tensor,
        embeddings: &Tensor,
    ) -> Tensor {
        let unet = &sd.unet;
        self.unet_autocast(|| {
            if !self.gradient_checkpointing {
                return unet.forward(noisy, timesteps, embeddings);
            }
            let mut tape = self.tape.borrow_mut();
            let mut run = tape.recorder(unet, |sd| &sd.unet, true);
            unet.forward_segments(noisy, timesteps, embeddings, &mut run)
        })
    }

    /// Back-propagates `loss` (what the trainer would call `backward` on): through the graph
    /// it has, then, when checkpointing, through the pass's segments recomputed.
    pub fn backward(&self, sd: &StableDiffusion, loss: &Tensor) {
        loss.backward();
        let tape = self.tape.take();
        tape.backward(sd, &|recompute| self.unet_autocast(recompute));
    }

    /// Runs `f` as the UNet runs in training: under autocast when it is on.
    fn unet_autocast<T>(&self, f: impl FnOnce() -> T) -> T {
        tch::autocast(self.autocast, f)
    }
}
