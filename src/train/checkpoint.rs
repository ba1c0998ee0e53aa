//! Checkpoints of a run: `checkpoints/step-N/` (see [`RunDir::checkpoint`]) holds one folder
//! per saved component, written by the [`Trainable`](super::trainable::Trainable)s: `unet/` in
//! the diffusers layout (`config.json` + `diffusion_pytorch_model.safetensors`, loadable by
//! diffusers and by `transform --unet`), `unet_ema/` when EMA is on, `text_encoder/` when it
//! trains, all in `train.save_dtype`; and `state.json`.
//!
//! Only the newest checkpoint also holds `resume/`: the optimizer state and, when the weights
//! are saved in half precision, the fp32 master weights. That is what `--resume` needs to
//! continue exactly; older checkpoints drop it (it is twice the size of the weights), and
//! `train.checkpoints_total_limit` bounds how many older checkpoints are kept at all.
//!
//! A checkpoint is written into a temporary folder and renamed, so it is whole or absent; a
//! failed write (a full disk) removes the temporary folder before the error is returned.
use super::run_dir::RunDir;
use super::scaler::ScalerState;
use crate::weights::{write_safetensors, SaveOptions};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// The folder of a checkpoint that holds what resuming needs.
pub const RESUME_DIR: &str = "resume";
/// The optimizer state inside [`RESUME_DIR`].
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// The trainer's counters; its presence marks a complete checkpoint.
pub const STATE_FILE: &str = "state.json";

/// What a checkpoint needs besides tensors to continue exactly.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainerState {
    pub step: u64,
    pub epoch: u64,
    pub optimizer_step: u64,
    pub ema_updates: u64,
    pub elapsed_s: f64,
    pub seed: u64,
    /// The fp16 loss scaler's state (`train.mixed_precision = "fp16"` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scaler: Option<ScalerState>,
}

/// A model folder inside a checkpoint: its name and its weights file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Component {
    pub folder: &'static str,
    pub weights: &'static str,
}

pub const UNET: Component = Component {
    folder: "unet",
    weights: "diffusion_pytorch_model.safetensors",
};
pub const UNET_EMA: Component = Component {
    folder: "unet_ema",
    weights: "diffusion_pytorch_model.safetensors",
};
pub const TEXT_ENCODER: Component = Component {
    folder: "text_encoder",
    weights: "model.safetensors",
};

/// Writes tensors as safetensors with `{"format": "pt"}` metadata, floats as `kind`.
pub fn write_pt_safetensors(path: &Path, tensors: &[(String, Tensor)], kind: Kind) -> Result<()> {
    write_safetensors(path, tensors, &SaveOptions::pt(Some(kind)))
}

/// Writes `component` into the checkpoint folder `dir` being written: its `config.json` (a copy
/// of `config`) and its weights in `kind`, plus, when `kind` is not fp32, the fp32 master copy
/// in `resume/` that resuming reads.
pub fn write_component(
    dir: &Path,
    component: Component,
    config: &Path,
    tensors: &[(String, Tensor)],
    kind: Kind,
) -> Result<()> {
    let folder = dir.join(component.folder);
    std::fs::create_dir_all(&folder)
        .with_context(|| format!("{}: cannot create", folder.display()))?;
    let text = std::fs::read(config)
        .with_context(|| format!("{}: cannot read the config", config.display()))?;
    crate::fsutil::write_atomic(&folder.join("config.json"), &text)?;
    write_pt_safetensors(&folder.join(component.weights), tensors, kind)?;
    if kind != Kind::Float {
        let master = dir
            .join(RESUME_DIR)
            .join(format!("{}.safetensors", component.folder));
        write_pt_safetensors(&master, tensors, Kind::Float)?;
    }
    Ok(())
}

/// Where resuming reads a component's fp32 weights from: the master copy in `resume/` when the
/// checkpoint stores half-precision weights, else the component folder itself.
pub fn resume_weights(dir: &Path, component: Component) -> PathBuf {
    let master = dir
        .join(RESUME_DIR)
        .join(format!("{}.safetensors", component.folder));
    if master.is_file() {
        return master;
    }
    dir.join(component.folder).join(component.weights)
}

/// Writes `checkpoints/step-N/` atomically (`components` writes the model folders into the
/// folder it is given, then come the optimizer state and `state.json`) and drops `resume/`
/// from every older checkpoint.
pub fn write(
    run: &RunDir,
    state: &TrainerState,
    optimizer: &[(String, Tensor)],
    components: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let final_dir = run.checkpoint(state.step);
    let tmp = run.partial_checkpoint(state.step);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)
            .with_context(|| format!("{}: cannot remove", tmp.display()))?;
    }
    if let Err(e) = write_into(&tmp, state, optimizer, components) {
        // Give the space back at once: on a full disk, the status file must still fit.
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e.context(format!("checkpoint at step {} not written", state.step)));
    }
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir)
            .with_context(|| format!("{}: cannot replace", final_dir.display()))?;
    }
    std::fs::rename(&tmp, &final_dir)
        .with_context(|| format!("{}: cannot finish checkpoint", final_dir.display()))?;
    sync_dir(&run.checkpoints());
    for step in list(run)? {
        if step != state.step {
            let resume = run.checkpoint(step).join(RESUME_DIR);
            if resume.exists() {
                std::fs::remove_dir_all(&resume)
                    .with_context(|| format!("{}: cannot remove", resume.display()))?;
            }
        }
    }
    Ok(final_dir)
}

