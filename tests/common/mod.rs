//! Helpers shared by the integration tests; the submodules hold those of one theme's test
//! files (config: tests/train_config*.rs, curves: tests/monitor*.rs, data: tests/data*.rs,
//! embedding: tests/embedding*.rs, train_run: tests/train.rs and tests/train_runs.rs).
#![allow(dead_code)]
pub mod config;
pub mod curves;
pub mod data;
pub mod embedding;
pub mod train_run;

use std::collections::HashMap;
use std::path::PathBuf;
use tch::Tensor;

/// The repository's test fixture folder.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
}

/// Reads a reference safetensors file into a name -> tensor map.
pub fn read_refs(path: &std::path::Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .into_iter()
        .collect()
}

/// Relative error of `actual` against `expected`: max |a - e| / max |e|.
pub fn rel_err(actual: &Tensor, expected: &Tensor) -> f64 {
    assert_eq!(actual.size(), expected.size(), "shape mismatch");
    let a = actual.to_kind(tch::Kind::Double);
    let e = expected.to_kind(tch::Kind::Double);
    let diff = f64::try_from((&a - &e).abs().max()).unwrap();
    let scale = f64::try_from(e.abs().max()).unwrap().max(1e-12);
    diff / scale
}

/// Asserts `actual` matches `expected` within `tol` relative error (see [`rel_err`]).
pub fn assert_close(what: &str, actual: &Tensor, expected: &Tensor, tol: f64) {
    assert_eq!(actual.size(), expected.size(), "{what}: shape mismatch");
    let err = rel_err(actual, expected);
    assert!(err <= tol, "{what}: relative error {err:e} > {tol:e}");
}

/// The synthetic shapes dataset in `dir/shapes` (made once: `shapes` training images, 8 prior
/// images, 32 px, `seed`) and the `[model]` + `[data]` tables of an experiment config that
/// trains the tiny SD model on it. Tests append their own `[train]`, `[output]`, `[sweep]`.
pub fn tiny_experiment_tables(dir: &std::path::Path, shapes: usize, seed: u64) -> String {
    let data = dir.join("shapes");
    if !data.exists() {
        studioize::data::shapes::generate_fixture(&data, shapes, 8, 32, seed).unwrap();
    }
    format!(
        r#"[model]
base = "{model}"
[data]
images = "{data}/train"
captions = "{data}/train/metadata.csv"
prior_images = "{data}/prior"
prior_captions = "{data}/prior/metadata.csv"
resolution = 32
validation_split = 0.25
num_workers = 1
"#,
        model = fixtures().join("sd").join("tiny-a").display(),
        data = data.display(),
    )
}

/// Runs the `studioize` binary with `args`.
pub fn studioize(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_studioize"))
        .args(args)
        .output()
        .unwrap()
}

/// The tiny SD test model's folder, as a string for command lines.
pub fn tiny_a() -> String {
    fixtures().join("sd").join("tiny-a").display().to_string()
}

