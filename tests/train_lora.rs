//! LoRA runs (`[lora]`): step 0 is the base model, only adapters are saved (both formats, under
//! 1 MB on the tiny model), diffusers' `load_lora_weights` takes both files and renders the
//! image `studioize generate --lora` renders, `--set lora.rank` reaches the run, and a killed
//! run resumed from its fp16 checkpoint equals an uninterrupted one.
mod common;

use common::{csv_rows, diff_stats, fixtures, studioize, tiny_a};
use std::path::{Path, PathBuf};
use studioize::imageio;

/// A shapes dataset plus a LoRA experiment writing into `dir/run`.
fn setup(dir: &Path, train: &str, lora: &str) -> PathBuf {
    let cfg = format!(
        r#"
{tables}[train]
steps = 20
batch_size = 4
learning_rate = 1e-2
lr_schedule = "constant"
checkpoint_every = 10
validate_every = 10
validation_timesteps = 4
seed = 5
{train}
[lora]
{lora}
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

use common::train_quiet as train;

fn ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const PROMPT: &str = "a red circle on a blue background";

fn generate(lora: Option<&Path>, out: &Path) {
    let model = tiny_a();
    let mut args = vec![
        "generate",
        "--model",
        &model,
        "--prompt",
        PROMPT,
        "--steps",
        "6",
        "--seed",
        "3",
        "--width",
        "32",
        "--height",
        "32",
        "--out",
        out.to_str().unwrap(),
    ];
    let spec = lora.map(|l| l.display().to_string());
    if let Some(s) = &spec {
        args.extend(["--lora", s]);
    }
    ok(&studioize(&args));
}

/// diffusers' image for `lora` with the `generate` settings above.
fn diffusers_image(lora: &Path, out: &Path) -> serde_json::Value {
    common::diffusers_lora_image(lora, PROMPT, out)
}

#[test]
fn lora_run_saves_adapters_that_diffusers_loads() {
    let dir = tempfile::tempdir().unwrap();
    let samples = format!("sample_every_checkpoint = true\nvalidation_prompts = [\"{PROMPT}\"]");
    let lora = "rank = 4\nalpha = 4\ntext_encoder = true\nconv_rank = 2";
    let cfg = setup(dir.path(), &samples, lora);
    ok(&train(&cfg, &["--set", "lora.rank=8"]));
    let run = dir.path().join("run");
    let val = csv_rows(&run.join("validation.csv"));
    let (first, last): (f64, f64) = (
        val[0][1].parse().unwrap(),
        val.last().unwrap()[1].parse().unwrap(),
    );
    assert!(last < first, "validation loss {first} -> {last}");

    // Step 0 is the base model: B is zero, so the step-0 validation equals a full run's.
    let full_dir = tempfile::tempdir().unwrap();
    let full = setup(full_dir.path(), "", "");
    let text = std::fs::read_to_string(&full)
        .unwrap()
        .replace("[lora]\n", "");
    std::fs::write(&full, text).unwrap();
    ok(&train(&full, &["--set", "train.steps=1"]));
    let full_val = csv_rows(&full_dir.path().join("run/validation.csv"));
    assert_eq!(
        val[0][1..],
        full_val[0][1..],
        "step-0 validation and prior losses"
    );

    let ckpt = run.join("checkpoints/step-20");
    assert!(
        !ckpt.join("unet").exists(),
        "a LoRA checkpoint holds no base weights"
    );
    let diffusers_file = ckpt.join("pytorch_lora_weights.safetensors");
    let kohya_file = ckpt.join("lora_kohya.safetensors");
    for f in [&diffusers_file, &kohya_file] {
        let size = std::fs::metadata(f).unwrap().len();
        assert!(size < 1 << 20, "{}: {size} bytes", f.display());
    }

    let model_dir = tiny_a();
    // Ours, from either file, and diffusers', from either file, are one image ...
    let ours = dir.path().join("ours.png");
    generate(Some(&diffusers_file), &ours);
    let ours = imageio::read_rgb(&ours).unwrap();
    let ours_kohya = dir.path().join("ours-kohya.png");
    generate(Some(&kohya_file), &ours_kohya);
    let (mean, _) = diff_stats(&ours, &imageio::read_rgb(&ours_kohya).unwrap());
    assert!(mean < 0.01, "the two files differ in studioize: {mean}");
    for f in [&diffusers_file, &kohya_file] {
        let png = dir.path().join("diffusers.png");
        let report = diffusers_image(f, &png);
        let a = &report["adapters"][0];
        assert_eq!(
            a["unet"]["layers"].as_u64(),
            Some(
                a["file_modules"].as_u64().unwrap() - a["text_encoder"]["layers"].as_u64().unwrap()
            ),
            "{report}"
        );
        assert!(
            a["text_encoder"]["layers"].as_u64().unwrap() > 0,
            "{report}"
        );
        // alpha / rank survived: 4 / 8 on the attention layers, 1 / 2 on the LoCon convs.
        for part in ["unet", "text_encoder"] {
            assert_eq!(a[part]["scalings"], serde_json::json!([0.5]), "{report}");
        }
        let (mean, p99) = diff_stats(&ours, &imageio::read_rgb(&png).unwrap());
        assert!(
            mean <= 1.0 && p99 <= 4.0,
            "{}: mean {mean} p99 {p99}",
            f.display()
        );
    }
    // ... which the LoRA changed.
    let base = dir.path().join("base.png");
    generate(None, &base);
    let (mean, _) = diff_stats(&ours, &imageio::read_rgb(&base).unwrap());
    assert!(
        mean > 2.0,
        "the trained LoRA barely changes the image: {mean}"
    );

    // The checkpoints' samples are drawn with the adapters: step 20's is `generate --lora`'s
    // image with the sample's own parameters.
    let sample = run.join("samples/step-20/prompt-00.png");
    let meta = imageio::read_png_params(&sample).unwrap();
    let again = dir.path().join("again.png");
    let n = |k: &str| meta[k].to_string();
    let spec = diffusers_file.display().to_string();
    let args = [
        "generate",
        "--model",
        &model_dir,
        "--lora",
        &spec,
        "--prompt",
        PROMPT,
        "--seed",
        &n("seed"),
        "--steps",
        &n("steps"),
        "--guidance",
        &n("guidance"),
        "--width",
        "32",
        "--height",
        "32",
        "--out",
        again.to_str().unwrap(),
    ];
    ok(&studioize(&args));
    let (mean, _) = diff_stats(
        &imageio::read_rgb(&sample).unwrap(),
        &imageio::read_rgb(&again).unwrap(),
    );
    assert!(
        mean < 0.5,
        "the step-20 sample is not the LoRA's image: {mean} ({meta})"
    );
    let step10 = imageio::read_rgb(&run.join("samples/step-10/prompt-00.png")).unwrap();
    assert!(
        step10 != imageio::read_rgb(&sample).unwrap(),
        "samples follow the adapters"
    );
    // The detector reads a LoRA run as any other.
    ok(&studioize(&["analyze", run.to_str().unwrap()]));
    let analysis: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("analysis.json")).unwrap()).unwrap();
    assert!(analysis["label"].is_string(), "{analysis}");

    // `--set lora.rank=8` reached the adapters (conv layers keep conv_rank 2).
    let meta = studioize::weights::read_safetensors_metadata(&diffusers_file).unwrap();
    let m: serde_json::Value = serde_json::from_str(&meta["lora_adapter_metadata"]).unwrap();
    assert_eq!(m["unet.r"], 8);
    assert_eq!(m["unet.rank_pattern"]["down_blocks.0.resnets.0.conv1"], 2);
    assert_eq!(m["text_encoder.r"], 8);

    // compare: the run's LoRA checkpoints and a --lora file as rows, each the image of
    // `transform --lora` with the same parameters.
    let photo = fixtures().join("pipelines/input-photo.png");
    let photo = photo.to_str().unwrap();
    let cmp = dir.path().join("cmp");
    let other = format!("{}:0.5", fixtures().join("lora/a").display());
    let params = [
        "--prompt",
        PROMPT,
        "--steps",
        "6",
        "--seed",
        "2",
        "--strength",
        "0.6",
    ];
    let mut args = vec![
        "compare",
        run.to_str().unwrap(),
        "--include-base",
        "--lora",
        &other,
    ];
    args.extend(params);
    args.extend(["--inputs", photo, "--out", cmp.to_str().unwrap()]);
    ok(&studioize(&args));
    let img = |rel: &str| imageio::read_rgb(&cmp.join(rel).join("input-photo.png")).unwrap();
    let ckpt_spec = ckpt.display().to_string();
    for (row, spec) in [
        ("step-20", ckpt_spec.as_str()),
        ("lora/a@0.5", other.as_str()),
    ] {
        let t = dir.path().join("t.png");
        let mut args = vec!["transform", "--model", &model_dir, "--lora", spec];
        args.extend(params);
        args.extend(["--out", t.to_str().unwrap(), photo]);
        ok(&studioize(&args));
        assert!(
            imageio::read_rgb(&t).unwrap() == img(row),
            "{row}: compare and transform --lora disagree"
        );
    }
    assert!(img("step-10") != img("step-20") && img("base") != img("step-20"));
    let (_, rows) = common::read_csv_table(&cmp.join("compare.csv"));
    let runs: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(runs, ["base", "run", "run", "lora"], "{rows:?}");
}

