//! Checkpoints of a run: `checkpoints/step-N/` holding `unet/` in the diffusers layout
//! (`config.json` + `diffusion_pytorch_model.safetensors`, loadable by diffusers and by
//! `transform --unet`), `unet_ema/` when EMA is on, `text_encoder/` when it trains, all in
//! `train.save_dtype`, and `state.json`.
//!
//! Only the newest checkpoint also holds `resume/`: the optimizer state and, when the weights
//! are saved in half precision, the fp32 master weights. That is what `--resume` needs to
//! continue exactly; older checkpoints drop it (it is twice the size of the weights), and
//! `train.checkpoints_total_limit` bounds how many older checkpoints are kept at all.
//!
//! A checkpoint is written into a temporary folder and renamed, so it is whole or absent; a
//! failed write (a full disk) removes the temporary folder before the error is returned.
use crate::weights::{write_safetensors, SaveOptions};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// The folder of a checkpoint that holds what resuming needs.
pub const RESUME_DIR: &str = "resume";
/// The optimizer state inside [`RESUME_DIR`].
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";

/// What a checkpoint needs besides tensors to continue exactly.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainerState {
    pub step: u64,
    pub epoch: u64,
    pub optimizer_step: u64,
    pub ema_updates: u64,
    pub elapsed_s: f64,
    pub seed: u64,
}

pub struct CheckpointData<'a> {
    pub unet_config: &'a Path,
    pub unet: Vec<(String, Tensor)>,
    /// With `train_text_encoder`: its config file and weights (transformers' names).
    pub text_encoder: Option<(&'a Path, Vec<(String, Tensor)>)>,
    pub unet_ema: Option<Vec<(String, Tensor)>>,
    pub optimizer: Vec<(String, Tensor)>,
    pub state: TrainerState,
    /// The dtype the weights are stored in (`Kind::Float`, `Half` or `BFloat16`).
    pub save_kind: Kind,
}

pub fn step_dir(run: &Path, step: u64) -> PathBuf {
    run.join("checkpoints").join(format!("step-{step}"))
}

/// Writes tensors as safetensors with `{"format": "pt"}` metadata, floats as `kind`.
pub fn write_pt_safetensors(path: &Path, tensors: &[(String, Tensor)], kind: Kind) -> Result<()> {
    write_safetensors(path, tensors, &SaveOptions::pt(Some(kind)))
}

/// The weights file of each component folder, and its fp32 master copy in `resume/`.
const COMPONENTS: [(&str, &str); 3] = [
    ("unet", "diffusion_pytorch_model.safetensors"),
    ("unet_ema", "diffusion_pytorch_model.safetensors"),
    ("text_encoder", "model.safetensors"),
];

fn write_component(
    dir: &Path,
    config: &Path,
    file: &str,
    tensors: &[(String, Tensor)],
    kind: Kind,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let text = std::fs::read(config)
        .with_context(|| format!("{}: cannot read the config", config.display()))?;
    crate::fsutil::write_atomic(&dir.join("config.json"), &text)?;
    write_pt_safetensors(&dir.join(file), tensors, kind)
}

/// Writes `checkpoints/step-N/` atomically and drops `resume/` from every older checkpoint.
pub fn write(run: &Path, data: &CheckpointData) -> Result<PathBuf> {
    let final_dir = step_dir(run, data.state.step);
    let tmp = run
        .join("checkpoints")
        .join(format!(".tmp-step-{}", data.state.step));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)
            .with_context(|| format!("{}: cannot remove", tmp.display()))?;
    }
    if let Err(e) = write_into(&tmp, data) {
        // Give the space back at once: on a full disk, the status file must still fit.
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e.context(format!(
            "checkpoint at step {} not written",
            data.state.step
        )));
    }
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir)
            .with_context(|| format!("{}: cannot replace", final_dir.display()))?;
    }
    std::fs::rename(&tmp, &final_dir)
        .with_context(|| format!("{}: cannot finish checkpoint", final_dir.display()))?;
    sync_dir(&run.join("checkpoints"));
    for step in list(run)? {
        if step != data.state.step {
            let resume = step_dir(run, step).join(RESUME_DIR);
            if resume.exists() {
                std::fs::remove_dir_all(&resume)
                    .with_context(|| format!("{}: cannot remove", resume.display()))?;
            }
        }
    }
    Ok(final_dir)
}

