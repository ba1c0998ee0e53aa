//! The run folder under pressure: bounded checkpoints (retention, half-precision weights,
//! resume after pruning), one process per run folder (the lock), and full disks (train,
//! generate and analyze fail with the path named and leave no partial file behind).
mod common;

use common::{csv_rows, studioize};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn config(dir: &Path, run: &Path, train: &str) -> PathBuf {
    let cfg = format!(
        "{tables}[train]\n{train}\n[output]\ndir = \"{run}\"\n",
        tables = common::tiny_experiment_tables(dir, 16, 4),
        run = run.display(),
    );
    let path = dir.join("exp.toml");
    std::fs::write(&path, cfg).unwrap();
    path
}

fn train(cfg: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["train", cfg.to_str().unwrap(), "--device", "cpu", "--quiet"];
    args.extend_from_slice(extra);
    studioize(&args)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn checkpoints(run: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(run.join("checkpoints"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.strip_prefix("step-")?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

fn status(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("status.json")).unwrap()).unwrap()
}

/// The dtype names of a safetensors file's tensors.
fn dtypes(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut d: Vec<String> = st
        .tensors()
        .iter()
        .map(|(_, v)| format!("{:?}", v.dtype()))
        .collect();
    d.sort();
    d.dedup();
    d
}

const RETENTION: &str = r#"steps = 30
batch_size = 4
learning_rate = 3e-3
lr_schedule = "constant"
warmup_steps = 0
checkpoint_every = 5
validate_every = 5
validation_timesteps = 3
checkpoints_total_limit = 2
save_dtype = "fp16"
seed = 3"#;

#[test]
fn retention_keeps_the_newest_and_the_best_and_resume_still_works() {
    let a = tempfile::tempdir().unwrap();
    let run_a = a.path().join("run");
    let cfg_a = config(a.path(), &run_a, RETENTION);
    let out = train(&cfg_a, &[]);
    assert!(out.status.success(), "{}", stderr(&out));

    // The best checkpoint by validation loss (validations fall on every checkpoint step).
    let vals = csv_rows(&run_a.join("validation.csv"));
    let best = vals
        .iter()
        .filter(|r| r[0] != "0")
        .min_by(|x, y| {
            x[1].parse::<f64>()
                .unwrap()
                .total_cmp(&y[1].parse().unwrap())
        })
        .map(|r| r[0].parse::<u64>().unwrap())
        .unwrap();
    let mut want = vec![25, 30, best];
    want.sort_unstable();
    want.dedup();
    assert_eq!(
        checkpoints(&run_a),
        want,
        "newest two plus the best ({best})"
    );
    for step in checkpoints(&run_a) {
        let dir = run_a.join(format!("checkpoints/step-{step}"));
        // Weights in fp16; the resume state (fp32 masters, optimizer) only in the newest.
        assert_eq!(
            dtypes(&dir.join("unet/diffusion_pytorch_model.safetensors")),
            ["F16"]
        );
        assert_eq!(dir.join("resume").exists(), step == 30, "step {step}");
    }
    let resume = run_a.join("checkpoints/step-30/resume");
    assert_eq!(dtypes(&resume.join("unet.safetensors")), ["F32"]);
    assert!(resume.join("optimizer.safetensors").is_file());

    // A run stopped at step 15 (pruned the same way) and resumed to 30 equals the one above.
    let b = tempfile::tempdir().unwrap();
    let run_b = b.path().join("run");
    let cfg_b = config(b.path(), &run_b, RETENTION);
    let out = train(&cfg_b, &["--set", "train.steps=15"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(checkpoints(&run_b).len() <= 3, "{:?}", checkpoints(&run_b));
    let out = train(&cfg_b, &["--resume"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (ra, rb) = (
        csv_rows(&run_a.join("metrics.csv")),
        csv_rows(&run_b.join("metrics.csv")),
    );
    assert_eq!(ra.len(), 30);
    assert_eq!(ra.len(), rb.len());
    for (x, y) in ra.iter().zip(&rb) {
        for col in 0..5 {
            let (p, q): (f64, f64) = (x[col].parse().unwrap(), y[col].parse().unwrap());
            assert!(
                (p - q).abs() <= 1e-6 * q.abs().max(1e-12),
                "step {}: column {col}: {p} vs {q}",
                x[0]
            );
        }
    }
    assert_eq!(
        csv_rows(&run_a.join("validation.csv")),
        csv_rows(&run_b.join("validation.csv"))
    );
    assert_eq!(checkpoints(&run_a), checkpoints(&run_b));

    // An fp16 checkpoint serves `transform --unet` as any other.
    let photo = common::fixtures().join("pipelines/input-photo.png");
    let out = studioize(&[
        "transform",
        "--model",
        common::fixtures().join("sd/tiny-a").to_str().unwrap(),
        "--unet",
        run_a.join("checkpoints/step-30/unet").to_str().unwrap(),
        "--prompt",
        "a red mug",
        "--steps",
        "2",
        "--size",
        "32",
        "--device",
        "cpu",
        "--out",
        a.path().join("t.png").to_str().unwrap(),
        photo.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_run_folder_takes_one_process_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let cfg = config(
        dir.path(),
        &run,
        "steps = 2000\nbatch_size = 2\nvalidate_every = 0\ncheckpoint_every = 0",
    );
    let mut first = common::train_command(&cfg).spawn().unwrap();
    let t0 = std::time::Instant::now();
    while !run.join("metrics.csv").exists() && t0.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for extra in [&["--resume"][..], &[][..]] {
        let out = train(&cfg, extra);
        let err = stderr(&out);
        assert!(!out.status.success(), "{extra:?}: {err}");
        assert!(
            err.contains(&format!(
                "run folder {} is in use by process {}",
                run.display(),
                first.id()
            )),
            "{extra:?}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    first.kill().unwrap();
    first.wait().unwrap();
    // The killed owner's lock is stale: the run resumes (here from the start: no checkpoint).
    let out = train(&cfg, &["--resume", "--set", "train.steps=3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let steps: Vec<String> = csv_rows(&run.join("metrics.csv"))
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(steps, ["1", "2", "3"], "one writer, no duplicated rows");
    assert!(!run.join(".lock").exists());
}

/// A folder that holds at most `bytes`: a tmpfs (needs root, as CI runs), unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn new(bytes: u64) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "cannot mount a tmpfs (the full-disk tests need root, as in CI)"
        );
        SmallDisk { dir }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Every file below `dir`, relative.
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path().strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn full_disks_fail_cleanly_with_the_path() {
    let data = tempfile::tempdir().unwrap();
    // Room for the run's small files, not for a checkpoint (a 3 MB UNet).
    let disk = SmallDisk::new(1 << 21);
    let run = disk.path().join("run");
    let cfg = config(
        data.path(),
        &run,
        "steps = 4\nbatch_size = 2\nvalidate_every = 2\nvalidation_timesteps = 2\ncheckpoint_every = 2",
    );
    let out = train(&cfg, &[]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("checkpoint at step 2 not written") && err.contains("No space left on device"),
        "{err}"
    );
    assert!(
        err.contains(&run.display().to_string()),
        "the error names the path: {err}"
    );
    let st = status(&run);
    assert_eq!(st["state"], "failed", "{st}");
    assert!(
        st["reason"].as_str().unwrap().contains("No space left"),
        "{st}"
    );
    let left = files(&run);
    assert!(
        left.iter().all(|f| !f.contains(".tmp")),
        "no partial checkpoint or temporary file: {left:?}"
    );

    // generate: the error names the file, and nothing half-written stays.
    std::fs::remove_dir_all(&run).unwrap();
    let filler = disk.path().join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=1024", "count=4096"])
        .arg(format!("of={}", filler.display()))
        .output();
    let out_dir = disk.path().join("gen");
    let out = studioize(&[
        "generate",
        "--model",
        common::fixtures().join("sd/tiny-a").to_str().unwrap(),
        "--prompt",
        "a red mug",
        "--steps",
        "2",
        "--num-images",
        "2",
        "--device",
        "cpu",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("No space left on device") && err.contains(&out_dir.display().to_string()),
        "{err}"
    );
    assert_eq!(
        err.trim().lines().last().unwrap().matches("error:").count(),
        1,
        "{err}"
    );
    if out_dir.exists() {
        for f in files(&out_dir) {
            let len = std::fs::metadata(out_dir.join(&f)).unwrap().len();
            assert!(
                !f.contains(".tmp") && len > 0,
                "partial file {f} ({len} bytes)"
            );
        }
    }

    // analyze: no 0-byte analysis.json that would break `report` later.
    std::fs::remove_file(&filler).unwrap();
    let run2 = disk.path().join("run2");
    std::fs::create_dir_all(&run2).unwrap();
    let mut metrics = String::from("step,epoch,loss,lr,grad_norm,images_per_s,elapsed_s\n");
    for s in 1..=50 {
        metrics += &format!("{s},0,{},1e-5,1.0,1,1\n", 1.0 / s as f64);
    }
    std::fs::write(run2.join("metrics.csv"), metrics).unwrap();
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=1024", "count=4096"])
        .arg(format!("of={}", filler.display()))
        .output();
    let out = studioize(&["analyze", run2.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("analysis.json"), "{}", stderr(&out));
    assert!(!run2.join("analysis.json").exists());
    std::fs::remove_file(&filler).unwrap();
    let out = studioize(&["analyze", run2.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
}
