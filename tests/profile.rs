//! `--profile` / `--profile-json`: the stages of generate, caption, train and bench-train are
//! counted as the work is done (one UNet call per denoising step, two text-encoder calls with
//! guidance and one without, one vision pass per batch, one optimizer update per step), nested
//! (a child never outlasts its parent), and printed as a table on stderr.
mod caption_util;
mod common;

use common::{fixtures, studioize, tiny_a};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// `path -> (calls, total_s)` of a `--profile-json` file, after checking every stage's
/// nesting against its parent and the whole wall time.
fn stages(json: &Path) -> HashMap<String, (u64, f64)> {
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    let wall = doc["wall_s"].as_f64().unwrap();
    let mut out = HashMap::new();
    for s in doc["stages"].as_array().unwrap() {
        let path = s["path"].as_str().unwrap().to_string();
        let total = s["total_s"].as_f64().unwrap();
        assert!(
            total >= 0.0 && total <= wall,
            "{path}: {total} s of {wall} s"
        );
        assert!(s["self_s"].as_f64().unwrap() <= total + 1e-9, "{path}");
        out.insert(path, (s["calls"].as_u64().unwrap(), total));
    }
    for (path, (_, total)) in &out {
        if let Some((parent, _)) = path.rsplit_once('/') {
            let (_, parent_total) = out[parent];
            assert!(
                *total <= parent_total + 1e-6,
                "{path} ({total} s) outlasts {parent} ({parent_total} s)"
            );
        }
    }
    out
}

fn calls(stages: &HashMap<String, (u64, f64)>, path: &str) -> u64 {
    stages
        .get(path)
        .unwrap_or_else(|| panic!("no stage {path}: {:?}", stages.keys()))
        .0
}

/// An experiment config training the tiny model on 8 shapes, with `train` lines added to its
/// `[train]` table; written into `dir`.
fn experiment(dir: &Path, train: &str) -> std::path::PathBuf {
    let cfg = format!(
        "{tables}[train]\n{train}\nlearning_rate = 1e-4\nvalidate_every = 0\nseed = 1\n\
         [output]\ndir = \"{run}\"\n",
        tables = common::tiny_experiment_tables(dir, 8, 2),
        run = dir.join("run").display(),
    );
    let path = dir.join("exp.toml");
    std::fs::write(&path, cfg).unwrap();
    path
}

fn ok(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err}");
    err
}

#[test]
fn generate_counts_one_unet_call_per_step_and_the_guidance_prompts() {
    let dir = tempfile::tempdir().unwrap();
    for (guidance, text_calls) in [("7.5", 2), ("1", 1)] {
        let json = dir.path().join(format!("g{guidance}.json"));
        let out = dir.path().join(format!("guidance-{text_calls}"));
        let err = ok(&studioize(&[
            "--profile-json",
            json.to_str().unwrap(),
            "generate",
            "--model",
            &tiny_a(),
            "--prompt",
            "a blue vase",
            "--sampler",
            "ddim",
            "--steps",
            "4",
            "--guidance",
            guidance,
            "--num-images",
            "2",
            "--device",
            "cpu",
            "--out",
            out.to_str().unwrap(),
        ]));
        assert!(err.contains("profile: ") && err.contains("  unet"), "{err}");
        let s = stages(&json);
        assert_eq!(calls(&s, "load model"), 1);
        for part in ["text encoder", "unet", "vae"] {
            assert_eq!(calls(&s, &format!("load model/{part}")), 1, "{part}");
        }
        // Two images of one prompt: one batched UNet call per step.
        assert_eq!(calls(&s, "text-to-image"), 1);
        assert_eq!(calls(&s, "text-to-image/unet"), 4);
        assert_eq!(calls(&s, "text-to-image/scheduler"), 4);
        assert_eq!(calls(&s, "text-to-image/text encoder"), text_calls);
        assert_eq!(calls(&s, "text-to-image/vae decode"), 1);
        assert_eq!(calls(&s, "write images"), 1);
    }
}

#[test]
fn the_flag_is_taken_after_the_command_too_and_costs_nothing_unasked() {
    let dir = tempfile::tempdir().unwrap();
    let photo = fixtures().join("blip/images");
    let first = std::fs::read_dir(&photo).unwrap().next().unwrap().unwrap();
    let args = |out: &str| {
        vec![
            "transform".to_string(),
            "--model".into(),
            tiny_a(),
            "--prompt".into(),
            "a studio photo".into(),
            "--steps".into(),
            "4".into(),
            "--strength".into(),
            "0.5".into(),
            "--sampler".into(),
            "ddim".into(),
            "--size".into(),
            "32".into(),
            "--device".into(),
            "cpu".into(),
            "--out".into(),
            dir.path().join(out).display().to_string(),
            first.path().display().to_string(),
        ]
    };
    let json = dir.path().join("transform.json");
    let mut with = args("with");
    with.extend(["--profile".into(), "--profile-json".into()]);
    with.push(json.display().to_string());
    let with: Vec<&str> = with.iter().map(String::as_str).collect();
    let err = ok(&studioize(&with));
    assert!(
        err.contains("image-to-image") && err.contains("vae encode"),
        "{err}"
    );
    assert!(err.contains("(outside the stages)"), "{err}");
    let s = stages(&json);
    assert_eq!(calls(&s, "read image"), 1);
    assert_eq!(calls(&s, "image-to-image/vae encode"), 1);
    // Strength 0.5 of 4 DDIM steps: the UNet runs the last 2.
    assert_eq!(calls(&s, "image-to-image/unet"), 2);
    assert_eq!(calls(&s, "image-to-image/vae decode"), 1);
    let without = args("without");
    let without: Vec<&str> = without.iter().map(String::as_str).collect();
    let err = ok(&studioize(&without));
    assert!(!err.contains("profile:"), "{err}");
}