/// One component's config file and tensors.
type Part<'a> = (&'a Path, &'a Vec<(String, Tensor)>);

fn write_into(tmp: &Path, data: &CheckpointData) -> Result<()> {
    std::fs::create_dir_all(tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
    let kind = data.save_kind;
    let parts: [Option<Part>; 3] = [
        Some((data.unet_config, &data.unet)),
        data.unet_ema.as_ref().map(|t| (data.unet_config, t)),
        data.text_encoder.as_ref().map(|(c, t)| (*c, t)),
    ];
    let resume = tmp.join(RESUME_DIR);
    std::fs::create_dir_all(&resume)
        .with_context(|| format!("{}: cannot create", resume.display()))?;
    for ((name, file), part) in COMPONENTS.iter().zip(&parts) {
        let Some((config, tensors)) = part else {
            continue;
        };
        write_component(&tmp.join(name), config, file, tensors, kind)?;
        if kind != Kind::Float {
            let master = resume.join(format!("{name}.safetensors"));
            write_pt_safetensors(&master, tensors, Kind::Float)?;
        }
    }
    write_safetensors(
        &resume.join(OPTIMIZER_FILE),
        &data.optimizer,
        &SaveOptions::default(),
    )?;
    // state.json last: its presence marks a complete checkpoint.
    crate::fsutil::write_atomic(
        &tmp.join("state.json"),
        serde_json::to_string_pretty(&data.state)?.as_bytes(),
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
    let state_path = dir.join("state.json");
    let Ok(text) = std::fs::read_to_string(&state_path) else {
        return Ok(None);
    };
    let state = serde_json::from_str(&text)
        .map_err(|err| anyhow!("{}: invalid checkpoint state ({err})", state_path.display()))?;
    Ok(Some(state))
}

/// The steps of the run's complete checkpoints, ascending.
pub fn list(run: &Path) -> Result<Vec<u64>> {
    let dir = run.join("checkpoints");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut steps = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(step) = name
            .strip_prefix("step-")
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        if e.path().join("state.json").is_file() {
            steps.push(step);
        }
    }
    steps.sort_unstable();
    Ok(steps)
}

/// The newest complete checkpoint of a run, if any.
pub fn latest(run: &Path) -> Result<Option<(PathBuf, TrainerState)>> {
    let Some(&step) = list(run)?.last() else {
        return Ok(None);
    };
    let dir = step_dir(run, step);
    Ok(read_state(&dir)?.map(|s| (dir, s)))
}

/// Removes what a killed run left half-written (`checkpoints/.tmp-step-N`).
pub fn remove_partial(run: &Path) -> Result<()> {
    let dir = run.join("checkpoints");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    for e in rd.flatten() {
        if e.file_name().to_string_lossy().starts_with(".tmp-step-") {
            std::fs::remove_dir_all(e.path())
                .with_context(|| format!("{}: cannot remove", e.path().display()))?;
        }
    }
    Ok(())
}

/// Where resuming reads a component's fp32 weights from: the master copy in `resume/` when the
/// checkpoint stores half-precision weights, else the component folder itself.
pub fn resume_weights(dir: &Path, component: &str) -> Result<PathBuf> {
    let master = dir
        .join(RESUME_DIR)
        .join(format!("{component}.safetensors"));
    if master.is_file() {
        return Ok(master);
    }
    let (_, file) = COMPONENTS
        .iter()
        .find(|(n, _)| *n == component)
        .with_context(|| format!("no checkpoint component '{component}'"))?;
    Ok(dir.join(component).join(file))
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
    Tensor::read_safetensors(&path).with_context(|| format!("{}: cannot read", path.display()))
}

/// Keeps the newest `limit` checkpoints and `protect` (the best by validation, if it exists);
/// removes the others. Returns the removed steps.
pub fn prune(run: &Path, limit: usize, protect: Option<u64>) -> Result<Vec<u64>> {
    let steps = list(run)?;
    let keep_from = steps.len().saturating_sub(limit.max(1));
    let mut removed = Vec::new();
    for &step in &steps[..keep_from] {
        if Some(step) == protect {
            continue;
        }
        let dir = step_dir(run, step);
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("{}: cannot remove", dir.display()))?;
        removed.push(step);
    }
    Ok(removed)
}
