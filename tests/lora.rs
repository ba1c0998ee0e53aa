//! LoRA against diffusers + PEFT (fixtures of tools/make_lora_fixtures.py): anyone's adapters
//! in every format give diffusers' images (mean <= 1 level, p99 <= 4), the module counts equal
//! the layers diffusers injected, one adapter training step equals PEFT's, and bad files are
//! refused with one line naming the file and the problem.
mod common;

use common::{diff_stats, fixtures, one_line_error, read_refs, rel_err, studioize, tiny_a};
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use studioize::imageio;
use studioize::models::lora::Adapter;
use studioize::pipelines::img2img::{image_to_image, ImageToImage};
use studioize::pipelines::lora::{apply, LoraSpec};
use studioize::pipelines::sampling::to_rgb8;
use studioize::pipelines::text2img::text_to_image;
use studioize::pipelines::StableDiffusion;
use studioize::train::objective::{mse, NoiseSchedule};
use studioize::train::optim::AdamW;
use tch::Tensor;

fn dir() -> PathBuf {
    fixtures().join("lora")
}

use common::load_tiny_a as model;

fn cases() -> Vec<Value> {
    serde_json::from_str(&std::fs::read_to_string(dir().join("cases.json")).unwrap()).unwrap()
}

fn specs(c: &Value) -> Vec<LoraSpec> {
    c["loras"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| LoraSpec {
            path: dir().join(l[0].as_str().unwrap()),
            scale: l[1].as_f64().unwrap(),
        })
        .collect()
}

fn render(sd: &StableDiffusion, c: &Value) -> image::RgbImage {
    let cfg = sd.scheduler_config.clone().unwrap();
    let mut s = studioize::schedulers::from_name("pndm", &cfg).unwrap();
    let text = |k: &str| c[k].as_str().unwrap().to_string();
    let images = if c["task"] == "generate" {
        let p = common::text_to_image_case(c, 1);
        text_to_image(sd, s.as_mut(), &p, |_, _| {}).unwrap()
    } else {
        let p = ImageToImage {
            prompt: text("prompt"),
            negative_prompt: text("negative_prompt"),
            steps: c["steps"].as_u64().unwrap() as usize,
            guidance: c["guidance"].as_f64().unwrap(),
            seed: c["seed"].as_u64().unwrap(),
            strength: c["strength"].as_f64().unwrap(),
            variations: 1,
        };
        let input = imageio::read_rgb(&dir().join(c["input"].as_str().unwrap())).unwrap();
        let x = imageio::to_model_input(&input);
        image_to_image(sd, s.as_mut(), &p, &x, |_, _| {}).unwrap()
    };
    to_rgb8(&images).unwrap().remove(0)
}

