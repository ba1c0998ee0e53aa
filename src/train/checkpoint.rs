//! Checkpoints of a run: `checkpoints/step-N/` holding `unet/` in the diffusers layout
//! (`config.json` + `diffusion_pytorch_model.safetensors`, loadable by diffusers and by
//! `transform --unet`), `unet_ema/` when EMA is on, `optimizer.safetensors` and `state.json`.
//! Written into a temporary folder and renamed, so a checkpoint is whole or absent.
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::Tensor;

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
}

pub fn step_dir(run: &Path, step: u64) -> PathBuf {
    run.join("checkpoints").join(format!("step-{step}"))
}

/// Writes fp32 tensors as safetensors with `{"format": "pt"}` metadata (transformers refuses
/// files without it; diffusers accepts both).
pub fn write_pt_safetensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let mut data: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = t
            .detach()
            .to_kind(tch::Kind::Float)
            .to_device(tch::Device::Cpu)
            .contiguous();
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        let values = Vec::<f32>::try_from(t.view([-1]))?;
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        data.push((name.clone(), bytes, shape));
    }
    let mut views = Vec::with_capacity(data.len());
    for (n, b, s) in &data {
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
            .map_err(|e| anyhow::anyhow!("tensor '{n}': {e}"))?;
        views.push((n.as_str(), view));
    }
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views, Some(meta), path)
        .map_err(|e| anyhow::anyhow!("{}: cannot write ({e})", path.display()))
}

fn write_component(
    dir: &Path,
    config: &Path,
    file: &str,
    tensors: &[(String, Tensor)],
) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::copy(config, dir.join("config.json"))
        .with_context(|| format!("{}: cannot copy the config", config.display()))?;
    write_pt_safetensors(&dir.join(file), tensors)
}

fn write_unet(dir: &Path, config: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    write_component(dir, config, "diffusion_pytorch_model.safetensors", tensors)
}

/// Writes `checkpoints/step-N/` atomically.
pub fn write(run: &Path, data: &CheckpointData) -> Result<PathBuf> {
    let final_dir = step_dir(run, data.state.step);
    let tmp = run
        .join("checkpoints")
        .join(format!(".tmp-step-{}", data.state.step));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
    write_unet(&tmp.join("unet"), data.unet_config, &data.unet)?;
    if let Some(ema) = &data.unet_ema {
        write_unet(&tmp.join("unet_ema"), data.unet_config, ema)?;
    }
    if let Some((config, tensors)) = &data.text_encoder {
        write_component(
            &tmp.join("text_encoder"),
            config,
            "model.safetensors",
            tensors,
        )?;
    }
    let opt: Vec<(&str, Tensor)> = data
        .optimizer
        .iter()
        .map(|(n, t)| (n.as_str(), t.contiguous()))
        .collect();
    Tensor::write_safetensors(&opt, tmp.join("optimizer.safetensors"))?;
    // state.json last: its presence marks a complete checkpoint.
    std::fs::write(
        tmp.join("state.json"),
        serde_json::to_string_pretty(&data.state)?,
    )?;
    sync_dir(&tmp);
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir)?;
    }
    std::fs::rename(&tmp, &final_dir)
        .with_context(|| format!("{}: cannot finish checkpoint", final_dir.display()))?;
    sync_dir(&run.join("checkpoints"));
    Ok(final_dir)
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

/// The newest complete checkpoint of a run, if any.
pub fn latest(run: &Path) -> Result<Option<(PathBuf, TrainerState)>> {
    let dir = run.join("checkpoints");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Ok(None);
    };
    let mut best: Option<(PathBuf, TrainerState)> = None;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.starts_with("step-") {
            continue;
        }
        let state_path = e.path().join("state.json");
        let Ok(text) = std::fs::read_to_string(&state_path) else {
            continue;
        };
        let state: TrainerState = serde_json::from_str(&text).map_err(|err| {
            anyhow::anyhow!("{}: invalid checkpoint state ({err})", state_path.display())
        })?;
        if best.as_ref().is_none_or(|(_, s)| state.step > s.step) {
            best = Some((e.path(), state));
        }
    }
    Ok(best)
}
