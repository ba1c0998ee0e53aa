//! Fine-tuning: one optimisation step against PyTorch/diffusers, AdamW against torch.optim's
//! bits, a short run that lowers the validation loss and writes checkpoints loadable by
//! diffusers and `transform --unet`, text-encoder checkpoints transformers loads, and fixed-seed
//! samples at each checkpoint. (Resume, divergence, config errors, the latent cache and aspect
//! buckets: tests/train_runs.rs.)
mod common;

use common::train_run::{exe, rel, setup};
use common::{csv_rows, fixtures, read_refs};
use std::path::{Path, PathBuf};
use std::process::Command;
use studioize::pipelines::{LoadOptions, StableDiffusion};
use studioize::train::objective::{mse, target, NoiseSchedule, PredictionType};
use studioize::train::optim::AdamW;
use tch::Tensor;

use common::train_quiet as train;

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
