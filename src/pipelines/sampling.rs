//! The denoising loop shared by text-to-image and image-to-image, as diffusers'
//! `StableDiffusionPipeline` / `StableDiffusionImg2ImgPipeline` run it: classifier-free guidance
//! in one batched UNet call, the scheduler's `scale_model_input` and `step`, and the VAE decode.
//!
//! Seeds: all random draws (initial noise, VAE posterior sample, ancestral noise) come from the
//! CPU default generator, seeded once with `tch::manual_seed`, in the order and shapes diffusers
//! draws from `generator=torch.Generator("cpu").manual_seed(seed)`, so both give the same image.
use super::StableDiffusion;
use crate::profile;
use crate::schedulers::Scheduler;
use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

/// Text conditioning for a batch: `[negative; positive]` embeddings when guidance is on.
pub struct Conditioning {
    pub embeddings: Tensor,
    pub guided: bool,
}

impl StableDiffusion {
    /// Text embeddings `[B, 77, D]` of prompts, with autograd (for text-encoder training).
    pub fn embed_prompts(&self, prompts: &[&str]) -> Result<Tensor> {
        let ids = self.prompt_ids(prompts)?;
        Ok(profile::time("text encoder", || {
            self.text_encoder.forward(&ids)
        }))
    }

    /// The token ids `[B, 77]` of prompts, on the model's device.
    pub fn prompt_ids(&self, prompts: &[&str]) -> Result<Tensor> {
        let mut ids = Vec::with_capacity(prompts.len() * 77);
        for p in prompts {
            ids.extend(self.tokenizer.encode(p)?);
        }
        Ok(Tensor::from_slice(&ids)
            .view([prompts.len() as i64, -1])
            .to_device(self.device))
    }

    /// Text embeddings `[1, 77, D]` of one prompt.
    pub fn encode_prompt(&self, prompt: &str) -> Result<Tensor> {
        let ids = self.tokenizer.encode(prompt)?;
        let ids = Tensor::from_slice(&ids).unsqueeze(0).to_device(self.device);
        // In the UNet's dtype (a no-op unless the text encoder's differs, as in training with
        // `model.weights_dtype`).
        let _stage = profile::scope("text encoder");
        Ok(tch::no_grad(|| self.text_encoder.forward(&ids)).to_kind(self.kind))
    }

    /// Conditioning for `n` images of one prompt; guidance > 1 adds the negative prompt's
    /// embeddings in front, as diffusers does (`do_classifier_free_guidance`).
    pub fn conditioning(
        &self,
        prompt: &str,
        negative: &str,
        guidance: f64,
        n: i64,
    ) -> Result<Conditioning> {
        let pos = self.encode_prompt(prompt)?.repeat([n, 1, 1]);
        if guidance > 1.0 {
            let neg = self.encode_prompt(negative)?.repeat([n, 1, 1]);
            Ok(Conditioning {
                embeddings: Tensor::cat(&[neg, pos], 0),
                guided: true,
            })
        } else {
            Ok(Conditioning {
                embeddings: pos,
                guided: false,
            })
        }
    }

    /// Runs the scheduler's steps from `start` on `latents` and returns the final latents.
    pub fn denoise(
        &self,
        scheduler: &mut dyn Scheduler,
        cond: &Conditioning,
        guidance: f64,
        mut latents: Tensor,
        start: usize,
        mut on_step: impl FnMut(usize, usize),
    ) -> Result<Tensor> {
        let timesteps: Vec<f64> = scheduler.timesteps().to_vec();
        let total = timesteps.len().saturating_sub(start);
        for (i, &t) in timesteps.iter().enumerate().skip(start) {
            let noise_pred = tch::no_grad(|| {
                let input = if cond.guided {
                    Tensor::cat(&[&latents, &latents], 0)
                } else {
                    latents.shallow_clone()
                };
                let input = scheduler.scale_model_input(&input, i);
                let t = Tensor::from(t).to_device(self.device);
                let _stage = profile::scope("unet");
                let out = self.unet.forward(&input, &t, &cond.embeddings);
                if cond.guided {
                    let chunks = out.chunk(2, 0);
                    &chunks[0] + (&chunks[1] - &chunks[0]) * guidance
                } else {
                    out
                }
            });
            let _stage = profile::scope("scheduler");
            latents = tch::no_grad(|| scheduler.step(&noise_pred, i, &latents))?;
            on_step(i + 1 - start, total);
        }
        Ok(latents)
    }

    /// Decodes latents to images in [0, 1], `[N, 3, H, W]`, fp32 on the CPU. On half precision
    /// the VAE runs in fp32 (as diffusers' `force_upcast`), so the decode cannot overflow.
    pub fn decode_latents(&self, latents: &Tensor) -> Result<Tensor> {
        let _stage = profile::scope("vae decode");
        let z = latents / self.vae.scaling_factor();
        let img = tch::no_grad(|| self.vae.decode(&z.to_kind(self.vae_kind)));
        let img = (img.to_kind(Kind::Float) / 2.0 + 0.5)
            .clamp(0.0, 1.0)
            .to_device(Device::Cpu);
        if !bool::try_from(img.isfinite().all())? {
            bail!("the decoded image contains NaN or infinite values");
        }
        Ok(img)
    }
}

/// Draws a standard-normal tensor on the CPU default generator in `kind` (diffusers'
/// `randn_tensor` with a CPU generator draws in the pipeline's dtype, and fp16 draws differ from
/// fp32 ones), then moves it to `device`.
pub fn cpu_randn(shape: &[i64], device: Device, kind: Kind) -> Tensor {
    Tensor::randn(shape, (kind, Device::Cpu)).to_device(device)
}

/// Images in [0, 1] `[N, 3, H, W]` to 8-bit RGB, rounding as diffusers' `numpy_to_pil`.
pub fn to_rgb8(images: &Tensor) -> Result<Vec<image::RgbImage>> {
    let n = images.size()[0];
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n {
        let img = (images.get(i) * 255.0)
            .round()
            .clamp(0.0, 255.0)
            .to_kind(Kind::Uint8)
            .permute([1, 2, 0])
            .contiguous();
        let (h, w) = (img.size()[0] as u32, img.size()[1] as u32);
        let data = Vec::<u8>::try_from(img.view([-1]))?;
        out.push(image::RgbImage::from_raw(w, h, data).expect("buffer sized from the tensor"));
    }
    Ok(out)
}
