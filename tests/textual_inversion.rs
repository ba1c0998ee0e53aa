//! Textual inversion (`[textual_inversion]`): one step against diffusers' textual_inversion.py
//! (tools/make_ti_fixtures.py: the new rows' gradient and values after AdamW, the checkpoint's
//! embedding matrix untouched), a run whose embedding diffusers' load_textual_inversion renders
//! as `generate --embedding` does, pivotal tuning with `[lora]` resumed exactly, and refusals.
mod common;

use common::{csv_rows, diff_stats, fixtures, read_refs, sole_error_line, tiny_a};
use std::path::{Path, PathBuf};
use studioize::train::config::{TextualInversionSection, TiPrompts, TrainSection};
use studioize::train::objective::{Draws, Objective};
use studioize::train::optim::AdamW;
use studioize::train::trainable::{TextualInversion, Trainable};
use tch::{Kind, Tensor};

fn rel_max(a: &Tensor, b: &Tensor) -> f64 {
    let d = f64::try_from((a - b).abs().max()).unwrap();
    d / f64::try_from(b.abs().max()).unwrap().max(1e-12)
}

#[test]
fn one_step_trains_only_the_new_rows_as_textual_inversion_py() {
    let dir = fixtures().join("textual_inversion");
    let refs = read_refs(&dir.join("step.safetensors"));
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("step.json")).unwrap()).unwrap();
    let mut sd = common::load_tiny_a();
    // frozen as `Trainables::for_config` freezes every model before attaching
    sd.unet_vs.freeze();
    sd.text_encoder_vs.freeze();
    let table = sd
        .text_encoder_vs
        .variables()
        .into_iter()
        .find(|(n, _)| n.ends_with("token_embedding.weight"))
        .unwrap()
        .1;
    let table_before = table.copy();
    let section = TextualInversionSection {
        token: info["token"].as_str().unwrap().into(),
        initializer: info["initializer"].as_str().unwrap().into(),
        num_vectors: info["num_vectors"].as_i64().unwrap(),
        prompts: TiPrompts::Object,
    };
    let ti = TextualInversion::attach(&mut sd, &section).unwrap();
    let (_, rows) = ti.parameters(&sd).remove(0);
    assert!(
        rows.equal(&refs["rows_before"]),
        "rows start as the initializer's"
    );

    // The prompts as diffusers writes them (every token spelled out) and as a user writes them
    // (the token alone) give diffusers' ids.
    let prompts: Vec<String> = serde_json::from_value(info["prompts"].clone()).unwrap();
    for (i, p) in prompts.iter().enumerate() {
        let short = p.replace(" <zwx-mug>_1 <zwx-mug>_2", "");
        for text in [p.as_str(), short.as_str()] {
            let ids = Tensor::from_slice(&sd.tokenizer.encode(text).unwrap());
            assert!(ids.equal(&refs["input_ids"].get(i as i64)), "{text}");
        }
    }

    let objective = Objective::for_model(&sd, &TrainSection::default()).unwrap();
    let x0 = &refs["latents"];
    let draws = Draws {
        noise: refs["noise"].shallow_clone(),
        timesteps: refs["timesteps"].shallow_clone(),
    };
    let texts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let cond = sd.embed_prompts(&texts).unwrap();
    let noisy = objective.noisy(x0, &draws.noise, &draws.timesteps);
    let pred = sd.unet.forward(&noisy, &draws.timesteps, &cond);
    let loss = objective.loss(&pred, x0, &draws, 0);
    let value = f64::try_from(&loss).unwrap();
    let want = info["loss"].as_f64().unwrap();
    assert!((value - want).abs() / want < 1e-5, "loss {value} vs {want}");
    loss.backward();
    let grad = rows.grad().copy();
    assert!(
        rel_max(&grad, &refs["grad"]) < 1e-4,
        "the new rows' gradient"
    );
    let params = ti.parameters(&sd).into_iter().collect();
    let mut opt = AdamW::new(params, 0.9, 0.999, 1e-8, 1e-2);
    opt.step(info["lr"].as_f64().unwrap());
    assert!(
        rel_max(&rows, &refs["rows_after"]) < 1e-5,
        "the new rows after AdamW"
    );
    assert!(
        table.equal(&table_before),
        "the checkpoint's rows are unchanged"
    );
    assert!(
        !table.grad().defined(),
        "the checkpoint's rows get no gradient"
    );
}

