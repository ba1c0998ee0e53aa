//! End to end on the tiny model: a learning-rate sweep with one sensible and one far too high
//! rate; the detector's verdicts, the recommendation, plots, re-runs and the Slurm script.
use std::path::Path;
use std::process::Command;

mod common;

fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_studioize")
}

fn write_config(dir: &Path) -> std::path::PathBuf {
    let cfg = format!(
        r#"experiment = "lr-sweep"
{tables}[train]
steps = 40
batch_size = 4
lr_schedule = "constant"
checkpoint_every = 20
validate_every = 10
validation_timesteps = 4
[output]
dir = "{out}"
[sweep]
learning_rate = [3e-4, 0.5]
"#,
        tables = common::tiny_experiment_tables(dir, 24, 5),
        out = dir.join("runs").display(),
    );
    let p = dir.join("sweep.toml");
    std::fs::write(&p, cfg).unwrap();
    p
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(exe()).args(args).output().unwrap()
}

#[test]
fn sweep_finds_the_sensible_learning_rate() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let cfg_s = cfg.to_str().unwrap();
    let out = run(&["train", cfg_s, "--device", "cpu", "--quiet"]);
    // The far too high point diverges: a result of the sweep, not a failure of it.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("lr=0.0003: finished"), "{err}");
    assert!(
        err.contains("lr=0.5: stopped at step") && err.contains("diverged at step"),
        "{err}"
    );
    let status: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("runs/lr=0.5/status.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(status["state"], "stopped", "{status}");

    let runs = dir.path().join("runs");
    let out = run(&["analyze", runs.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("recommended learning rate: 3e-4"), "{table}");
    // The stopped point is shown with its label and step.
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("lr=0.5") && l.contains("stopped: diverged at step")),
        "{table}"
    );
    let good: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(runs.join("lr=0.0003/analysis.json")).unwrap(),
    )
    .unwrap();
    let bad: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(runs.join("lr=0.5/analysis.json")).unwrap())
            .unwrap();
    assert_eq!(good["label"], "converging", "{good}");
    assert!(
        bad["label"] == "diverged" || bad["label"] == "deconverged",
        "{bad}"
    );
    assert!(good["best_step"].as_u64().unwrap() >= 20, "{good}");
    let summary = std::fs::read_to_string(runs.join("summary.csv")).unwrap();
    assert_eq!(summary.lines().count(), 3, "{summary}");

    // Plots of the sweep: one chart per metric, PNG at the documented size, SVG with labels.
    let out = run(&["plot", runs.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["train_loss", "val_loss", "lr", "grad_norm", "overview"] {
        let png = runs.join("plots").join(format!("{name}.png"));
        let (w, h) = image::image_dimensions(&png).unwrap();
        assert!(w >= 1200 && h >= 800, "{name}: {w}x{h}");
        let svg = std::fs::read_to_string(runs.join("plots").join(format!("{name}.svg"))).unwrap();
        assert!(
            svg.contains("lr=0.0003") && svg.contains("lr=0.5"),
            "{name}.svg lacks the legend"
        );
    }

    // A re-run skips the finished and the stopped point.
    let out = run(&["train", cfg_s, "--device", "cpu", "--quiet"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("lr=0.0003: already finished, skipped")
            && err.contains("lr=0.5: already finished, skipped"),
        "{err}"
    );
    // --only picks one point.
    let out = run(&[
        "train",
        cfg_s,
        "--device",
        "cpu",
        "--quiet",
        "--only",
        "lr=0.0003",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["train", cfg_s, "--only", "lr=1"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such sweep point"));
}

#[test]
fn emit_slurm_writes_a_valid_array_script() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let script = dir.path().join("sweep.sbatch");
    let text = emit_slurm(&cfg, &script, &[]);
    assert!(text.starts_with("#!/bin/bash\n"));
    assert!(text.contains("#SBATCH --array=0-1\n"), "{text}");
    assert!(text.contains("#SBATCH --gres=gpu:1"), "{text}");
    assert!(
        text.contains("--index \"$SLURM_ARRAY_TASK_ID\" --resume"),
        "{text}"
    );
    // Directives come before the first command, as sbatch requires.
    let first_cmd = text
        .lines()
        .position(|l| !l.starts_with('#') && !l.is_empty())
        .unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let last_directive = lines
        .iter()
        .rposition(|l| l.starts_with("#SBATCH"))
        .unwrap();
    assert!(last_directive < first_cmd, "{text}");
    assert!(
        dir.path().join("runs/slurm").is_dir(),
        "the --output folder must exist before sbatch"
    );
    // --index N runs point N.
    let out = run(&["train", cfg.to_str().unwrap(), "--index", "7"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("the sweep has 2 point(s)"));
}

/// `train CFG --emit-slurm SCRIPT EXTRA...`: the script's text, checked by `bash -n`.
fn emit_slurm(cfg: &Path, script: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "train",
        cfg.to_str().unwrap(),
        "--emit-slurm",
        script.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(script).unwrap();
    let syntax = Command::new("bash").arg("-n").arg(script).status().unwrap();
    assert!(syntax.success(), "bash -n failed:\n{text}");
    text
}

#[test]
fn emit_slurm_multi_node_runs_one_srun_task_per_gpu() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let script = dir.path().join("ddp.sbatch");
    let text = emit_slurm(&cfg, &script, &["--nodes", "2", "--gpus-per-node", "4"]);
    for line in [
        "#SBATCH --array=0-1\n",
        "#SBATCH --nodes=2\n",
        "#SBATCH --ntasks-per-node=4\n",
        "#SBATCH --gres=gpu:4\n",
        "export MASTER_ADDR=\"$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1)\"\n",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
    let launch = text.lines().last().unwrap();
    assert!(
        launch.starts_with("exec srun --kill-on-bad-exit=1 ")
            && launch.contains(" train ")
            && launch.contains("--index \"$SLURM_ARRAY_TASK_ID\" --resume --device cuda"),
        "{launch}"
    );
    // The tasks join through Slurm's variables: no --world-size in the script.
    assert!(!text.contains("--world-size"), "{text}");
    let first_cmd = text
        .lines()
        .position(|l| !l.starts_with('#') && !l.is_empty())
        .unwrap();
    let last_directive = text
        .lines()
        .collect::<Vec<_>>()
        .iter()
        .rposition(|l| l.starts_with("#SBATCH"))
        .unwrap();
    assert!(last_directive < first_cmd, "{text}");
    // The layout flags need --emit-slurm.
    let out = run(&["train", cfg.to_str().unwrap(), "--nodes", "2"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--emit-slurm"));
}

#[test]
fn devices_run_points_in_parallel_and_report_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path());
    let cfg_s = cfg.to_str().unwrap();
    // Two CPU "devices": one child process per point, at the same time.
    let out = run(&["train", cfg_s, "--devices", "cpu,cpu", "--quiet"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cpu: lr=0.0003") && err.contains("cpu: lr=0.5"),
        "{err}"
    );
    // The diverging point stopped (a result); the parent exits 0.
    assert!(out.status.success(), "{err}");
    let state = |id: &str| -> serde_json::Value {
        serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(format!("runs/{id}/status.json"))).unwrap(),
        )
        .unwrap()
    };
    assert_eq!(state("lr=0.0003")["state"], "finished");
    assert_eq!(state("lr=0.5")["state"], "stopped");

    let out = run(&["train", cfg_s, "--devices", "cpu,tpu"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--devices: 'tpu' is not a device"), "{err}");
    assert_eq!(
        err.lines().count(),
        1,
        "one error, before any child starts: {err}"
    );
}

#[test]
fn a_real_error_fails_its_point_and_the_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let tables = common::tiny_experiment_tables(dir.path(), 12, 3);
    let good = dir.path().join("shapes/train");
    let missing = dir.path().join("no-such-folder");
    let cfg = format!(
        r#"experiment = "broken"
{tables}[train]
steps = 2
batch_size = 2
validate_every = 0
checkpoint_every = 0
[output]
dir = "{out}"
[sweep]
data.images = ["{good}", "{missing}"]
"#,
        out = dir.path().join("runs").display(),
        good = good.display(),
        missing = missing.display(),
    );
    let p = dir.path().join("broken.toml");
    std::fs::write(&p, cfg).unwrap();
    for extra in [&[][..], &["--devices", "cpu,cpu"][..]] {
        let _ = std::fs::remove_dir_all(dir.path().join("runs"));
        let out = run(&[
            &["train", p.to_str().unwrap(), "--device", "cpu", "--quiet"],
            extra,
        ]
        .concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra:?}: {err}");
        assert!(
            err.contains("1 sweep point(s) failed: images=no-such-folder:")
                && err.contains("no-such-folder"),
            "{extra:?}: {err}"
        );
        let status: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("runs/images=no-such-folder/status.json"))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(status["state"], "failed", "{status}");
        let ok: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("runs/images=train/status.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(ok["state"], "finished", "{ok}");
    }
}
