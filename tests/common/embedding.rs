//! The textual-inversion embedding fixtures (tools/make_embedding_fixtures.py,
//! tools/make_pt_embedding_fixtures.py) of tests/embedding.rs and tests/embedding_cli.rs.
use super::fixtures;
use serde_json::Value;
use std::path::PathBuf;

pub fn dir() -> PathBuf {
    fixtures().join("embedding")
}

/// tools/make_pt_embedding_fixtures.py's torch.save files (the safetensors fixtures' vectors).
pub fn pt_dir() -> PathBuf {
    fixtures().join("embedding-pt")
}

pub fn read_json(name: &str) -> Vec<Value> {
    serde_json::from_str(&std::fs::read_to_string(dir().join(name)).unwrap()).unwrap()
}

/// What the command line names for a fixture file: diffusers' training folder for
/// `studio/learned_embeds.safetensors`, the file otherwise.
pub fn cli_path(file: &str) -> PathBuf {
    let p = dir().join(file);
    match file.strip_suffix("/learned_embeds.safetensors") {
        Some(folder) => dir().join(folder),
        None => p,
    }
}

pub fn text(c: &Value, k: &str) -> String {
    c[k].as_str().unwrap().to_string()
}
