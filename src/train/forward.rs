//! How the networks run in a training step: options of the forward pass, not of the loop:
//! autocast (`train.mixed_precision`: bf16 or fp16 on CPU and CUDA, through
//! [`crate::device::autocast`]) and gradient checkpointing (`train.gradient_checkpointing`, see
//! [`super::checkpointing`]), and the frozen text encoder's embeddings kept per caption
//! (`train.cache_text_embeddings`, see [`super::text_cache`]).
use super::checkpointing::Tape;
use super::config::TrainSection;
use super::text_cache::TextCache;
use crate::device::autocast;
use crate::pipelines::StableDiffusion;
use anyhow::{anyhow, Result};
use std::cell::RefCell;
use tch::{Device, Kind, Tensor};

/// The forward pass of training, and its backward pass.
#[derive(Default)]
pub struct Forward {
    /// Autocast of the trained networks' forward pass, on this device in this dtype (weights
    /// and optimizer stay fp32); `None`: plain fp32.
    pub autocast: Option<(Device, Kind)>,
    /// Keep only the inputs of each UNet resnet / transformer (and text-encoder layer when the
    /// text path trains) and recompute them in [`Forward::backward`].
    pub gradient_checkpointing: bool,
    /// The segments of the pass since the last [`Forward::embed`], when checkpointing.
    tape: RefCell<Tape<StableDiffusion>>,
    /// Embeddings of captions met before, for a frozen text path (`None`: always encode).
    pub text_cache: Option<RefCell<TextCache>>,
}

/// The memory `train.cache_text_embeddings` may use: about 4500 captions of SD 1.x (77 tokens
/// of 768 fp32 values each).
pub const TEXT_CACHE_BUDGET_BYTES: u64 = 1 << 30;

impl Forward {
    pub fn for_config(t: &TrainSection, device: Device) -> Result<Self> {
        let dtype = t.mixed_precision.kind();
        if let Some(dtype) = dtype {
            autocast::check(device, dtype)
                .map_err(|e| anyhow!("train.mixed_precision = {:?}: {e}", t.mixed_precision))?;
        }
        Ok(Self {
            autocast: dtype.map(|d| (device, d)),
            gradient_checkpointing: t.gradient_checkpointing,
            tape: RefCell::default(),
            text_cache: t
                .cache_text_embeddings
                .then(|| RefCell::new(TextCache::new(TEXT_CACHE_BUDGET_BYTES))),
        })
    }

    /// The text embeddings of `captions`; with gradients, and under autocast, only when `grad`
    /// (a trained text path; a frozen text encoder runs in its weights' dtype, as in
    /// diffusers' scripts, where only the trained models are wrapped in autocast; from the
    /// cache when there is one). Starts a new pass.
    pub fn embed(&self, sd: &StableDiffusion, captions: &[String], grad: bool) -> Result<Tensor> {
        let captions: Vec<&str> = captions.iter().map(String::as_str).collect();
        let mut tape = self.tape.replace(Tape::default());
        if !grad {
            let encode = |c: &[&str]| tch::no_grad(|| sd.embed_prompts(c));
            return match &self.text_cache {
                Some(cache) => cache.borrow_mut().embed(&captions, encode),
                None => encode(&captions),
            };
        }
        if !self.gradient_checkpointing {
            return self.autocast(|| sd.embed_prompts(&captions));
        }
        let ids = sd.prompt_ids(&captions)?;
        let text = &sd.text_encoder;
        let mut run = tape.recorder(text, |sd| &sd.text_encoder, true);
        let embeddings = self.autocast(|| text.forward_segments(&ids, 0, &mut run));
        *self.tape.borrow_mut() = tape;
        Ok(embeddings)
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
        let unet = &sd.unet;
        self.autocast(|| {
            if !self.gradient_checkpointing {
                return unet.forward(&noisy, timesteps, &embeddings);
            }
            let mut tape = self.tape.borrow_mut();
            let mut run = tape.recorder(unet, |sd| &sd.unet, true);
            unet.forward_segments(&noisy, timesteps, &embeddings, &mut run)
        })
        .to_kind(Kind::Float)
    }

    /// Back-propagates `loss` (what the trainer would call `backward` on): through the graph
    /// it has, then, when checkpointing, through the pass's segments recomputed.
    pub fn backward(&self, sd: &StableDiffusion, loss: &Tensor) {
        loss.backward();
        let tape = self.tape.take();
        tape.backward(sd, &|recompute| self.autocast(recompute));
    }

    /// `f` under this pass's autocast, if any.
    fn autocast<T>(&self, f: impl FnOnce() -> T) -> T {
        autocast::autocast_if(self.autocast, f)
    }
}
