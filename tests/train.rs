//! Fine-tuning: one optimisation step against PyTorch/diffusers, a short run that lowers the
//! validation loss, kill -9 + resume equal to an uninterrupted run, checkpoints loadable by
//! diffusers and `transform --unet`, and the failure paths.
mod common;

use common::{csv_rows, fixtures, read_refs};
use std::path::{Path, PathBuf};
use std::process::Command;
use studioize::pipelines::{LoadOptions, StableDiffusion};
use studioize::train::objective::{mse, target, NoiseSchedule, PredictionType};
use studioize::train::optim::AdamW;
use tch::Tensor;

fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_studioize")
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

#[test]
fn one_step_matches_pytorch() {
    let refs = read_refs(&fixtures().join("train").join("step.safetensors"));
    let cases: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("train").join("step.json")).unwrap(),
    )
    .unwrap();
    for case in cases {
        let sd = StableDiffusion::load(
            &fixtures().join("sd").join("tiny-a"),
            &LoadOptions::default(),
        )
        .unwrap();
        let schedule = NoiseSchedule::from_config(sd.scheduler_config.as_ref().unwrap()).unwrap();
        let prediction = match case["prediction_type"].as_str().unwrap() {
            "epsilon" => PredictionType::Epsilon,
            _ => PredictionType::VPrediction,
        };
        let gamma = case["snr_gamma"].as_f64();
        let (x0, noise, t, cond) = (
            &refs["latents"],
            &refs["noise"],
            &refs["timesteps"],
            &refs["cond"],
        );
        let loss_of = |sd: &StableDiffusion| {
            let noisy = schedule.add_noise(x0, noise, t);
            let w = gamma.map(|g| schedule.min_snr_weights(t, g, prediction));
            let pred = sd.unet.forward(&noisy, t, cond);
            mse(
                &pred,
                &target(&schedule, prediction, x0, noise, t),
                w.as_ref(),
            )
        };
        let mut opt = AdamW::new(
            sd.unet_vs.variables(),
            0.9,
            0.999,
            1e-8,
            case["weight_decay"].as_f64().unwrap(),
        );
        let loss = loss_of(&sd);
        loss.backward();
        let grad_norm = opt.clip_grad_norm(case["max_grad_norm"].as_f64().unwrap());
        opt.step(case["lr"].as_f64().unwrap());
        let after = tch::no_grad(|| f64::try_from(loss_of(&sd)).unwrap());
        let loss = f64::try_from(&loss).unwrap();
        let what = format!("{} snr {:?}", case["prediction_type"], gamma);
        assert!(
            rel(loss, case["loss"].as_f64().unwrap()) < 1e-4,
            "{what}: loss {loss} vs {}",
            case["loss"]
        );
        assert!(
            rel(grad_norm, case["grad_norm"].as_f64().unwrap()) < 1e-4,
            "{what}: grad norm {grad_norm} vs {}",
            case["grad_norm"]
        );
        assert!(
            rel(after, case["loss_after_step"].as_f64().unwrap()) < 1e-4,
            "{what}: loss after {after} vs {}",
            case["loss_after_step"]
        );
    }
}

#[test]
fn adamw_gives_torch_optim_adamws_bits() {
    // tools/make_adamw_fixtures.py: three steps of torch.optim.AdamW on fixed gradients.
    let refs = read_refs(&fixtures().join("train").join("adamw.safetensors"));
    let params: std::collections::HashMap<String, Tensor> = ["a", "b"]
        .iter()
        .map(|n| {
            let p = refs[&format!("{n}.start")].copy().set_requires_grad(true);
            (n.to_string(), p)
        })
        .collect();
    let shared = params
        .iter()
        .map(|(n, p)| (n.clone(), p.shallow_clone()))
        .collect();
    let mut opt = AdamW::new(shared, 0.9, 0.999, 1e-8, 1e-2);
    for step in 1..=3 {
        for (n, p) in &params {
            let mut g = p.grad();
            if !g.defined() {
                // the first backward creates the gradient; a zero loss of the right shape
                (p * 0.0).sum(tch::Kind::Float).backward();
                g = p.grad();
            }
            tch::no_grad(|| g.copy_(&refs[&format!("{n}.grad{step}")]));
        }
        opt.step(1e-3);
    }
    let state: std::collections::HashMap<String, Tensor> = opt.state().into_iter().collect();
    for n in ["a", "b"] {
        assert!(
            params[n].equal(&refs[&format!("{n}.end")]),
            "{n}: parameter"
        );
        assert!(
            state[&format!("m.{n}")].equal(&refs[&format!("{n}.m")]),
            "{n}: m"
        );
        assert!(
            state[&format!("v.{n}")].equal(&refs[&format!("{n}.v")]),
            "{n}: v"
        );
    }
}

