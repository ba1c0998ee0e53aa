//! Data-parallel training on c10d's Gloo (CPU), end to end on the tiny model: two processes
//! with `train.batch_size = 2` follow the single process with `batch_size = 4` (same data,
//! noise and timesteps, split by rows), only rank 0 writes the run folder, a killed rank makes
//! the other fail at once with one error line instead of hanging, and the job resumes exactly.
use common::{csv_rows, train_quiet as train};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

mod common;

/// Losses of the two runs may differ by float rounding only (batched convolutions, the
/// all-reduce's sums).
const TOL: f64 = 1e-4;

/// A shapes dataset plus a config training into `dir/run`.
fn setup(dir: &Path, steps: u64) -> PathBuf {
    let cfg = format!(
        r#"
{tables}[train]
steps = {steps}
batch_size = 4
gradient_accumulation = 2
learning_rate = 1e-3
lr_schedule = "constant"
warmup_steps = 0
checkpoint_every = 2
validate_every = 2
validation_timesteps = 4
snr_gamma = 5.0
seed = 5
dist_timeout_s = 20
[output]
dir = "{run}"
"#,
        tables = common::tiny_experiment_tables(dir, 24, 3),
        run = dir.join("run").display(),
    );
    let path = dir.join("exp.toml");
    std::fs::write(&path, cfg).unwrap();
    path
}

fn assert_ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Step, epoch, loss, lr and grad_norm of two metrics.csv agree (validation.csv: the losses).
fn assert_same_run(a: &Path, b: &Path) {
    let (ra, rb) = (
        csv_rows(&a.join("metrics.csv")),
        csv_rows(&b.join("metrics.csv")),
    );
    assert_eq!(ra.len(), rb.len(), "steps differ");
    for (x, y) in ra.iter().zip(&rb) {
        assert_eq!(x[..2], y[..2], "step / epoch");
        for col in 2..5 {
            let (p, q): (f64, f64) = (x[col].parse().unwrap(), y[col].parse().unwrap());
            assert!(
                (p - q).abs() < TOL,
                "step {}: column {col}: {p} vs {q}",
                x[0]
            );
        }
    }
    let (va, vb) = (
        csv_rows(&a.join("validation.csv")),
        csv_rows(&b.join("validation.csv")),
    );
    assert_eq!(va.len(), vb.len(), "validations differ");
    for (x, y) in va.iter().zip(&vb) {
        assert_eq!(x[0], y[0]);
        let (p, q): (f64, f64) = (x[1].parse().unwrap(), y[1].parse().unwrap());
        assert!(
            (p - q).abs() < TOL,
            "validation at step {}: {p} vs {q}",
            x[0]
        );
    }
}

/// Every path under `dir`, relative, sorted.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(root).unwrap().display().to_string());
            if p.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn two_processes_equal_one_with_the_doubled_batch() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path(), 4);
    let single = dir.path().join("single");
    let single_set = format!("output.dir={}", single.display());
    assert_ok(&train(&cfg, &["--set", &single_set]));
    let ddp = dir.path().join("ddp");
    let ddp_set = format!("output.dir={}", ddp.display());
    let out = train(
        &cfg,
        &[
            "--world-size",
            "2",
            "--set",
            "train.batch_size=2",
            "--set",
            &ddp_set,
        ],
    );
    assert_ok(&out);
    assert_same_run(&single, &ddp);
    // The same files (written once, by rank 0); the config is the per-process one.
    assert_eq!(tree(&single), tree(&ddp));
    let written = std::fs::read_to_string(ddp.join("config.toml")).unwrap();
    assert!(written.contains("batch_size = 2"), "{written}");
    let status = std::fs::read_to_string(ddp.join("status.json")).unwrap();
    assert!(status.contains("\"finished\""), "{status}");
}

/// One rank of a 2-process job started by hand, as torchrun would (rank 1 is told another
/// output folder, which it must never create).
fn rank(cfg: &Path, rank: usize, port: u16, out_dir: &Path) -> Child {
    common::train_command(cfg)
        .args(["--set", &format!("output.dir={}", out_dir.display())])
        .args(["--set", "train.batch_size=2"])
        .env("RANK", rank.to_string())
        .env("WORLD_SIZE", "2")
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .env("OMP_NUM_THREADS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_killed_rank_fails_the_other_and_the_job_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let steps = 10;
    let cfg = setup(dir.path(), steps);
    let run = dir.path().join("run");
    let elsewhere = dir.path().join("rank1-output");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r0 = rank(&cfg, 0, port, &run);
    let mut r1 = rank(&cfg, 1, port, &elsewhere);
    let metrics = run.join("metrics.csv");
    let t0 = Instant::now();
    while csv_rows_or_none(&metrics) < 3 && t0.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(20));
    }
    r1.kill().unwrap();
    r1.wait().unwrap();
    let killed = Instant::now();
    let out = r0.wait_with_output().unwrap();
    // Well within the collective timeout (20 s): the closed connection fails the all-reduce.
    assert!(
        killed.elapsed() < Duration::from_secs(20),
        "{:?}",
        killed.elapsed()
    );
    let err = common::one_line_error(&out);
    assert!(
        err.starts_with("error: ") && err.contains("process group"),
        "{err}"
    );
    let killed_at = csv_rows(&metrics).len() as u64;
    assert!(killed_at < steps, "the run finished before the kill");
    let status = std::fs::read_to_string(run.join("status.json")).unwrap();
    assert!(status.contains("\"failed\""), "{status}");
    assert!(!elsewhere.exists(), "rank 1 created its output folder");

    // The job continues from rank 0's last checkpoint, every rank reading it.
    assert_ok(&train(
        &cfg,
        &[
            "--world-size",
            "2",
            "--resume",
            "--set",
            "train.batch_size=2",
        ],
    ));
    let single = dir.path().join("single");
    let single_set = format!("output.dir={}", single.display());
    assert_ok(&train(&cfg, &["--set", &single_set]));
    assert_same_run(&single, &run);
}

fn csv_rows_or_none(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |s| s.lines().count().saturating_sub(1))
}