#[test]
fn caption_counts_one_vision_pass_per_batch() {
    let dir = tempfile::tempdir().unwrap();
    let photos = caption_util::photo_folder(dir.path());
    let json = dir.path().join("caption.json");
    let out = caption_util::caption(
        &dir.path().join("captions.csv"),
        &[&photos],
        &[
            "--batch-size",
            "2",
            "--profile-json",
            json.to_str().unwrap(),
        ],
    );
    ok(&out);
    let readable = caption_util::read_rows(&dir.path().join("captions.csv")).len() as u64;
    let s = stages(&json);
    assert_eq!(calls(&s, "load model"), 1);
    let batches = calls(&s, "captions");
    assert!(
        batches >= readable.div_ceil(2) && batches <= readable,
        "{batches} batches for {readable} images"
    );
    assert_eq!(calls(&s, "captions/vision encoder"), batches);
    assert_eq!(calls(&s, "captions/cross-attention cache"), batches);
    // At least one decoder step per batch, at most --max-new-tokens (12).
    let steps = calls(&s, "captions/text decoder");
    assert!(steps >= batches && steps <= 12 * batches, "{steps}");
    // Every image was read on the loader's threads.
    assert!(calls(&s, "read images (loader)") > readable);
}

#[test]
fn train_and_bench_train_count_one_update_per_step() {
    let dir = tempfile::tempdir().unwrap();
    let path = experiment(
        dir.path(),
        "steps = 3\nbatch_size = 2\ngradient_accumulation = 2\ncheckpoint_every = 3",
    );
    let json = dir.path().join("train.json");
    ok(&common::train_quiet(
        &path,
        &["--profile-json", json.to_str().unwrap()],
    ));
    let s = stages(&json);
    assert_eq!(calls(&s, "micro-step"), 6);
    for part in [
        "data",
        "data/images",
        "data/vae encode",
        "unet forward",
        "backward",
    ] {
        assert_eq!(calls(&s, &format!("micro-step/{part}")), 6, "{part}");
    }
    assert_eq!(calls(&s, "step"), 3);
    assert_eq!(calls(&s, "step/optimizer"), 3);
    assert_eq!(calls(&s, "step/clip gradients"), 3);
    assert_eq!(calls(&s, "checkpoint"), 1);
    for once in [
        "load model",
        "trainables",
        "data sources",
        "optimizer state",
        "data stream",
    ] {
        assert_eq!(calls(&s, once), 1, "{once}");
    }

    let json = dir.path().join("bench.json");
    let unet = fixtures().join("sd/tiny-a/unet/config.json");
    ok(&studioize(&[
        "bench-train",
        "--unet-config",
        unet.to_str().unwrap(),
        "--latent-size",
        "4",
        "--steps",
        "3",
        "--device",
        "cpu",
        "--profile-json",
        json.to_str().unwrap(),
    ]));
    let s = stages(&json);
    // Two warm-up steps, then the three timed.
    for part in ["unet forward", "backward", "clip gradients", "optimizer"] {
        assert_eq!(calls(&s, &format!("step/{part}")), 5, "{part}");
    }
}

#[test]
fn each_data_parallel_rank_writes_its_own_profile() {
    let dir = tempfile::tempdir().unwrap();
    let path = experiment(
        dir.path(),
        "steps = 2\nbatch_size = 1\ncheckpoint_every = 2\ndist_timeout_s = 20",
    );
    let json = dir.path().join("p.json");
    ok(&common::train_quiet(
        &path,
        &[
            "--world-size",
            "2",
            "--profile-json",
            json.to_str().unwrap(),
        ],
    ));
    for rank in 0..2 {
        let s = stages(&dir.path().join(format!("p.rank{rank}.json")));
        assert_eq!(calls(&s, "step/all-reduce"), 2, "rank {rank}");
        assert_eq!(calls(&s, "micro-step/unet forward"), 2, "rank {rank}");
    }
    // The launcher's own (it trains nothing).
    assert!(!stages(&json).contains_key("step"));
}
