//! The full UNet as a trainable: every weight gets gradients (diffusers'
//! `train_text_to_image.py`), with an optional EMA of them saved beside it.
use super::{sorted, Trainable};
use crate::pipelines::StableDiffusion;
use crate::train::checkpoint::{self, TrainerState, UNET, UNET_EMA};
use crate::train::ema::Ema;
use crate::weights::WeightSet;
use anyhow::Result;
use std::path::Path;
use tch::{Kind, Tensor};

/// Every UNet weight; saved as `unet/` (and `unet_ema/`) in the diffusers layout.
pub struct FullUnet {
    ema: Option<Ema>,
}

impl FullUnet {
    /// Unfreezes the UNet; with `ema_decay`, starts an EMA from its current weights.
    pub fn attach(sd: &mut StableDiffusion, ema_decay: Option<f64>) -> Self {
        sd.unet_vs.unfreeze();
        Self {
            ema: ema_decay.map(|d| Ema::new(&sd.unet_vs, d)),
        }
    }
}

impl Trainable for FullUnet {
    fn name(&self) -> &'static str {
        "unet"
    }

    fn parameters(&self, sd: &StableDiffusion) -> Vec<(String, Tensor)> {
        sd.unet_vs.variables().into_iter().collect()
    }

    fn after_step(&mut self, sd: &StableDiffusion) {
        if let Some(e) = self.ema.as_mut() {
            e.update(&sd.unet_vs);
        }
    }

    fn ema_updates(&self) -> Option<u64> {
        self.ema.as_ref().map(Ema::updates)
    }

    fn save(&self, sd: &StableDiffusion, dir: &Path, kind: Kind) -> Result<()> {
        let config = &sd.unet_config_file;
        checkpoint::write_component(dir, UNET, config, &sorted(sd.unet_vs.variables()), kind)?;
        if let Some(e) = &self.ema {
            checkpoint::write_component(dir, UNET_EMA, config, e.tensors(), kind)?;
        }
        Ok(())
    }

    fn load(&mut self, sd: &StableDiffusion, dir: &Path, state: &TrainerState) -> Result<()> {
        let read = |c| WeightSet::read_files(&[checkpoint::resume_weights(dir, c)]);
        read(UNET)?.copy_into(&sd.unet_vs, "unet", |_| false)?;
        if let Some(e) = self.ema.as_mut() {
            let w = read(UNET_EMA)?;
            e.load(
                w.iter()
                    .map(|(n, en)| (n.to_string(), en.tensor.shallow_clone()))
                    .collect(),
            )?;
            e.set_updates(state.ema_updates);
        }
        Ok(())
    }
}