/// Shapes images captioned with templates, a textual-inversion config writing into `dir/run`.
fn setup(dir: &Path, extra: &str) -> PathBuf {
    let shapes = dir.join("shapes");
    studioize::data::shapes::generate_fixture(&shapes, 8, 4, 32, 3).unwrap();
    let cfg = format!(
        r#"[model]
base = "{model}"
[data]
images = "{images}"
resolution = 32
validation_split = 0.25
num_workers = 1
[train]
steps = 6
batch_size = 2
learning_rate = 5e-3
lr_schedule = "constant"
warmup_steps = 0
checkpoint_every = 3
validate_every = 3
validation_timesteps = 2
seed = 8
[textual_inversion]
token = "<zwx-shape>"
initializer = "shape"
num_vectors = 2
{extra}
[output]
dir = "{run}"
"#,
        model = tiny_a(),
        images = shapes.join("train").display(),
        run = dir.join("run").display(),
    );
    let path = dir.join("ti.toml");
    std::fs::write(&path, cfg).unwrap();
    path
}

fn ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const PROMPT: &str = "a photo of a <zwx-shape> on a table";

#[test]
fn a_trained_embedding_renders_in_diffusers_as_in_generate() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path(), "");
    ok(&common::train_quiet(&cfg, &[]));
    let step = dir.path().join("run/checkpoints/step-6");
    let learned = step.join("learned_embeds.safetensors");
    assert!(learned.is_file() && step.join("zwx-shape.safetensors").is_file());
    assert!(
        !step.join("unet").exists(),
        "textual inversion saves no UNet"
    );
    let trained = studioize::weights::embedding::EmbeddingFile::read(&learned).unwrap();
    assert_eq!(trained.token, "<zwx-shape>");
    assert_eq!(trained.vectors.size(), [2, 32]);
    let first = studioize::weights::embedding::EmbeddingFile::read(
        &dir.path().join("run/checkpoints/step-3"),
    )
    .unwrap();
    assert!(!first.vectors.equal(&trained.vectors), "the vectors train");

    let ours = dir.path().join("ours.png");
    ok(&common::studioize(&[
        "generate",
        "--model",
        &tiny_a(),
        "--embedding",
        step.to_str().unwrap(),
        "--prompt",
        PROMPT,
        "--seed",
        "5",
        "--steps",
        "6",
        "--guidance",
        "7.5",
        "--width",
        "32",
        "--height",
        "32",
        "--out",
        ours.to_str().unwrap(),
    ]));
    let theirs = dir.path().join("diffusers.png");
    let python = env!("STUDIOIZE_PYTHON");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/check_embedding.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .args(["--model", &tiny_a(), "--file"])
        .arg(format!("{}:<zwx-shape>", learned.display()))
        .args([
            "--prompt", PROMPT, "--seed", "5", "--steps", "6", "--size", "32",
        ])
        .arg("--out")
        .arg(&theirs)
        .output()
        .unwrap();
    ok(&out);
    let (mean, p99) = diff_stats(
        &image::open(&ours).unwrap().to_rgb8(),
        &image::open(&theirs).unwrap().to_rgb8(),
    );
    assert!(mean <= 1.0 && p99 <= 4.0, "mean {mean} p99 {p99}");
    // ... and the embedding changes the picture (it is not ignored on either side).
    let base = dir.path().join("base.png");
    ok(&common::studioize(&[
        "generate",
        "--model",
        &tiny_a(),
        "--prompt",
        "a photo of a shape on a table",
        "--seed",
        "5",
        "--steps",
        "6",
        "--width",
        "32",
        "--height",
        "32",
        "--out",
        base.to_str().unwrap(),
    ]));
    let (moved, _) = diff_stats(
        &image::open(&ours).unwrap().to_rgb8(),
        &image::open(&base).unwrap().to_rgb8(),
    );
    assert!(moved > 0.5, "the embedding moves the image by {moved}");
}

