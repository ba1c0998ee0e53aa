//! Value ranges and consistency of a typed config; every error names the dotted key.
use super::{
    DataSection, DreamBoothSection, ExperimentConfig, LoraSection, SweepMode, SweepSection,
    TextualInversionSection, TrainSection,
};
use anyhow::{bail, Result};
use std::collections::BTreeSet;

impl ExperimentConfig {
    /// Checks value ranges and consistency; errors name the dotted key.
    pub fn validate(&self) -> Result<()> {
        if self.experiment.trim().is_empty() {
            bail!("experiment: must not be empty");
        }
        validate_train(&self.train)?;
        self.monitor.validate()?;
        if self.train.validation_timesteps == 0 {
            bail!("train.validation_timesteps: must be at least 1");
        }
        validate_data(&self.data)?;
        if let Some(l) = &self.lora {
            validate_lora(l, &self.train)?;
        }
        if let Some(db) = &self.dreambooth {
            validate_dreambooth(db)?;
            if db.class_prompt.is_some() && self.data.prior_mix > 0.0 {
                bail!("data.prior_mix: not with dreambooth.class_prompt (the class images are the DreamBooth run's prior batches)");
            }
            if self.data.captions.is_some() && !db.instance_captions {
                bail!("data.captions: DreamBooth captions every instance image with dreambooth.instance_prompt; set dreambooth.instance_captions = true to use the captions file");
            }
        }
        if let Some(ti) = &self.textual_inversion {
            validate_textual_inversion(ti, &self.train)?;
            if self.data.captions.is_some() && ti.prompts != super::TiPrompts::Captions {
                bail!("data.captions: textual inversion captions the images with templates; set textual_inversion.prompts = \"captions\" to use the captions file");
            }
        }
        if let Some(s) = &self.sweep {
            validate_sweep(s)?;
        }
        Ok(())
    }
}

/// `[lora]`: ranks, alphas, targets, and what does not combine with adapters.
fn validate_lora(l: &LoraSection, t: &TrainSection) -> Result<()> {
    if l.rank < 1 {
        bail!("lora.rank: must be at least 1, found {}", l.rank);
    }
    if l.conv_rank < 0 {
        bail!(
            "lora.conv_rank: must be 0 (no LoCon) or more, found {}",
            l.conv_rank
        );
    }
    for (k, v) in [("alpha", l.alpha), ("conv_alpha", l.conv_alpha)] {
        if !(v.is_finite() && v > 0.0) {
            bail!("lora.{k}: must be a finite number > 0, found {v}");
        }
    }
    if !(0.0..1.0).contains(&l.dropout) {
        bail!("lora.dropout: must be in [0, 1), found {}", l.dropout);
    }
    if l.targets.is_empty() && l.conv_rank == 0 {
        bail!("lora.targets: must name at least one layer (e.g. [\"to_q\", \"to_v\"])");
    }
    if l.text_encoder && l.text_targets.is_empty() {
        bail!("lora.text_targets: must name at least one layer with lora.text_encoder = true");
    }
    if t.train_text_encoder {
        bail!("train.train_text_encoder: fine-tunes the whole text encoder, which a LoRA run keeps frozen; use lora.text_encoder = true for text-encoder adapters");
    }
    if t.ema {
        bail!("train.ema: not available for LoRA runs (the adapters are saved as trained)");
    }
    if l.dropout > 0.0 && t.gradient_checkpointing {
        bail!("lora.dropout: must be 0 with train.gradient_checkpointing = true (the recomputed layers cannot replay the dropout masks)");
    }
    Ok(())
}

