//! Training the UNet2DConditionModel from scratch on the VAE's latents: the epsilon objective
//! of DDPM (`train::objective`, the schedule of the model's own scheduler config) with
//! timesteps uniform over the training steps, min-SNR-gamma weights and a noise offset,
//! latents sampled from each image's posterior and scaled by the measured factor, captions (a
//! share replaced by the empty prompt, for classifier-free guidance) encoded by the CLIP text
//! encoder, trained with the UNet (or encoded once, when it is kept frozen), AdamW with warm-up
//! and cosine decay, gradient clipping, and an EMA of the weights (the EMA is what is saved).
use super::config::PretrainConfig;
use super::vae::Latents;
use super::{progress_bar, step_seed, Stage};
use crate::models::clip::ClipTextModel;
use crate::models::unet::UNet2DConditionModel;
use crate::train::ema::Ema;
use crate::train::lr::LrSchedule;
use crate::train::objective::{mse, offset_noise, NoiseSchedule, PredictionType};
use crate::train::optim::AdamW;
use anyhow::{bail, Result};
use tch::nn::VarStore;
use tch::{Kind, Tensor};

/// The conditioning of every image: the caption `caption_of[i]`, and the empty prompt's row.
pub struct Conditioning {
    /// `[U, 77]` token ids: one row per distinct caption, the empty prompt included.
    pub ids: Tensor,
    /// `[U, 77, D]`: the encoder's outputs for `ids`, when the encoder is frozen.
    pub frozen: Option<Tensor>,
    pub caption_of: Vec<i64>,
    pub empty: i64,
}

impl Conditioning {
    /// The encoder hidden states of the captions `rows` (with gradients when it trains).
    fn contexts(&self, encoder: &ClipTextModel, rows: &[i64]) -> Tensor {
        let rows = Tensor::from_slice(rows);
        match &self.frozen {
            Some(c) => c.index_select(0, &rows),
            None => encoder.forward(&self.ids.index_select(0, &rows)),
        }
    }
}

/// The text encoder and its variables (trained when the conditioning is not frozen).
pub struct Text<'a> {
    pub encoder: &'a ClipTextModel,
    pub vs: &'a VarStore,
}

/// The weights to save.
pub struct Trained {
    pub unet: Vec<(String, Tensor)>,
    pub text: Vec<(String, Tensor)>,
}

/// What UNet training measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UnetReport {
    pub steps: u64,
    /// Mean loss over the first and the last 100 steps.
    pub first_loss: f64,
    pub final_loss: f64,
    pub seconds: f64,
}

/// The EMA (or, without one, the raw) weights of `vs`, sorted by name.
fn saved(vs: &VarStore, ema: Option<&Ema>) -> Vec<(String, Tensor)> {
    match ema {
        Some(e) => e
            .tensors()
            .iter()
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect(),
        None => {
            let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        }
    }
}

/// Trains `unet` (variables in `vs`), and the text encoder with it unless the conditioning is
/// frozen; returns the report and the EMA (or raw) weights to save.
#[allow(clippy::too_many_arguments)]
pub fn train(
    unet: &UNet2DConditionModel,
    vs: &VarStore,
    text: Text,
    latents: &Latents,
    scaling: f64,
    cond: &Conditioning,
    schedule: &NoiseSchedule,
    cfg: &PretrainConfig,
) -> Result<(UnetReport, Trained)> {
    let s = &cfg.unet;
    let clock = std::time::Instant::now();
    let joint = cond.frozen.is_none();
    let mut params: std::collections::HashMap<String, Tensor> = vs
        .variables()
        .into_iter()
        .map(|(n, t)| (format!("unet.{n}"), t))
        .collect();
    if joint {
        params.extend(
            text.vs
                .variables()
                .into_iter()
                .map(|(n, t)| (format!("text_encoder.{n}"), t)),
        );
    }
    let mut opt = AdamW::new(params, 0.9, 0.999, 1e-8, 1e-2);
    let mut ema = (s.ema_decay > 0.0).then(|| Ema::new(vs, s.ema_decay));
    let mut text_ema = (joint && s.ema_decay > 0.0).then(|| Ema::new(text.vs, s.ema_decay));
    let n = latents.mean.size()[0] as u64;
    let t_max = schedule.num_train_timesteps();
    let bar = progress_bar("unet", s.steps);
    let (mut first, mut recent) = (Vec::new(), Vec::new());
    for step in 0..s.steps {
        let mut rng = crate::data::rng::SplitMix64::derived(&[cfg.seed, Stage::Unet as u64, step]);
        let mut idx = Vec::with_capacity(s.batch_size as usize);
        let mut ctx = Vec::with_capacity(s.batch_size as usize);
        for _ in 0..s.batch_size {
            let i = rng.below(n) as usize;
            idx.push(i as i64);
            ctx.push(if rng.chance(s.caption_dropout) {
                cond.empty
            } else {
                cond.caption_of[i]
            });
        }
        let idx = Tensor::from_slice(&idx);
        let context = cond.contexts(text.encoder, &ctx);
        tch::manual_seed(step_seed(cfg.seed, Stage::Unet, step));
        let mean = latents.mean.index_select(0, &idx);
        let std = latents.std.index_select(0, &idx);
        let x0 = (&mean + &std * Tensor::randn_like(&mean)) * scaling;
        let noise = offset_noise(&x0.size(), s.noise_offset);
        let t = Tensor::randint(t_max, [s.batch_size], (Kind::Int64, x0.device()));
        let noisy = schedule.add_noise(&x0, &noise, &t);
        let pred = unet.forward(&noisy, &t, &context);
        let weights = s
            .snr_gamma
            .map(|g| schedule.min_snr_weights(&t, g, PredictionType::Epsilon));
        let loss = mse(&pred, &noise, weights.as_ref());
        let value = f64::try_from(&loss)?;
        if !value.is_finite() {
            bail!("UNet loss is {value} at step {} (lower unet.lr)", step + 1);
        }
        loss.backward();
        opt.clip_grad_norm(s.max_grad_norm);
        let lr = s.lr * LrSchedule::Cosine.factor(step, s.warmup_steps, s.steps);
        opt.step(lr);
        if let Some(e) = ema.as_mut() {
            e.update(vs);
        }
        if let Some(e) = text_ema.as_mut() {
            e.update(text.vs);
        }
        if first.len() < 100 {
            first.push(value);
        }
        recent.push(value);
        if recent.len() > 100 {
            recent.remove(0);
        }
        bar.inc(recent.iter().sum::<f64>() / recent.len() as f64);
    }
    bar.finish();
    let mean_of = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let weights = Trained {
        unet: saved(vs, ema.as_ref()),
        text: saved(text.vs, text_ema.as_ref()),
    };
    Ok((
        UnetReport {
            steps: s.steps,
            first_loss: mean_of(&first),
            final_loss: mean_of(&recent),
            seconds: clock.elapsed().as_secs_f64(),
        },
        weights,
    ))
}
