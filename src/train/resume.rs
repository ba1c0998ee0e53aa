//! Continuing a run from its newest checkpoint exactly as if it had not stopped: the fp32
//! weights, optimizer and EMA state come back from the checkpoint, and the detector and the
//! best-checkpoint bookkeeping are replayed from the run's CSVs up to the checkpoint's step.
use super::checkpoint::{self, TrainerState};
use super::ema::Ema;
use super::optim::AdamW;
use crate::monitor::{read_metrics, read_validation, Detector};
use crate::pipelines::StableDiffusion;
use crate::weights::WeightSet;
use anyhow::{Context, Result};
use std::path::Path;

/// Loads the trained weights, the optimizer state and the EMA of checkpoint `dir`.
pub fn restore(
    dir: &Path,
    state: &TrainerState,
    sd: &StableDiffusion,
    train_text_encoder: bool,
    optimizer: &mut AdamW,
    ema: Option<&mut Ema>,
) -> Result<()> {
    let read = |component: &str| -> Result<WeightSet> {
        WeightSet::read_files(&[checkpoint::resume_weights(dir, component)?])
    };
    read("unet")?.load_into(&sd.unet_vs, "unet", |_| false)?;
    if train_text_encoder {
        crate::pipelines::normalize_text_encoder_names(read("text_encoder")?).load_into(
            &sd.text_encoder_vs,
            "text_encoder",
            |n| n.ends_with("position_ids"),
        )?;
    }
    optimizer
        .load_state(checkpoint::optimizer_state(dir)?, state.optimizer_step)
        .with_context(|| format!("{}: optimizer state", dir.display()))?;
    if let Some(e) = ema {
        let w = read("unet_ema")?;
        e.load(
            w.iter()
                .map(|(n, en)| (n.to_string(), en.tensor.shallow_clone()))
                .collect(),
        )?;
        e.set_updates(state.ema_updates);
    }
    Ok(())
}

/// Feeds the detector what the run logged up to `step` (metrics.csv and validation.csv, already
/// truncated to it) in the order the loop saw it; returns the validation losses `(step, loss)`.
pub fn replay(run: &Path, detector: &mut Detector) -> Result<Vec<(u64, f64)>> {
    let metrics_path = run.join("metrics.csv");
    let metrics = if metrics_path.exists() {
        read_metrics(&metrics_path)?
    } else {
        Vec::new()
    };
    let val_path = run.join("validation.csv");
    let validation = if val_path.exists() {
        Some(read_validation(&val_path)?)
    } else {
        None
    };
    crate::monitor::replay(detector, &metrics, validation.as_ref());
    Ok(validation
        .map(|v| v.rows.iter().map(|r| (r.step, r.val_loss)).collect())
        .unwrap_or_default())
}