#[test]
fn every_format_gives_diffusers_images() {
    let mut report = Vec::new();
    for c in cases().iter().filter(|c| c["task"] != "refuse") {
        let name = c["name"].as_str().unwrap();
        let sd = model();
        let applied = apply(&sd, &specs(c)).unwrap();
        if let Some(layers) = c.get("lora_layers") {
            let unet: usize = applied.iter().map(|a| a.unet_modules).sum();
            let te: usize = applied.iter().map(|a| a.text_encoder_modules).sum();
            assert_eq!(
                (unet as u64, te as u64),
                (
                    layers["unet"].as_u64().unwrap(),
                    layers["text_encoder"].as_u64().unwrap()
                ),
                "{name}: adapted layers (UNet, text encoder) vs diffusers'"
            );
        }
        let ours = render(&sd, c);
        let want = imageio::read_rgb(&dir().join(c["file"].as_str().unwrap())).unwrap();
        let (mean, p99) = diff_stats(&ours, &want);
        report.push(format!("{name}: mean {mean:.3} p99 {p99}"));
        assert!(mean <= 1.0 && p99 <= 4.0, "{}", report.join("\n"));
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
fn the_images_tell_the_loras_apart() {
    // The parity test can only fail usefully if a LoRA changes the image by more than its
    // tolerance: every LoRA case differs from the base image, and scale 0.5 from scale 1.
    let img = |f: &str| imageio::read_rgb(&dir().join(f)).unwrap();
    let base = img("base.png");
    for c in cases().iter().filter(|c| c["task"] == "generate") {
        if c["loras"].as_array().unwrap().is_empty() {
            continue;
        }
        let (mean, _) = diff_stats(&img(c["file"].as_str().unwrap()), &base);
        assert!(
            mean > 3.0,
            "{}: only {mean:.2} levels from the base",
            c["name"]
        );
    }
    let (mean, _) = diff_stats(&img("a.png"), &img("a-0.5.png"));
    assert!(mean > 3.0, "scale 1 vs 0.5: {mean:.2}");
}

#[test]
fn merging_gives_the_same_images_as_attached_adapters() {
    let c = cases().into_iter().find(|c| c["name"] == "a+b").unwrap();
    let sd = model();
    apply(&sd, &specs(&c)).unwrap();
    let attached = render(&sd, &c);
    studioize::pipelines::lora::merge(&sd);
    assert_eq!(sd.unet.lora_layers().adapter_count(), 0);
    let merged = render(&sd, &c);
    let (mean, p99) = diff_stats(&attached, &merged);
    assert!(mean <= 0.5 && p99 <= 2.0, "mean {mean} p99 {p99}");
}

#[test]
fn other_architectures_and_broken_files_are_refused_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    // A kohya file whose module is not in SD 1.x: an unknown key is an error, never skipped.
    let bogus = tmp.path().join("bogus.safetensors");
    let t = Tensor::zeros([2, 32], (tch::Kind::Float, tch::Device::Cpu));
    let u = Tensor::zeros([32, 2], (tch::Kind::Float, tch::Device::Cpu));
    Tensor::write_safetensors(
        &[
            (
                "lora_unet_down_blocks_7_attentions_0_proj_in.lora_down.weight",
                t,
            ),
            (
                "lora_unet_down_blocks_7_attentions_0_proj_in.lora_up.weight",
                u,
            ),
        ],
        &bogus,
    )
    .unwrap();
    let missing = tmp.path().join("missing.safetensors");
    let not_st = tmp.path().join("text.safetensors");
    std::fs::write(&not_st, "not a safetensors file").unwrap();
    let cases = [
        (dir().join("sdxl.safetensors"), "SDXL"),
        (dir().join("wrong-shape.safetensors"), "needs"),
        (bogus.clone(), "lora_unet_down_blocks_7"),
        (missing.clone(), "cannot open"),
        (not_st.clone(), "not a valid safetensors"),
    ];
    let model = tiny_a();
    for (file, what) in cases {
        let out_png = tmp.path().join("x.png");
        let arg = format!("{}:0.8", file.display());
        let out = studioize(&[
            "generate",
            "--model",
            &model,
            "--prompt",
            "a bag",
            "--steps",
            "2",
            "--width",
            "32",
            "--height",
            "32",
            "--lora",
            &arg,
            "--out",
            out_png.to_str().unwrap(),
        ]);
        let line = one_line_error(&out);
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        assert!(line.contains(&name) && line.contains(what), "{line}");
        assert!(!out_png.exists());
    }
}

#[test]
fn generate_with_lora_flags_writes_diffusers_image_and_records_the_loras() {
    let c = cases().into_iter().find(|c| c["name"] == "a+b").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out_png = tmp.path().join("out.png");
    let model = tiny_a();
    let a = format!("{}:1", dir().join("a").display());
    let b = format!(
        "{}:0.7",
        dir().join("b/pytorch_lora_weights.safetensors").display()
    );
    let out = studioize(&[
        "generate",
        "--model",
        &model,
        "--prompt",
        c["prompt"].as_str().unwrap(),
        "--negative-prompt",
        c["negative_prompt"].as_str().unwrap(),
        "--steps",
        "6",
        "--guidance",
        "7.5",
        "--seed",
        "1234",
        "--width",
        "32",
        "--height",
        "24",
        "--lora",
        &a,
        "--lora",
        &b,
        "--out",
        out_png.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("40 UNet and 8 text-encoder layers"), "{err}");
    let ours = imageio::read_rgb(&out_png).unwrap();
    let want = imageio::read_rgb(&dir().join("a+b.png")).unwrap();
    let (mean, p99) = diff_stats(&ours, &want);
    assert!(mean <= 1.0 && p99 <= 4.0, "mean {mean} p99 {p99}");
    let params = imageio::read_png_params(&out_png).unwrap();
    let texts = imageio::read_png_texts(&out_png).unwrap();
    let infotext = &texts.iter().find(|(k, _)| k == "parameters").unwrap().1;
    let loras = params["loras"].as_array().unwrap();
    assert_eq!(loras.len(), 2);
    assert_eq!(loras[0]["name"], "a");
    assert_eq!(loras[1]["scale"], 0.7);
    assert!(
        infotext.contains("<lora:a:1.0> <lora:pytorch_lora_weights:0.7>"),
        "{infotext}"
    );
}

#[test]
fn one_lora_training_step_matches_peft() {
    let refs = read_refs(&dir().join("step.safetensors"));
    let case: Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("step.json")).unwrap()).unwrap();
    let batch = read_refs(&fixtures().join("train").join("step.safetensors"));
    let mut sd = model();
    sd.unet_vs.freeze();
    let scale = case["alpha"].as_f64().unwrap() / case["rank"].as_f64().unwrap();
    let layers = sd.unet.lora_layers();
    let mut params: HashMap<String, Tensor> = HashMap::new();
    for (name, t) in &refs {
        let Some(module) = name.strip_suffix(".lora_A.weight") else {
            continue;
        };
        if name.starts_with("grad.") {
            continue;
        }
        let down = t.copy().set_requires_grad(true);
        let up = refs[&format!("{module}.lora_B.weight")]
            .copy()
            .set_requires_grad(true);
        let adapter = Adapter {
            down: down.shallow_clone(),
            up: up.shallow_clone(),
            scale,
            dropout: 0.0,
        };
        layers.attach(module, adapter).unwrap();
        params.insert(format!("{module}.lora_A.weight"), down);
        params.insert(format!("{module}.lora_B.weight"), up);
    }
    assert_eq!(
        params.len() as u64,
        2 * case["lora_modules"].as_u64().unwrap()
    );
    let schedule = NoiseSchedule::from_config(sd.scheduler_config.as_ref().unwrap()).unwrap();
    let (x0, noise, t, cond) = (
        &batch["latents"],
        &batch["noise"],
        &batch["timesteps"],
        &batch["cond"],
    );
    let loss_of = |sd: &StableDiffusion| {
        let noisy = schedule.add_noise(x0, noise, t);
        mse(&sd.unet.forward(&noisy, t, cond), noise, None)
    };
    let loss = loss_of(&sd);
    loss.backward();
    let rel = |a: f64, b: f64| (a - b).abs() / b.abs();
    let loss = f64::try_from(&loss).unwrap();
    assert!(
        rel(loss, case["loss"].as_f64().unwrap()) < 1e-4,
        "loss {loss} vs {}",
        case["loss"]
    );
    for (name, p) in &params {
        let err = rel_err(&p.grad(), &refs[&format!("grad.{name}")]);
        assert!(err < 1e-4, "{name}: gradient relative error {err:e}");
    }
    // Only the adapters have gradients: the base stays frozen.
    assert!(sd.unet_vs.variables().values().all(|v| !v.grad().defined()));
    let shared = params
        .iter()
        .map(|(n, p)| (n.clone(), p.shallow_clone()))
        .collect();
    let mut opt = AdamW::new(shared, 0.9, 0.999, 1e-8, 1e-2);
    let norm = opt.clip_grad_norm(1.0);
    assert!(
        rel(norm, case["grad_norm"].as_f64().unwrap()) < 1e-4,
        "grad norm {norm}"
    );
    opt.step(case["lr"].as_f64().unwrap());
    let after = tch::no_grad(|| f64::try_from(loss_of(&sd)).unwrap());
    let want = case["loss_after_step"].as_f64().unwrap();
    assert!(
        rel(after, want) < 1e-4,
        "loss after the step {after} vs {want}"
    );
    let probe = &params[case["probe"].as_str().unwrap()];
    let got: Vec<f64> = Vec::try_from(
        probe
            .flatten(0, -1)
            .narrow(0, 0, 8)
            .to_kind(tch::Kind::Double),
    )
    .unwrap();
    for (g, w) in got.iter().zip(case["probe_after"].as_array().unwrap()) {
        assert!((g - w.as_f64().unwrap()).abs() < 1e-5, "{got:?}");
    }
}

