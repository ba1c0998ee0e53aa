//! Mixed precision on the CPU: bf16 autocast training next to fp32 (the first loss within a
//! few percent, not identical: the shim's dtype is in effect), whole bf16 / fp16 runs, the fp16
//! loss scaler's state across a resume, and frozen models in `model.weights_dtype`.
mod common;

use common::{csv_rows, train_quiet as train};
use serde_json::Value;
use std::path::{Path, PathBuf};
use studioize::device::Precision;
use studioize::pipelines::sampling::to_rgb8;
use studioize::pipelines::text2img::text_to_image;
use studioize::pipelines::{LoadOptions, StableDiffusion};
use studioize::schedulers::from_name;
use tch::{Device, Kind, Tensor};

/// An experiment on the tiny model: `steps` steps, `train_extra` lines in `[train]`,
/// `model_extra` lines in `[model]`, `sections` before `[output]`.
fn experiment(
    dir: &Path,
    steps: u64,
    train_extra: &str,
    model_extra: &str,
    sections: &str,
) -> PathBuf {
    let tables = common::tiny_experiment_tables(dir, 24, 3).replacen(
        "[data]\n",
        &format!("{model_extra}\n[data]\n"),
        1,
    );
    let cfg = format!(
        r#"
{tables}[train]
steps = {steps}
batch_size = 4
learning_rate = 1e-3
lr_schedule = "constant"
warmup_steps = 0
checkpoint_every = 3
validate_every = 0
validation_timesteps = 4
seed = 11
{train_extra}
{sections}[output]
dir = "{run}"
"#,
        run = dir.join("run").display(),
    );
    let path = dir.join("exp.toml");
    std::fs::write(&path, cfg).unwrap();
    path
}