/// A shapes dataset plus an experiment config writing into `dir/run`.
fn setup(dir: &Path, extra: &str) -> PathBuf {
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
        tables = common::tiny_experiment_tables(dir, 24, 3),
        run = dir.join("run").display(),
    );
    let path = dir.join("exp.toml");
    std::fs::write(&path, cfg).unwrap();
    path
}

use common::train_quiet as train;

#[test]
fn training_lowers_validation_loss_and_writes_a_diffusers_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path(), "");
    // A corrupt image in the training folder is reported and skipped.
    std::fs::write(dir.path().join("shapes/train/broken.png"), b"not a png").unwrap();
    let out = train(&cfg, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("broken.png"),
        "corrupt image not reported: {stderr}"
    );
    let run = dir.path().join("run");
    let val = csv_rows(&run.join("validation.csv"));
    let first: f64 = val[0][1].parse().unwrap();
    let last: f64 = val.last().unwrap()[1].parse().unwrap();
    assert_eq!(val[0][0], "0");
    assert!(last < 0.5 * first, "validation loss {first} -> {last}");
    assert!(!val[0][2].is_empty(), "prior loss recorded");
    assert_eq!(csv_rows(&run.join("metrics.csv")).len(), 30);
    let status: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("status.json")).unwrap()).unwrap();
    assert_eq!(status["state"], "finished");
    for s in [10, 20, 30] {
        assert!(run
            .join(format!(
                "checkpoints/step-{s}/unet/diffusion_pytorch_model.safetensors"
            ))
            .is_file());
    }

    // The checkpoint loads as `transform --unet` ...
    let ckpt = run.join("checkpoints/step-30/unet");
    let opts = LoadOptions {
        unet_override: Some(ckpt.clone()),
        ..Default::default()
    };
    let sd = StableDiffusion::load(&fixtures().join("sd").join("tiny-a"), &opts).unwrap();
    let refs = read_refs(&fixtures().join("sd").join("tiny-a.refs.safetensors"));
    let ours = tch::no_grad(|| {
        sd.unet.forward(
            &refs["unet_sample"],
            &refs["unet_timesteps"],
            &refs["text_embeddings"],
        )
    });
    let base = StableDiffusion::load(
        &fixtures().join("sd").join("tiny-a"),
        &LoadOptions::default(),
    )
    .unwrap();
    let before = tch::no_grad(|| {
        base.unet.forward(
            &refs["unet_sample"],
            &refs["unet_timesteps"],
            &refs["text_embeddings"],
        )
    });
    assert!(
        common::rel_err(&ours, &before) > 1e-3,
        "the fine-tuned UNet must differ from the base"
    );
    let out = Command::new(exe())
        .args(["transform", "--model"])
        .arg(fixtures().join("sd").join("tiny-a"))
        .arg("--unet")
        .arg(&ckpt)
        .args([
            "--prompt",
            "a red circle",
            "--strength",
            "0.5",
            "--steps",
            "4",
            "--device",
            "cpu",
            "--out",
        ])
        .arg(dir.path().join("t.png"))
        .arg(fixtures().join("pipelines").join("input-photo.png"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta = studioize::imageio::read_png_params(&dir.path().join("t.png")).unwrap();
    assert_eq!(meta["unet"].as_str().unwrap(), ckpt.to_str().unwrap());

    // ... and in diffusers, with the same noise prediction.
    let case = dir.path().join("case.safetensors");
    let tensors = [
        ("sample", refs["unet_sample"].shallow_clone()),
        ("timesteps", refs["unet_timesteps"].shallow_clone()),
        ("context", refs["text_embeddings"].shallow_clone()),
        ("output", ours.shallow_clone()),
    ];
    Tensor::write_safetensors(&tensors, &case).unwrap();
    python_check(&ckpt, &case);
}

#[test]
fn kill_and_resume_equals_an_uninterrupted_run() {
    let a = tempfile::tempdir().unwrap();
    let cfg_a = setup(a.path(), "");
    assert!(train(&cfg_a, &[]).status.success());
    let b = tempfile::tempdir().unwrap();
    let cfg_b = setup(b.path(), "");
    // Start B and kill -9 it once it has passed its second checkpoint.
    let mut child = Command::new(exe())
        .args([
            "train",
            cfg_b.to_str().unwrap(),
            "--device",
            "cpu",
            "--quiet",
        ])
        .spawn()
        .unwrap();
    let metrics = b.path().join("run/metrics.csv");
    let t0 = std::time::Instant::now();
    loop {
        let n = std::fs::read_to_string(&metrics)
            .map(|s| s.lines().count())
            .unwrap_or(0);
        if n > 24 || t0.elapsed().as_secs() > 120 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let killed_at = csv_rows(&metrics).len();
    assert!(
        killed_at < 30,
        "the run finished before it was killed ({killed_at} steps)"
    );
    // Without --resume the run folder is protected.
    let out = train(&cfg_b, &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--resume"));
    let out = train(&cfg_b, &["--resume"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ra, rb) = (
        csv_rows(&a.path().join("run/metrics.csv")),
        csv_rows(&metrics),
    );
    assert_eq!(ra.len(), rb.len());
    for (x, y) in ra.iter().zip(&rb) {
        // step, epoch, loss, lr, grad_norm agree; timings differ.
        for col in 0..5 {
            let (p, q): (f64, f64) = (x[col].parse().unwrap(), y[col].parse().unwrap());
            assert!(
                rel(p, q) < 1e-6 || (p - q).abs() < 1e-12,
                "step {}: column {col}: {p} vs {q}",
                x[0]
            );
        }
    }
    let (va, vb) = (
        csv_rows(&a.path().join("run/validation.csv")),
        csv_rows(&b.path().join("run/validation.csv")),
    );
    assert_eq!(va, vb, "validation losses differ after resume");
}

#[test]
fn non_finite_loss_stops_the_run_as_diverged_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path(), "");
    let out = train(
        &cfg,
        &[
            "--set",
            "train.learning_rate=1e30",
            "--set",
            "train.max_grad_norm=1e30",
            "--set",
            "train.lr_schedule=\"constant\"",
            "--set",
            "train.checkpoint_every=1",
        ],
    );
    // A diverged run is a result, not an error.
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = dir.path().join("run");
    let status: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("status.json")).unwrap()).unwrap();
    assert_eq!(status["state"], "stopped", "{status}");
    let reason = status["reason"].as_str().unwrap();
    let step = status["step"].as_u64().unwrap();
    assert!(
        reason.starts_with(&format!("diverged at step {step}:")) && reason.contains("NaN"),
        "{reason}"
    );
    let ckpts: Vec<u64> = std::fs::read_dir(run.join("checkpoints"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.strip_prefix("step-")?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        ckpts.iter().all(|&c| c < step),
        "checkpoint after the failure: {ckpts:?} (failed at {step})"
    );
    assert!(
        !ckpts.is_empty(),
        "the checkpoints before the divergence are kept"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("stopped at step"));
}

#[test]
fn config_errors_name_the_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path(), "learnin_rate = 3");
    let out = train(&cfg, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("learnin_rate") && err.contains("exp.toml"),
        "{err}"
    );
    let cfg = setup(dir.path(), "");
    let out = train(&cfg, &["--set", "train.steps=\"many\""]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("train.steps"),
        "{err}"
    );
}