#[test]
fn killed_lora_run_resumes_exactly() {
    let extra = "save_dtype = \"fp16\"";
    let a = tempfile::tempdir().unwrap();
    ok(&train(&setup(a.path(), extra, ""), &[]));
    let b = tempfile::tempdir().unwrap();
    let cfg_b = setup(b.path(), extra, "");
    let mut child = common::train_command(&cfg_b).spawn().unwrap();
    let metrics = b.path().join("run/metrics.csv");
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(&metrics)
        .map(|s| s.lines().count())
        .unwrap_or(0)
        <= 12
        && t0.elapsed().as_secs() < 120
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let killed_at = csv_rows(&metrics).len();
    assert!(
        (11..20).contains(&killed_at),
        "killed after {killed_at} steps"
    );
    let master = b
        .path()
        .join("run/checkpoints/step-10/resume/lora.safetensors");
    assert!(
        master.is_file(),
        "fp16 checkpoints keep fp32 adapter masters"
    );
    ok(&train(&cfg_b, &["--resume"]));
    let (ra, rb) = (
        csv_rows(&a.path().join("run/metrics.csv")),
        csv_rows(&metrics),
    );
    assert_eq!(ra.len(), rb.len());
    for (x, y) in ra.iter().zip(&rb) {
        // step, epoch, loss, lr, grad_norm agree; timings differ.
        assert_eq!(x[..5], y[..5], "step {}", x[0]);
    }
    let (va, vb) = (
        csv_rows(&a.path().join("run/validation.csv")),
        csv_rows(&b.path().join("run/validation.csv")),
    );
    assert_eq!(va, vb, "validation losses differ after resume");
    let file = "checkpoints/step-20/pytorch_lora_weights.safetensors";
    let (fa, fb) = (
        std::fs::read(a.path().join("run").join(file)).unwrap(),
        std::fs::read(b.path().join("run").join(file)).unwrap(),
    );
    assert!(fa == fb, "the final adapters differ");
}

#[test]
fn lora_config_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (lora, train_extra, key) in [
        ("rank = 0", "", "lora.rank"),
        ("targets = [\"nothing_like_this\"]", "", "lora.targets"),
        ("", "train_text_encoder = true", "train.train_text_encoder"),
        ("dropout = 1.5", "", "lora.dropout"),
    ] {
        let cfg = setup(dir.path(), train_extra, lora);
        let out = train(&cfg, &[]);
        let err = common::one_line_error(&out);
        assert!(err.contains(key), "{err}");
        let _ = std::fs::remove_dir_all(dir.path().join("run"));
    }
}