fn write_into(
    tmp: &Path,
    state: &TrainerState,
    optimizer: &[(String, Tensor)],
    components: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let resume = tmp.join(RESUME_DIR);
    std::fs::create_dir_all(&resume)
        .with_context(|| format!("{}: cannot create", resume.display()))?;
    components(tmp)?;
    write_safetensors(
        &resume.join(OPTIMIZER_FILE),
        optimizer,
        &SaveOptions::default(),
    )?;
    // state.json last: its presence marks a complete checkpoint.
    crate::fsutil::write_atomic(
        &tmp.join(STATE_FILE),
        serde_json::to_string_pretty(state)?.as_bytes(),
    )?;
    sync_dir(tmp);
    Ok(())
}

fn sync_dir(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if let Ok(f) = std::fs::File::open(e.path()) {
                let _ = f.sync_all();
            }
        }
    }
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

fn read_state(dir: &Path) -> Result<Option<TrainerState>> {
    let state_path = dir.join(STATE_FILE);
    let Ok(text) = std::fs::read_to_string(&state_path) else {
        return Ok(None);
    };
    let state = serde_json::from_str(&text)
        .map_err(|err| anyhow!("{}: invalid checkpoint state ({err})", state_path.display()))?;
    Ok(Some(state))
}

/// The steps of the run's complete checkpoints, ascending.
pub fn list(run: &RunDir) -> Result<Vec<u64>> {
    let Ok(rd) = std::fs::read_dir(run.checkpoints()) else {
        return Ok(Vec::new());
    };
    let mut steps = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(step) = RunDir::checkpoint_step(&name) else {
            continue;
        };
        if e.path().join(STATE_FILE).is_file() {
            steps.push(step);
        }
    }
    steps.sort_unstable();
    Ok(steps)
}

/// The newest complete checkpoint of a run, if any.
pub fn latest(run: &RunDir) -> Result<Option<(PathBuf, TrainerState)>> {
    let Some(&step) = list(run)?.last() else {
        return Ok(None);
    };
    let dir = run.checkpoint(step);
    Ok(read_state(&dir)?.map(|s| (dir, s)))
}

/// Removes what a killed run left half-written (`checkpoints/.tmp-step-N`).
pub fn remove_partial(run: &RunDir) -> Result<()> {
    let Ok(rd) = std::fs::read_dir(run.checkpoints()) else {
        return Ok(());
    };
    for e in rd.flatten() {
        if RunDir::is_partial_checkpoint(&e.file_name().to_string_lossy()) {
            std::fs::remove_dir_all(e.path())
                .with_context(|| format!("{}: cannot remove", e.path().display()))?;
        }
    }
    Ok(())
}

/// The optimizer state of a checkpoint; only the newest checkpoint of a run keeps one.
pub fn optimizer_state(dir: &Path) -> Result<Vec<(String, Tensor)>> {
    let path = dir.join(RESUME_DIR).join(OPTIMIZER_FILE);
    if !path.is_file() {
        bail!(
            "{}: no optimizer state, so the run cannot continue exactly from here (only the newest checkpoint of a run keeps {RESUME_DIR}/{OPTIMIZER_FILE})",
            dir.display()
        );
    }
    // Views of the privately mapped file: the optimizer copies them into its moments, so the
    // state is never held twice.
    crate::weights::read_safetensors(&path)
        .with_context(|| format!("{}: cannot read", path.display()))
}

/// The checkpoint with the lowest validation loss: each checkpoint is scored by the last
/// validation at or before its step (checkpoints without one are not candidates).
pub fn best(steps: &[u64], validations: &[(u64, f64)]) -> Option<u64> {
    steps
        .iter()
        .filter_map(|&s| {
            validations
                .iter()
                .filter(|(v, l)| *v <= s && l.is_finite())
                .max_by_key(|(v, _)| *v)
                .map(|&(_, l)| (s, l))
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(s, _)| s)
}

/// Keeps the newest `limit` checkpoints and `protect` (the best by validation, if it exists);
/// removes the others. Returns the removed steps.
pub fn prune(run: &RunDir, limit: usize, protect: Option<u64>) -> Result<Vec<u64>> {
    let steps = list(run)?;
    let keep_from = steps.len().saturating_sub(limit.max(1));
    let mut removed = Vec::new();
    for &step in &steps[..keep_from] {
        if Some(step) == protect {
            continue;
        }
        let dir = run.checkpoint(step);
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("{}: cannot remove", dir.display()))?;
        removed.push(step);
    }
    Ok(removed)
}