/// The last stderr line of a failed command, which must be an `error:` line (and no panic).
pub fn one_line_error(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert!(!out.status.success(), "expected failure: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let last = err.lines().last().unwrap_or_default().to_string();
    assert!(last.starts_with("error: "), "{err}");
    last
}

/// The data rows of a CSV written by `train` (header skipped), split on commas.
pub fn csv_rows(path: &std::path::Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

/// The whole stderr of a failed command, which must be exactly one `error:` line (no panic).
pub fn sole_error_line(out: &std::process::Output) -> String {
    assert!(!out.status.success(), "expected failure");
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: ") && !err.contains("panicked"),
        "{err}"
    );
    err
}

/// A CSV file's header and rows, parsed by the csv crate (quoted fields included).
pub fn read_csv_table(path: &std::path::Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let h = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r
        .records()
        .map(|x| x.unwrap().iter().map(String::from).collect())
        .collect();
    (h, rows)
}

/// (mean, 99th percentile) of the absolute per-channel differences of two images, in levels of
/// 255: the parity measure of the image tests (diffusers' images within mean 1, p99 4).
pub fn diff_stats(a: &image::RgbImage, b: &image::RgbImage) -> (f64, f64) {
    assert_eq!(a.dimensions(), b.dimensions());
    let mut d: Vec<f64> = (a.as_raw().iter().zip(b.as_raw()))
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .collect();
    d.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let p99 = d[((d.len() as f64 * 0.99).ceil() as usize).min(d.len() - 1)];
    (d.iter().sum::<f64>() / d.len() as f64, p99)
}

/// The command `studioize train CFG --device cpu --quiet`, to add to, run or spawn.
pub fn train_command(cfg: &std::path::Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_studioize"));
    cmd.args(["train", cfg.to_str().unwrap(), "--device", "cpu", "--quiet"]);
    cmd
}

/// `studioize train CFG --device cpu --quiet ARGS...`.
pub fn train_quiet(cfg: &std::path::Path, args: &[&str]) -> std::process::Output {
    train_command(cfg).args(args).output().unwrap()
}

/// The tiny SD test model, loaded on the CPU in fp32.
pub fn load_tiny_a() -> studioize::pipelines::StableDiffusion {
    studioize::pipelines::StableDiffusion::load(
        &fixtures().join("sd").join("tiny-a"),
        &studioize::pipelines::LoadOptions::default(),
    )
    .unwrap()
}

/// diffusers' image of the tiny model with `lora` (tools/check_lora.py: seed 3, 6 steps,
/// guidance 7.5, 32x32, no negative prompt), and the JSON line it prints.
pub fn diffusers_lora_image(
    lora: &std::path::Path,
    prompt: &str,
    out: &std::path::Path,
) -> serde_json::Value {
    let python = option_env!("STUDIOIZE_PYTHON")
        .map(std::path::PathBuf::from)
        .filter(|p| p.exists())
        .expect(
            "STUDIOIZE_PYTHON (written by setup.sh into .cargo/config.toml) must point at the venv",
        );
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/check_lora.py");
    let o = std::process::Command::new(python)
        .arg(script)
        .args(["--model", &tiny_a(), "--prompt", prompt, "--negative", ""])
        .args(["--seed", "3", "--steps", "6", "--guidance", "7.5"])
        .args(["--width", "32", "--height", "32"])
        .arg("--lora")
        .arg(lora)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "diffusers refuses {}: {}",
        lora.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().last().unwrap()).unwrap()
}

/// A run folder's `metrics.csv` and `validation.csv` rows.
pub type RunLogs = (Vec<Vec<String>>, Vec<Vec<String>>);

/// The logs of the run in `run`.
pub fn run_logs(run: &std::path::Path) -> RunLogs {
    (
        csv_rows(&run.join("metrics.csv")),
        csv_rows(&run.join("validation.csv")),
    )
}

/// Two runs' logs hold the same rows, `steps` of metrics and at least two validations, whose
/// losses, learning rates and gradient norms agree within 1e-5 (relative above 1).
pub fn assert_same_logs(a: &RunLogs, b: &RunLogs, steps: usize) {
    let ((ma, va), (mb, vb)) = (a, b);
    assert_eq!(ma.len(), steps);
    assert!(va.len() >= 2);
    assert_eq!((ma.len(), va.len()), (mb.len(), vb.len()));
    // metrics.csv: step, epoch, loss, lr, grad_norm; validation.csv: step, loss.
    for (a, b, cols) in [(ma, mb, 2..5), (va, vb, 1..2)] {
        for (x, y) in a.iter().zip(b) {
            for c in cols.clone() {
                let (p, q): (f64, f64) = (x[c].parse().unwrap(), y[c].parse().unwrap());
                assert!(
                    (p - q).abs() <= 1e-5 * q.abs().max(1.0),
                    "step {} column {c}: {p} vs {q}",
                    x[0]
                );
            }
        }
    }
}

/// The txt2img settings of a reference case (`tests/fixtures/pipelines/cases.json` and the
/// fixtures made like it), for `num_images` images.
pub fn text_to_image_case(
    c: &serde_json::Value,
    num_images: i64,
) -> studioize::pipelines::text2img::TextToImage {
    studioize::pipelines::text2img::TextToImage {
        prompt: c["prompt"].as_str().unwrap().into(),
        negative_prompt: c["negative_prompt"].as_str().unwrap().into(),
        steps: c["steps"].as_u64().unwrap() as usize,
        guidance: c["guidance"].as_f64().unwrap(),
        seed: c["seed"].as_u64().unwrap(),
        width: c["width"].as_i64().unwrap(),
        height: c["height"].as_i64().unwrap(),
        num_images,
    }
}
