//! What gets gradients. A [`Trainable`] is one set of trained parameters: it knows how to
//! collect them for the optimizer, what to do after each optimizer step, and how to save and
//! load itself in its checkpoint formats. The trainer holds a set of them ([`Trainables`]) and
//! never names a model component itself.
//!
//! Today: [`FullUnet`] (every UNet weight, with its optional EMA), [`TextEncoder`] (every
//! CLIP text-encoder weight, with `train.train_text_encoder`), [`Lora`] (`[lora]`: the
//! models frozen, adapter matrices attached to their layers and saved as LoRA files) and
//! [`TextualInversion`] (`[textual_inversion]`: new token rows; with `[lora]` both train,
//! pivotal tuning).
mod lora;
mod text_encoder;
pub mod textual_inversion;
mod unet;

pub use lora::{matches as lora_target_matches, new_pair as new_lora_pair, Lora};
pub use text_encoder::TextEncoder;
pub use textual_inversion::TextualInversion;
pub use unet::FullUnet;

use super::checkpoint::TrainerState;
use super::config::ExperimentConfig;
use crate::pipelines::StableDiffusion;
use anyhow::{bail, Result};
use std::collections::HashMap;
use std::path::Path;
use tch::{Kind, Tensor};

/// One set of trained parameters (see the module docs).
pub trait Trainable {
    /// Its name in messages.
    fn name(&self) -> &'static str;

    /// The parameters the optimizer updates, under the names its saved state uses (unique
    /// across the set).
    fn parameters(&self, sd: &StableDiffusion) -> Vec<(String, Tensor)>;

    /// True when its gradients flow through the text encoder: prompts are then embedded with
    /// gradients, and validation embeds them again with the current weights.
    fn trains_text_path(&self) -> bool {
        false
    }

    /// Switches training-only behaviour (adapter dropout) on for a training forward pass and
    /// off for validation and sampling.
    fn set_training(&self, _sd: &StableDiffusion, _training: bool) {}

    /// Called after every optimizer step (an EMA update).
    fn after_step(&mut self, _sd: &StableDiffusion) {}

    /// EMA updates so far, for `state.json` (`None` without an EMA).
    fn ema_updates(&self) -> Option<u64> {
        None
    }

    /// Writes its files into the checkpoint folder `dir` being written, weights in `kind`.
    fn save(&self, sd: &StableDiffusion, dir: &Path, kind: Kind) -> Result<()>;

    /// Restores its weights (and EMA) from checkpoint `dir`, exactly as saved.
    fn load(&mut self, sd: &StableDiffusion, dir: &Path, state: &TrainerState) -> Result<()>;
}

/// The trainables of a run.
pub struct Trainables(Vec<Box<dyn Trainable>>);

impl Trainables {
    /// The trainables of a run: everything in `sd` is frozen first, and each trainable
    /// unfreezes (or adds) what it trains: the adapters with `[lora]` and the new token rows
    /// with `[textual_inversion]` (either, or both), else the UNet (and the text encoder with
    /// `train.train_text_encoder`).
    pub fn for_config(cfg: &ExperimentConfig, sd: &mut StableDiffusion) -> Result<Self> {
        let t = &cfg.train;
        sd.unet_vs.freeze();
        sd.text_encoder_vs.freeze();
        sd.vae_vs.freeze();
        let mut set: Vec<Box<dyn Trainable>> = Vec::new();
        if let Some(l) = &cfg.lora {
            set.push(Box::new(Lora::attach(sd, l)?));
        }
        if let Some(ti) = &cfg.textual_inversion {
            set.push(Box::new(TextualInversion::attach(sd, ti)?));
        }
        if !set.is_empty() {
            return Ok(Self(set));
        }
        let mut set: Vec<Box<dyn Trainable>> =
            vec![Box::new(FullUnet::attach(sd, t.ema.then_some(t.ema_decay)))];
        if t.train_text_encoder {
            set.push(Box::new(TextEncoder::attach(sd)));
        }
        Ok(Self(set))
    }

    /// See [`Trainable::set_training`].
    pub fn set_training(&self, sd: &StableDiffusion, training: bool) {
        for t in &self.0 {
            t.set_training(sd, training);
        }
    }

    /// Every trained parameter by name.
    pub fn parameters(&self, sd: &StableDiffusion) -> Result<HashMap<String, Tensor>> {
        let mut all = HashMap::new();
        for t in &self.0 {
            for (name, p) in t.parameters(sd) {
                if all.insert(name.clone(), p).is_some() {
                    bail!("{}: parameter '{name}' is trained twice", t.name());
                }
            }
        }
        Ok(all)
    }

    /// True when any trainable needs gradients through the text encoder.
    pub fn trains_text_path(&self) -> bool {
        self.0.iter().any(|t| t.trains_text_path())
    }

    pub fn after_step(&mut self, sd: &StableDiffusion) {
        for t in &mut self.0 {
            t.after_step(sd);
        }
    }

    /// EMA updates so far (0 without an EMA).
    pub fn ema_updates(&self) -> u64 {
        self.0.iter().find_map(|t| t.ema_updates()).unwrap_or(0)
    }

    /// Writes every trainable into the checkpoint folder `dir`, in order.
    pub fn save(&self, sd: &StableDiffusion, dir: &Path, kind: Kind) -> Result<()> {
        self.0.iter().try_for_each(|t| t.save(sd, dir, kind))
    }

    /// Restores every trainable from checkpoint `dir`.
    pub fn load(&mut self, sd: &StableDiffusion, dir: &Path, state: &TrainerState) -> Result<()> {
        self.0.iter_mut().try_for_each(|t| t.load(sd, dir, state))
    }
}

/// Named tensors sorted by name (the order of the safetensors files).
fn sorted(vars: HashMap<String, Tensor>) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vars.into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}
