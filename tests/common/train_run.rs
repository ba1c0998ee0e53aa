//! The short training runs of tests/train.rs and tests/train_runs.rs: an experiment config on
//! the shapes dataset, the binary, relative differences.
use std::path::{Path, PathBuf};

pub fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_studioize")
}

pub fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

/// A shapes dataset plus an experiment config writing into `dir/run`.
pub fn setup(dir: &Path, extra: &str) -> PathBuf {
    let cfg = format!(
        r#"
{tables}[train]
steps = 30
batch_size = 4
learning_rate = 1e-3
lr_schedule = "cosine"
warmup_steps = 5
checkpoint_every = 10
validate_every = 10
validation_timesteps = 4
seed = 11
{extra}
[output]
dir = "{run}"
"#,
        tables = super::tiny_experiment_tables(dir, 24, 3),
        run = dir.join("run").display(),
    );
    let path = dir.join("exp.toml");
    std::fs::write(&path, cfg).unwrap();
    path
}
