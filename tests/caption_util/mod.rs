//! Helpers shared by the `caption` CLI tests (`tests/caption.rs`, `tests/caption_files.rs`):
//! running the binary on the tiny BLIP fixture, its transformers reference captions, reading
//! the output CSV, folders of fixture images.
#![allow(dead_code)]
use crate::common::fixtures;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_studioize"))
}

pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run studioize")
}

pub fn model() -> String {
    fixtures().join("blip/tiny").to_string_lossy().to_string()
}

pub fn refs() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("blip/refs.json")).unwrap())
        .unwrap()
}

/// The transformers captions of a refs.json case, by image name.
pub fn reference(case: &str) -> HashMap<String, String> {
    let r = refs();
    let c = r["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == case)
        .unwrap();
    r["images"]
        .as_array()
        .unwrap()
        .iter()
        .zip(c["captions"].as_array().unwrap())
        .map(|(i, c)| {
            (
                i.as_str().unwrap().to_string(),
                c.as_str().unwrap().to_string(),
            )
        })
        .collect()
}

pub fn read_rows(path: &Path) -> Vec<(String, String)> {
    let mut r = csv::Reader::from_path(path).unwrap();
    assert_eq!(
        r.headers().unwrap().iter().collect::<Vec<_>>(),
        ["file_name", "text"]
    );
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            (rec[0].to_string(), rec[1].to_string())
        })
        .collect()
}

/// The fixture images under `dir` (one in a subfolder) plus a corrupt one.
pub fn photo_folder(dir: &Path) -> PathBuf {
    let photos = dir.join("photos");
    std::fs::create_dir_all(photos.join("sub")).unwrap();
    for e in std::fs::read_dir(fixtures().join("blip/images")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_owned();
        let to = if name == "tall.png" {
            photos.join("sub").join(name)
        } else {
            photos.join(name)
        };
        std::fs::copy(&p, to).unwrap();
    }
    std::fs::write(photos.join("broken.jpg"), b"\xff\xd8\xff not a jpeg").unwrap();
    photos
}

/// `caption` on `inputs` into `out` with the tiny model and short captions, plus `extra` args.
pub fn caption(out: &Path, inputs: &[&Path], extra: &[&str]) -> Output {
    let mut c = bin();
    c.args([
        "caption",
        "--model",
        &model(),
        "--max-new-tokens",
        "12",
        "--device",
        "cpu",
    ])
    .args(extra)
    .arg("--out")
    .arg(out)
    .args(inputs);
    c.output().expect("run studioize")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a failed run printed exactly one `error:` line containing every needle.
pub fn assert_one_line_error(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert!(!o.status.success(), "should fail: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    for n in needles {
        assert!(lines[0].contains(n), "{n:?} not in {err}");
    }
}

/// `n` copies of the fixture images in a new folder `dir/name`.
pub fn copies(dir: &Path, name: &str, n: usize) -> PathBuf {
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    let mut images: Vec<PathBuf> = std::fs::read_dir(fixtures().join("blip/images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    images.sort();
    for i in 0..n {
        std::fs::copy(
            &images[i % images.len()],
            folder.join(format!("p{i:03}.png")),
        )
        .unwrap();
    }
    folder
}