#[test]
fn lora_merge_writes_a_model_that_renders_the_adapters_image() {
    let c = cases().into_iter().find(|c| c["name"] == "a+b").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let merged = tmp.path().join("merged");
    let a = format!("{}:1", dir().join("a").display());
    let b = format!("{}:0.7", dir().join("b").display());
    let model = tiny_a();
    let m = merged.to_str().unwrap();
    let out = studioize(&[
        "lora", "merge", "--model", &model, "--lora", &a, "--lora", &b, "--out", m,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = imageio::read_rgb(&dir().join("a+b.png")).unwrap();
    // studioize on the merged folder, no LoRA flags: diffusers' image with both adapters.
    let png = tmp.path().join("ours.png");
    let out = studioize(&[
        "generate",
        "--model",
        m,
        "--prompt",
        c["prompt"].as_str().unwrap(),
        "--negative-prompt",
        c["negative_prompt"].as_str().unwrap(),
        "--steps",
        "6",
        "--seed",
        "1234",
        "--width",
        "32",
        "--height",
        "24",
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (mean, p99) = diff_stats(&imageio::read_rgb(&png).unwrap(), &want);
    assert!(
        mean <= 1.0 && p99 <= 4.0,
        "studioize on the merged model: mean {mean} p99 {p99}"
    );
    // diffusers' from_pretrained on the merged folder gives it too.
    let python = option_env!("STUDIOIZE_PYTHON")
        .map(PathBuf::from)
        .expect("STUDIOIZE_PYTHON (setup.sh)");
    let theirs = tmp.path().join("theirs.png");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/check_lora.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .args(["--model", m, "--prompt", c["prompt"].as_str().unwrap()])
        .args([
            "--negative",
            c["negative_prompt"].as_str().unwrap(),
            "--seed",
            "1234",
        ])
        .args(["--steps", "6", "--width", "32", "--height", "24", "--out"])
        .arg(&theirs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (mean, p99) = diff_stats(&imageio::read_rgb(&theirs).unwrap(), &want);
    assert!(
        mean <= 1.0 && p99 <= 4.0,
        "diffusers on the merged model: mean {mean} p99 {p99}"
    );
    // `export` makes the single file A1111 / ComfyUI load from it.
    let single = tmp.path().join("merged.safetensors");
    let out = studioize(&["export", m, "--out", single.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::metadata(&single).unwrap().len() > 100_000);
    // The folder is now taken: a second merge refuses it and leaves it whole.
    let out = studioize(&["lora", "merge", "--model", &model, "--lora", &a, "--out", m]);
    let line = one_line_error(&out);
    assert!(line.contains("not empty"), "{line}");
    assert!(merged
        .join("unet/diffusion_pytorch_model.safetensors")
        .is_file());
}
