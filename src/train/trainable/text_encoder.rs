//! The CLIP text encoder as a trainable (`train.train_text_encoder`): every weight gets
//! gradients; saved as `text_encoder/` in the transformers layout.
use super::{sorted, Trainable};
use crate::pipelines::StableDiffusion;
use crate::train::checkpoint::{self, TrainerState, TEXT_ENCODER};
use crate::weights::WeightSet;
use anyhow::Result;
use std::path::Path;
use tch::{Kind, Tensor};

/// The prefix of its parameters' names in the optimizer state.
const PREFIX: &str = "text_encoder.";

/// Every text-encoder weight.
pub struct TextEncoder;

impl TextEncoder {
    /// Unfreezes the text encoder.
    pub fn attach(sd: &mut StableDiffusion) -> Self {
        sd.text_encoder_vs.unfreeze();
        Self
    }
}

impl Trainable for TextEncoder {
    fn name(&self) -> &'static str {
        "text_encoder"
    }

    fn parameters(&self, sd: &StableDiffusion) -> Vec<(String, Tensor)> {
        sd.text_encoder_vs
            .variables()
            .into_iter()
            .map(|(n, v)| (format!("{PREFIX}{n}"), v))
            .collect()
    }

    fn trains_text_path(&self) -> bool {
        true
    }

    fn save(&self, sd: &StableDiffusion, dir: &Path, kind: Kind) -> Result<()> {
        let tensors = sorted(sd.text_encoder_vs.variables());
        let config = &sd.text_encoder_config_file;
        checkpoint::write_component(dir, TEXT_ENCODER, config, &tensors, kind)
    }

    fn load(&mut self, sd: &StableDiffusion, dir: &Path, _state: &TrainerState) -> Result<()> {
        let w = WeightSet::read_files(&[checkpoint::resume_weights(dir, TEXT_ENCODER)])?;
        crate::pipelines::normalize_text_encoder_names(w).copy_into(
            &sd.text_encoder_vs,
            "text_encoder",
            |n| n.ends_with("position_ids"),
        )
    }
}