/// `[dreambooth]`: prompts, the class set and its sampling.
fn validate_dreambooth(db: &DreamBoothSection) -> Result<()> {
    if db.instance_prompt.trim().is_empty() && !db.instance_captions {
        bail!("dreambooth.instance_prompt: must not be empty (e.g. \"a photo of zwx handbag\"), or set dreambooth.instance_captions = true");
    }
    if db
        .class_prompt
        .as_deref()
        .is_some_and(|p| p.trim().is_empty())
    {
        bail!("dreambooth.class_prompt: must not be empty (e.g. \"a photo of a handbag\"); leave it unset for no prior preservation");
    }
    if db.class_prompt.is_none() && db.class_images.is_some() {
        bail!("dreambooth.class_images: needs dreambooth.class_prompt (the class images' prompt)");
    }
    if db.class_prompt.is_some() && db.num_class_images == 0 {
        bail!("dreambooth.num_class_images: must be at least 1 with a class_prompt");
    }
    if !(db.prior_loss_weight.is_finite() && db.prior_loss_weight >= 0.0) {
        bail!(
            "dreambooth.prior_loss_weight: must be a finite number >= 0, found {}",
            db.prior_loss_weight
        );
    }
    if db.class_steps == 0 {
        bail!("dreambooth.class_steps: must be at least 1");
    }
    if !db.class_guidance.is_finite() {
        bail!(
            "dreambooth.class_guidance: must be a finite number, found {}",
            db.class_guidance
        );
    }
    if let Some(s) = &db.class_sampler {
        if !crate::schedulers::SAMPLERS.contains(&s.as_str()) {
            bail!(
                "dreambooth.class_sampler: unknown sampler '{s}' (one of {})",
                crate::schedulers::SAMPLERS.join(", ")
            );
        }
    }
    Ok(())
}

/// `[textual_inversion]`: the token, its initializer and vectors.
fn validate_textual_inversion(ti: &TextualInversionSection, t: &TrainSection) -> Result<()> {
    let token = &ti.token;
    if token.is_empty() || token.chars().any(char::is_whitespace) {
        bail!("textual_inversion.token: must be one word without spaces (e.g. \"<zwx-bag>\"), found {token:?}");
    }
    if token.to_lowercase() != *token {
        bail!("textual_inversion.token: must be lower case ({token:?}): CLIP's tokenizers match added tokens case-insensitively and diffusers' prompt rewrite then misses it");
    }
    if ti.initializer.trim().is_empty() {
        bail!("textual_inversion.initializer: must name a word (e.g. \"bag\") whose embedding the new vectors start from");
    }
    if ti.num_vectors < 1 {
        bail!(
            "textual_inversion.num_vectors: must be at least 1, found {}",
            ti.num_vectors
        );
    }
    if t.train_text_encoder {
        bail!("train.train_text_encoder: not with [textual_inversion], which trains only the new token vectors");
    }
    if t.ema {
        bail!("train.ema: not available for textual inversion (the vectors are saved as trained)");
    }
    Ok(())
}

/// `train.adafactor_*`: the ranges transformers' Adafactor works in.
fn validate_adafactor(t: &TrainSection) -> Result<()> {
    let positive = [
        ("adafactor_eps", t.adafactor_eps),
        ("adafactor_clip_threshold", t.adafactor_clip_threshold),
    ];
    for (k, v) in positive {
        if !(v.is_finite() && v > 0.0) {
            bail!("train.{k}: must be a finite number > 0, found {v}");
        }
    }
    let d = t.adafactor_decay_rate;
    if !(d.is_finite() && d <= 0.0) {
        bail!("train.adafactor_decay_rate: must be a finite number <= 0, found {d}");
    }
    if let Some(b) = t.adafactor_beta1 {
        if !(0.0..1.0).contains(&b) {
            bail!("train.adafactor_beta1: must be in [0, 1), found {b}");
        }
    }
    let wd = t.adafactor_weight_decay;
    if !(wd.is_finite() && wd >= 0.0) {
        bail!("train.adafactor_weight_decay: must be a finite number >= 0, found {wd}");
    }
    Ok(())
}