#[test]
fn pivotal_tuning_trains_both_and_resumes_exactly() {
    let lora = "[lora]\nrank = 2\nalpha = 2";
    let a = tempfile::tempdir().unwrap();
    let cfg_a = setup(a.path(), lora);
    ok(&common::train_quiet(&cfg_a, &[]));
    let b = tempfile::tempdir().unwrap();
    let cfg_b = setup(b.path(), lora);
    ok(&common::train_quiet(&cfg_b, &["--set", "train.steps=3"]));
    ok(&common::train_quiet(
        &cfg_b,
        &["--resume", "--set", "train.steps=6"],
    ));
    for f in [
        "learned_embeds.safetensors",
        "pytorch_lora_weights.safetensors",
    ] {
        let x = std::fs::read(a.path().join("run/checkpoints/step-6").join(f)).unwrap();
        let y = std::fs::read(b.path().join("run/checkpoints/step-6").join(f)).unwrap();
        assert!(x == y, "{f}: the resumed run differs");
    }
    let (ma, mb) = (
        csv_rows(&a.path().join("run/metrics.csv")),
        csv_rows(&b.path().join("run/metrics.csv")),
    );
    assert_eq!(ma.len(), 6);
    for (x, y) in ma.iter().zip(&mb) {
        assert_eq!(x[..5], y[..5], "metrics row");
    }
    // The LoRA trained too: its up (B) matrices, zero at step 0, moved.
    let tensors = Tensor::read_safetensors(
        a.path()
            .join("run/checkpoints/step-6/pytorch_lora_weights.safetensors"),
    )
    .unwrap();
    let moved = tensors
        .iter()
        .filter(|(n, _)| n.contains("lora_B"))
        .map(|(_, t)| f64::try_from(t.abs().sum(Kind::Float)).unwrap())
        .sum::<f64>();
    assert!(moved > 0.0, "the LoRA did not train");
}

#[test]
fn textual_inversion_config_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path(), "");
    for (set, key) in [
        (
            "textual_inversion.token=\"<Zwx>\"",
            "textual_inversion.token",
        ),
        (
            "textual_inversion.token=\"zwx bag\"",
            "textual_inversion.token",
        ),
        (
            "textual_inversion.num_vectors=0",
            "textual_inversion.num_vectors",
        ),
        (
            "textual_inversion.initializer=\"qzxvb\"",
            "textual_inversion.initializer",
        ),
        (
            "textual_inversion.token=\"shape\"",
            "textual_inversion.token",
        ),
        ("train.train_text_encoder=true", "train.train_text_encoder"),
    ] {
        let line = sole_error_line(&common::train_quiet(&cfg, &["--set", set]));
        assert!(line.contains(key), "{set}: {line}");
    }
    // Captions mode needs `{token}` in every caption: the error names the image.
    let line = sole_error_line(&common::train_quiet(
        &cfg,
        &["--set", "textual_inversion.prompts=\"captions\""],
    ));
    assert!(line.contains("{token}") && line.contains(".png"), "{line}");
}

#[test]
fn template_prompts_are_drawn_per_row_and_replayed_on_resume() {
    use studioize::train::sources::templates::OBJECT_TEMPLATES;
    use studioize::train::sources::Sources;
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path(), "");
    let cfg = studioize::train::ExperimentConfig::load(&cfg, &[]).unwrap();
    let mut sd = common::load_tiny_a();
    let ti = cfg.textual_inversion.clone().unwrap();
    TextualInversion::attach(&mut sd, &ti).unwrap();
    let objective = Objective::for_model(&sd, &cfg.train).unwrap();
    let run = studioize::train::RunDir::new(cfg.output.dir.clone());
    let sources = Sources::open(&cfg, &sd, &objective, &run, true).unwrap();
    let captions = |start: u64, n: usize| -> Vec<String> {
        let mut s = sources.stream(&cfg, &sd, start).unwrap();
        (0..n).flat_map(|_| s.next(&sd).unwrap().captions).collect()
    };
    let all = captions(0, 12);
    let allowed: Vec<String> = OBJECT_TEMPLATES
        .iter()
        .map(|t| t.replace("{}", "<zwx-shape>"))
        .collect();
    assert!(all.iter().all(|c| allowed.contains(c)), "{all:?}");
    let distinct: std::collections::BTreeSet<&String> = all.iter().collect();
    assert!(distinct.len() >= 8, "{distinct:?}");
    assert_eq!(
        captions(4, 8),
        all[8..].to_vec(),
        "resumed at micro-batch 4"
    );
}
