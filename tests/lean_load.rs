//! Loading keeps one copy of the weights: `studioize inspect` on a model whose weights are a
//! known number of bytes (>= 200 MB, random, written here in the diffusers layout) must peak at
//! no more than 1.15x those bytes above the peak of the same command on the tiny model.
//! A memory bound (the child's `ru_maxrss` from `wait4`), not a timing.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use studioize::models::unet::{UNet2DConditionModel, UNetConfig};
use studioize::weights::{write_safetensors, SaveOptions};
use tch::nn::VarStore;
use tch::Device;

fn tiny_model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/tiny-studio")
}

/// Runs `studioize inspect MODEL` and returns its peak resident set size in bytes. The child is
/// reaped by `wait4` (which also gives its rusage), not by `Child::wait`.
#[allow(clippy::zombie_processes)]
fn inspect_peak_rss(model: &Path) -> u64 {
    let child = Command::new(env!("CARGO_BIN_EXE_studioize"))
        .arg("inspect")
        .arg(model)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("studioize starts");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; status and usage point to live locals.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32, "wait4 failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "inspect {} failed (status {status})",
        model.display()
    );
    usage.ru_maxrss as u64 * 1024
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// The tiny model with its UNet widened (random weights) until the model's weight files
/// total at least 200 MB; returns those bytes.
fn write_big_model(dir: &Path) -> u64 {
    copy_dir(&tiny_model(), dir);
    let unet_dir = dir.join("unet");
    let cfg_path = unet_dir.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["block_out_channels"] = serde_json::json!([192, 384, 576]);
    std::fs::write(&cfg_path, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    let config = UNetConfig::from_file(&cfg_path).unwrap();
    let vs = VarStore::new(Device::Cpu);
    let _unet = UNet2DConditionModel::new(&vs.root(), &config).unwrap();
    let mut tensors: Vec<(String, tch::Tensor)> = vs.variables().into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    write_safetensors(
        &unet_dir.join("diffusion_pytorch_model.safetensors"),
        &tensors,
        &SaveOptions::default(),
    )
    .unwrap();
    ["unet", "vae", "text_encoder"]
        .iter()
        .flat_map(|c| std::fs::read_dir(dir.join(c)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

#[test]
fn inspect_keeps_one_copy_of_the_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("big");
    let weights = write_big_model(&big);
    assert!(
        weights >= 200 << 20,
        "test model too small: {weights} bytes"
    );
    let baseline = inspect_peak_rss(&tiny_model());
    let peak = inspect_peak_rss(&big);
    let bound = (1.15 * weights as f64) as u64 + baseline;
    let mb = |b: u64| b as f64 / (1 << 20) as f64;
    eprintln!(
        "weights {:.1} MiB, baseline peak {:.1} MiB, big-model peak {:.1} MiB, bound {:.1} MiB",
        mb(weights),
        mb(baseline),
        mb(peak),
        mb(bound)
    );
    assert!(
        peak <= bound,
        "inspect peaked at {:.1} MiB for {:.1} MiB of weights (baseline {:.1} MiB): over the \
         1.15x bound of {:.1} MiB",
        mb(peak),
        mb(weights),
        mb(baseline),
        mb(bound)
    );
}