/// `[train]`: optimisation ranges (`validation_timesteps` is checked after `[monitor]`).
fn validate_train(t: &TrainSection) -> Result<()> {
    if t.steps == 0 {
        bail!("train.steps: must be at least 1");
    }
    if t.batch_size == 0 {
        bail!("train.batch_size: must be at least 1");
    }
    if t.gradient_accumulation == 0 {
        bail!("train.gradient_accumulation: must be at least 1");
    }
    if !(t.learning_rate.is_finite() && t.learning_rate > 0.0) {
        bail!(
            "train.learning_rate: must be a finite number > 0, found {}",
            t.learning_rate
        );
    }
    for (k, v) in [("adam_beta1", t.adam_beta1), ("adam_beta2", t.adam_beta2)] {
        if !(0.0..1.0).contains(&v) {
            bail!("train.{k}: must be in [0, 1), found {v}");
        }
    }
    if !(t.adam_weight_decay.is_finite() && t.adam_weight_decay >= 0.0) {
        bail!(
            "train.adam_weight_decay: must be a finite number >= 0, found {}",
            t.adam_weight_decay
        );
    }
    if !(t.adam_epsilon.is_finite() && t.adam_epsilon > 0.0) {
        bail!(
            "train.adam_epsilon: must be a finite number > 0, found {}",
            t.adam_epsilon
        );
    }
    validate_adafactor(t)?;
    if t.max_grad_norm.is_nan() || t.max_grad_norm <= 0.0 {
        bail!(
            "train.max_grad_norm: must be > 0, found {}",
            t.max_grad_norm
        );
    }
    if !(0.0..=1.0).contains(&t.ema_decay) {
        bail!("train.ema_decay: must be in [0, 1], found {}", t.ema_decay);
    }
    if let Some(g) = t.snr_gamma {
        if !(g.is_finite() && g > 0.0) {
            bail!("train.snr_gamma: must be a finite number > 0, found {g}");
        }
    }
    if !(t.noise_offset.is_finite() && t.noise_offset >= 0.0) {
        bail!(
            "train.noise_offset: must be a finite number >= 0, found {}",
            t.noise_offset
        );
    }
    if t.checkpoints_total_limit == Some(0) {
        bail!("train.checkpoints_total_limit: must be at least 1 (leave it unset to keep every checkpoint)");
    }
    if t.dist_timeout_s == 0 {
        bail!("train.dist_timeout_s: must be at least 1 second");
    }
    Ok(())
}

/// `[data]`: resolution, split, caption and bucket settings.
fn validate_data(d: &DataSection) -> Result<()> {
    if d.resolution == 0 || !d.resolution.is_multiple_of(8) {
        bail!(
            "data.resolution: must be a positive multiple of 8, found {}",
            d.resolution
        );
    }
    if let Some(v) = d.validation_split_setting {
        if !(0.0..1.0).contains(&v) {
            bail!("data.validation_split: must be in [0, 1), found {v}");
        }
        if v > 0.0 && d.validation_images.is_some() {
            bail!("data.validation_split: give either a split or data.validation_images, not both");
        }
    }
    if !(0.0..1.0).contains(&d.prior_mix) {
        bail!("data.prior_mix: must be in [0, 1), found {}", d.prior_mix);
    }
    if d.prior_mix > 0.0 && d.prior_images.is_none() {
        bail!("data.prior_mix: needs data.prior_images (the images to mix in)");
    }
    if d.validation_captions.is_some() && d.validation_images.is_none() {
        bail!("data.validation_captions: needs data.validation_images");
    }
    if d.prior_captions.is_some() && d.prior_images.is_none() {
        bail!("data.prior_captions: needs data.prior_images");
    }
    if !(0.0..=1.0).contains(&d.caption_dropout) {
        bail!(
            "data.caption_dropout: must be in [0, 1], found {}",
            d.caption_dropout
        );
    }
    if let Some(spec) = d.bucket_spec() {
        spec.validate()?;
    } else {
        for (key, v) in [
            ("bucket_min_side", d.bucket_min_side),
            ("bucket_max_side", d.bucket_max_side),
            ("bucket_step", d.bucket_step),
        ] {
            if v.is_some() {
                bail!("data.{key}: only used with data.aspect_buckets = true");
            }
        }
    }
    Ok(())
}

/// `[sweep]`: at least one key, each given once with a non-empty list, one length in zip mode.
fn validate_sweep(s: &SweepSection) -> Result<()> {
    if s.params.is_empty() {
        bail!("sweep: no keys to sweep (give e.g. learning_rate = [1e-6, 1e-5])");
    }
    let mut seen = BTreeSet::new();
    for (k, v) in &s.params {
        if !seen.insert(k.as_str()) {
            bail!("sweep.{k}: given twice");
        }
        if v.is_empty() {
            bail!("sweep.{k}: empty list of values");
        }
        if k == "output.dir" || k == "experiment" {
            bail!("sweep.{k}: cannot be swept");
        }
    }
    if s.mode == SweepMode::Zip {
        let (k0, v0) = &s.params[0];
        for (k, v) in &s.params[1..] {
            if v.len() != v0.len() {
                bail!(
                            "sweep.{k}: zip mode needs lists of one length, but {k} has {} values and {k0} has {}",
                            v.len(),
                            v0.len()
                        );
            }
        }
    }
    Ok(())
}