fn python_check(folder: &Path, case: &Path) {
    let python = option_env!("STUDIOIZE_PYTHON")
        .map(PathBuf::from)
        .filter(|p| p.exists());
    let python = python.expect(
        "STUDIOIZE_PYTHON (written by setup.sh into .cargo/config.toml) must point at the venv",
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/check_unet_checkpoint.py");
    let out = Command::new(python)
        .arg(script)
        .arg(folder)
        .arg(case)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the reference library disagrees: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn latent_cache_gives_the_same_run() {
    let extra = "";
    let a = tempfile::tempdir().unwrap();
    let cfg_a = setup(a.path(), extra);
    let flags = [
        "--set",
        "data.center_crop=true",
        "--set",
        "data.random_flip=false",
        "--set",
        "train.steps=12",
    ];
    assert!(train(&cfg_a, &flags).status.success());
    let b = tempfile::tempdir().unwrap();
    let cfg_b = setup(b.path(), extra);
    let out = train(
        &cfg_b,
        &[&flags[..], &["--set", "data.latent_cache=true"]].concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ra, rb) = (
        csv_rows(&a.path().join("run/metrics.csv")),
        csv_rows(&b.path().join("run/metrics.csv")),
    );
    assert_eq!(ra.len(), 12);
    for (x, y) in ra.iter().zip(&rb) {
        let (p, q): (f64, f64) = (x[2].parse().unwrap(), y[2].parse().unwrap());
        assert!(rel(p, q) < 1e-4, "step {}: loss {p} vs {q}", x[0]);
    }
    // A random crop or flip cannot be cached.
    let c = tempfile::tempdir().unwrap();
    let cfg_c = setup(c.path(), "");
    let out = train(&cfg_c, &["--set", "data.latent_cache=true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("latent_cache"),
        "{err}"
    );
}

#[test]
fn text_encoder_training_writes_a_transformers_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path(), "train_text_encoder = true");
    let out = train(
        &cfg,
        &[
            "--set",
            "train.steps=10",
            "--set",
            "train.checkpoint_every=5",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let te = dir.path().join("run/checkpoints/step-10/text_encoder");
    assert!(te.join("model.safetensors").is_file() && te.join("config.json").is_file());
    // The text encoder changed, and transformers loads it and agrees with studioize.
    let opts = LoadOptions {
        text_encoder_override: Some(te.clone()),
        ..Default::default()
    };
    let tuned = StableDiffusion::load(&fixtures().join("sd").join("tiny-a"), &opts).unwrap();
    let base = StableDiffusion::load(
        &fixtures().join("sd").join("tiny-a"),
        &LoadOptions::default(),
    )
    .unwrap();
    let refs = read_refs(&fixtures().join("sd").join("tiny-a.refs.safetensors"));
    let ids = &refs["input_ids"];
    let ours = tch::no_grad(|| tuned.text_encoder.forward(ids));
    let before = tch::no_grad(|| base.text_encoder.forward(ids));
    assert!(
        common::rel_err(&ours, &before) > 1e-4,
        "the text encoder did not train"
    );
    let case = dir.path().join("te-case.safetensors");
    Tensor::write_safetensors(
        &[("input_ids", ids.shallow_clone()), ("output", ours)],
        &case,
    )
    .unwrap();
    python_check(&te, &case);
    // And it resumes: the optimizer state covers the text encoder too.
    let out = train(
        &cfg,
        &[
            "--set",
            "train.steps=12",
            "--set",
            "train.checkpoint_every=5",
            "--resume",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(csv_rows(&dir.path().join("run/metrics.csv")).len(), 12);
}

#[test]
fn checkpoints_get_fixed_seed_samples() {
    let dir = tempfile::tempdir().unwrap();
    let photo = fixtures().join("pipelines").join("input-photo.png");
    let extra = format!(
        "sample_every_checkpoint = true\nvalidation_prompts = [\"a red circle on a white background\"]\nvalidation_inputs = [\"{}\"]",
        photo.display()
    );
    let cfg = setup(dir.path(), &extra);
    let out = train(
        &cfg,
        &[
            "--set",
            "train.steps=4",
            "--set",
            "train.checkpoint_every=2",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = dir.path().join("run/samples");
    for step in [2, 4] {
        for f in ["prompt-00.png", "input-00.png", "sheet.png"] {
            assert!(
                s.join(format!("step-{step}/{f}")).is_file(),
                "step-{step}/{f}"
            );
        }
    }
    let a = studioize::imageio::read_rgb(&s.join("step-2/prompt-00.png")).unwrap();
    let b = studioize::imageio::read_rgb(&s.join("step-4/prompt-00.png")).unwrap();
    assert_eq!(a.dimensions(), (32, 32));
    assert_ne!(a, b, "the samples should follow the weights");
    let meta = studioize::imageio::read_png_params(&s.join("step-4/input-00.png")).unwrap();
    assert_eq!(meta["checkpoint_step"], 4);
}

#[test]
fn aspect_buckets_train_on_wide_square_and_tall_photos() {
    let dir = tempfile::tempdir().unwrap();
    // Mixed-aspect training photos with sidecar captions (the shapes set stays the prior).
    let photos = dir.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    for i in 0..24u32 {
        let (w, h, what) = match i % 3 {
            0 => (48, 32, "wide"),
            1 => (32, 32, "square"),
            _ => (32, 48, "tall"),
        };
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 5 + i) as u8, (y * 7) as u8, (i * 10) as u8])
        });
        img.save(photos.join(format!("p{i:02}.png"))).unwrap();
        std::fs::write(
            photos.join(format!("p{i:02}.txt")),
            format!("a {what} product photo"),
        )
        .unwrap();
    }
    let cfg = setup(dir.path(), "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(
            &format!("images = \"{}/train\"", dir.path().join("shapes").display()),
            &format!("images = \"{}\"", photos.display()),
        )
        .replace(
            &format!(
                "captions = \"{}/train/metadata.csv\"\n",
                dir.path().join("shapes").display()
            ),
            "aspect_buckets = true\n",
        );
    assert!(text.contains("aspect_buckets = true"), "{text}");
    std::fs::write(&cfg, text).unwrap();
    let args = [
        "--set",
        "train.steps=6",
        "--set",
        "train.batch_size=2",
        "--set",
        "train.validate_every=3",
        "--set",
        "train.checkpoint_every=6",
    ];
    let out = train(&cfg, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = dir.path().join("run");
    // The buckets in use and their images: all three shapes, every training image counted.
    let buckets = csv_rows(&run.join("buckets.csv"));
    assert_eq!(buckets.len(), 3, "{buckets:?}");
    let shape = |r: &Vec<String>| (r[0].parse::<u32>().unwrap(), r[1].parse::<u32>().unwrap());
    assert!(buckets.iter().any(|r| shape(r) == (32, 32)));
    assert!(buckets.iter().any(|r| {
        let (w, h) = shape(r);
        w > h
    }));
    assert!(buckets.iter().any(|r| {
        let (w, h) = shape(r);
        w < h
    }));
    let total: usize = buckets.iter().map(|r| r[2].parse::<usize>().unwrap()).sum();
    assert_eq!(total, 18, "24 photos minus the 25% validation split");
    let metrics = csv_rows(&run.join("metrics.csv"));
    assert_eq!(metrics.len(), 6);
    assert!(metrics
        .iter()
        .all(|r| r[2].parse::<f64>().unwrap().is_finite()));
    assert!(run
        .join("checkpoints/step-6/unet/diffusion_pytorch_model.safetensors")
        .is_file());

    // The latent cache keeps one posterior per image, whatever its bucket's size.
    let out = train(
        &cfg,
        &[
            &args[..],
            &[
                "--set",
                "data.latent_cache=true",
                "--set",
                "data.center_crop=true",
                "--set",
                "data.random_flip=false",
                "--set",
                &format!("output.dir={}", dir.path().join("cached").display()),
            ],
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(csv_rows(&dir.path().join("cached/metrics.csv")).len(), 6);
}