/// Trains `cfg` (plus `args`), asserting success; returns metrics.csv's rows.
fn run(cfg: &Path, args: &[&str]) -> Vec<Vec<String>> {
    let out = train(cfg, args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    csv_rows(&cfg.parent().unwrap().join("run/metrics.csv"))
}

fn loss(row: &[String]) -> f64 {
    row[2].parse().unwrap()
}

fn state(dir: &Path, step: u64) -> serde_json::Value {
    let p = dir.join(format!("run/checkpoints/step-{step}/state.json"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// The first step draws the same noise and timesteps in both runs, so the first losses differ
/// only by the UNet's arithmetic: bf16 (8 mantissa bits) moves it by well under 5 %, but does
/// move it (fp32 autocast would give the same bits). A whole bf16 run then finishes and learns.
#[test]
fn bf16_autocast_trains_on_the_cpu_close_to_fp32() {
    let a = tempfile::tempdir().unwrap();
    let fp32 = run(&experiment(a.path(), 1, "", "", ""), &[]);
    let b = tempfile::tempdir().unwrap();
    let bf16 = run(
        &experiment(b.path(), 12, "mixed_precision = \"bf16\"", "", ""),
        &[],
    );
    let (l32, l16) = (loss(&fp32[0]), loss(&bf16[0]));
    let rel = (l16 - l32).abs() / l32;
    assert!(rel < 0.05, "first loss fp32 {l32} vs bf16 {l16}");
    assert!(
        l16 != l32,
        "bf16 gave fp32's loss bit for bit: autocast off?"
    );
    assert_eq!(bf16.len(), 12);
    let first3: f64 = bf16[..3].iter().map(|r| loss(r)).sum();
    let last3: f64 = bf16[9..].iter().map(|r| loss(r)).sum();
    assert!(
        last3 < first3,
        "bf16 run did not learn: {first3} -> {last3}"
    );
    // No loss scaling in bf16: empty loss_scale, nothing skipped.
    assert!(bf16.iter().all(|r| r[7].is_empty() && r[8] == "0"));
    let status = std::fs::read_to_string(b.path().join("run/status.json")).unwrap();
    assert!(status.contains("\"finished\""), "{status}");
    assert!(state(b.path(), 12).get("loss_scaler").is_none());
}

/// fp16 with loss scaling: every row logs the scale, an overflowing step is skipped (and the
/// run does not stop); the checkpoint keeps the scaler's state,
/// and a resumed run continues from it (here a state as after 1998 good steps at scale 1024:
/// the third step after resuming is the 2000th and doubles the scale).
#[test]
fn fp16_loss_scale_is_checkpointed_and_restored_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = experiment(dir.path(), 3, "mixed_precision = \"fp16\"", "", "");
    let rows = run(&cfg, &[]);
    // GradScaler's first steps may overflow at 65536 (skipped, scale halved); after them the
    // scale holds (no growth within 3 steps).
    let mut scale = 65536.0;
    let mut good = 0;
    for r in &rows {
        assert_eq!(r[7].parse::<f64>().unwrap(), scale, "{rows:?}");
        if r[8] == "1" {
            assert_eq!(r[4], "inf", "a skipped step's gradient norm: {rows:?}");
            scale /= 2.0;
            good = 0;
        } else {
            assert_eq!(r[8], "0");
            good += 1;
        }
    }
    // On this model and seed the first step's scaled gradients overflow fp16: the trainer's
    // skip path runs, and the run goes on (no divergence).
    assert_eq!(rows[0][8], "1", "{rows:?}");
    let s = state(dir.path(), 3);
    assert_eq!(s["loss_scaler"]["scale"], scale);
    assert_eq!(s["loss_scaler"]["growth_tracker"], good);

    let path = dir.path().join("run/checkpoints/step-3/state.json");
    let mut s = s;
    s["loss_scaler"]["scale"] = 1024.0.into();
    s["loss_scaler"]["growth_tracker"] = 1998.into();
    std::fs::write(&path, serde_json::to_string(&s).unwrap()).unwrap();
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("steps = 3\n", "steps = 6\n");
    std::fs::write(&cfg, text).unwrap();
    let rows = run(&cfg, &["--resume"]);
    let scales: Vec<&str> = rows[3..].iter().map(|r| r[7].as_str()).collect();
    assert_eq!(scales, ["1024", "1024", "2048"]);
    let s = state(dir.path(), 6);
    assert_eq!(s["loss_scaler"]["scale"], 2048.0);
    assert_eq!(s["loss_scaler"]["growth_tracker"], 1);
}

/// `model.weights_dtype = "bf16"` under LoRA: the frozen UNet, VAE and text encoder run in
/// bf16 with the fp32 adapters; the run finishes close to the fp32-weights run's first loss.
#[test]
fn lora_on_a_bf16_base_trains() {
    let lora = "[lora]\nrank = 4\n";
    let bf16 = "mixed_precision = \"bf16\"";
    let a = tempfile::tempdir().unwrap();
    let fp32_weights = run(&experiment(a.path(), 1, bf16, "", lora), &[]);
    let b = tempfile::tempdir().unwrap();
    let weights = "weights_dtype = \"bf16\"";
    let cfg = experiment(b.path(), 3, bf16, weights, lora);
    let bf16_weights = run(&cfg, &[]);
    assert_eq!(bf16_weights.len(), 3);
    let (l32, l16) = (loss(&fp32_weights[0]), loss(&bf16_weights[0]));
    assert!((l16 - l32).abs() / l32 < 0.05, "{l32} vs {l16}");
    // The adapters are saved as trained (fp32 masters).
    assert!(b
        .path()
        .join("run/checkpoints/step-3/pytorch_lora_weights.safetensors")
        .is_file());
}

/// A frozen half UNet with a different autocast dtype is refused, naming both keys.
#[test]
fn weights_dtype_and_a_different_autocast_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = experiment(
        dir.path(),
        1,
        "mixed_precision = \"fp16\"",
        "weights_dtype = \"bf16\"",
        "[lora]\nrank = 4\n",
    );
    let out = train(&cfg, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("model.weights_dtype") && err.contains("train.mixed_precision"),
        "{err}"
    );
}

/// The `txt2img-ddim` case `c` (tools/make_bf16_fixtures.py) rendered by `sd`, and the seconds
/// it took.
fn ddim_image(sd: &StableDiffusion, c: &Value) -> (image::RgbImage, f64) {
    let mut s = from_name("ddim", sd.scheduler_config.as_ref().unwrap()).unwrap();
    let p = common::text_to_image_case(c, 1);
    let t = std::time::Instant::now();
    let images = text_to_image(sd, s.as_mut(), &p, |_, _| {}).unwrap();
    let secs = t.elapsed().as_secs_f64();
    (to_rgb8(&images).unwrap().remove(0), secs)
}

/// `--precision bf16` on the CPU. One UNet evaluation in bf16 is within 2 % (relative L2) of
/// fp32: bf16 keeps 8 significant bits (0.4 % per rounding) and the tiny UNet has a few dozen
/// roundings in a row. Whole images are compared with diffusers' own bf16 pipeline: six
/// guided steps of a random-weight model amplify rounding (diffusers' bf16 image is far from its
/// fp32 one, bf16.json), so studioize's bf16 image must be no further from its fp32 one than
/// diffusers' is, with a 50 % margin.
#[test]
fn bf16_generation_on_the_cpu() {
    let load = |precision| {
        let opts = LoadOptions {
            precision,
            ..Default::default()
        };
        StableDiffusion::load(&common::fixtures().join("sd").join("tiny-a"), &opts).unwrap()
    };
    let (sd32, sd16) = (load(Precision::F32), load(Precision::Bf16));
    assert_eq!(sd16.kind, Kind::BFloat16);
    tch::manual_seed(5);
    let x = Tensor::randn([2, 4, 8, 8], (Kind::Float, Device::Cpu));
    let t = Tensor::from_slice(&[10i64, 500]);
    let emb = sd32.encode_prompt("a mug").unwrap().repeat([2, 1, 1]);
    let y32 = tch::no_grad(|| sd32.unet.forward(&x, &t, &emb));
    let y16 = tch::no_grad(|| {
        let emb = emb.to_kind(Kind::BFloat16);
        sd16.unet.forward(&x.to_kind(Kind::BFloat16), &t, &emb)
    });
    assert_eq!(y16.kind(), Kind::BFloat16);
    let rel =
        (y16.to_kind(Kind::Float) - &y32).norm().double_value(&[]) / y32.norm().double_value(&[]);
    eprintln!("unet bf16 vs fp32: relative L2 {rel:.4}");
    assert!(rel < 0.02, "UNet bf16 vs fp32: relative L2 error {rel}");

    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(common::fixtures().join("precision/bf16.json")).unwrap(),
    )
    .unwrap();
    let (img32, s32) = ddim_image(&sd32, &fixture["case"]);
    let (img16, s16) = ddim_image(&sd16, &fixture["case"]);
    let theirs = fixture["fp32_vs_bf16_mean"].as_f64().unwrap();
    let (ours, p99) = common::diff_stats(&img32, &img16);
    let dir = common::fixtures().join("precision");
    let d_bf16 = common::diff_stats(
        &img16,
        &image::open(dir.join("txt2img-ddim-bf16.png"))
            .unwrap()
            .to_rgb8(),
    );
    let d_fp32 = common::diff_stats(
        &img32,
        &image::open(dir.join("txt2img-ddim-fp32.png"))
            .unwrap()
            .to_rgb8(),
    );
    eprintln!("image bf16 vs fp32: mean {ours:.2} p99 {p99} (diffusers {theirs:.2}); vs diffusers bf16 {d_bf16:?}, fp32 {d_fp32:?}; {s32:.3}s fp32, {s16:.3}s bf16");
    assert!(d_fp32.0 <= 1.0, "fp32 image vs diffusers: {d_fp32:?}");
    assert!(
        ours <= 1.5 * theirs,
        "bf16 image {ours} levels from fp32 (diffusers: {theirs})"
    );
}
