//! Experiment-config files of tests/train_config.rs and tests/train_config_keys.rs.
use std::path::{Path, PathBuf};
use studioize::train::config::ExperimentConfig;

pub fn experiments() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("experiments")
}

/// Writes `body` as `<dir>/<name>` and returns the path.
pub fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

pub const MINIMAL: &str = r#"
[model]
base = "models/sd"
[data]
images = "data/imgs"
"#;

pub fn load_err(path: &Path, overrides: &[&str]) -> String {
    let ov: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    match ExperimentConfig::load(path, &ov) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => format!("{e:#}"),
    }
}

pub fn assert_names(err: &str, file: &Path, key: &str) {
    assert!(
        err.contains(&file.display().to_string()),
        "error does not name the file: {err}"
    );
    assert!(err.contains(key), "error does not name '{key}': {err}");
}
