//! `generate` / `transform` against diffusers' StableDiffusionPipeline and
//! StableDiffusionImg2ImgPipeline: same model, sampler, seed -> the same images (mean absolute
//! difference <= 1 level of 255, 99th percentile <= 4 levels).
mod common;

use common::{diff_stats, fixtures};
use serde_json::Value;
use studioize::imageio;
use studioize::pipelines::img2img::{image_to_image, ImageToImage};
use studioize::pipelines::sampling::to_rgb8;
use studioize::pipelines::text2img::{text_to_image, TextToImage};
use studioize::pipelines::StableDiffusion;
use studioize::schedulers::{from_name, SchedulerConfig};

use common::load_tiny_a as model;

fn cases() -> Vec<Value> {
    let p = fixtures().join("pipelines").join("cases.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn run_case(sd: &StableDiffusion, c: &Value) -> Vec<image::RgbImage> {
    let cfg: SchedulerConfig = sd.scheduler_config.clone().unwrap();
    let mut s = from_name(c["sampler"].as_str().unwrap(), &cfg).unwrap();
    let n = c["num_images"].as_i64().unwrap();
    let images = if c["task"] == "generate" {
        let p = common::text_to_image_case(c, n);
        text_to_image(sd, s.as_mut(), &p, |_, _| {}).unwrap()
    } else {
        let p = ImageToImage {
            prompt: c["prompt"].as_str().unwrap().into(),
            negative_prompt: c["negative_prompt"].as_str().unwrap().into(),
            steps: c["steps"].as_u64().unwrap() as usize,
            guidance: c["guidance"].as_f64().unwrap(),
            seed: c["seed"].as_u64().unwrap(),
            strength: c["strength"].as_f64().unwrap(),
            variations: n,
        };
        let input = imageio::read_rgb(
            &fixtures()
                .join("pipelines")
                .join(c["input"].as_str().unwrap()),
        )
        .unwrap();
        image_to_image(
            sd,
            s.as_mut(),
            &p,
            &imageio::to_model_input(&input),
            |_, _| {},
        )
        .unwrap()
    };
    to_rgb8(&images).unwrap()
}

#[test]
fn images_match_diffusers_for_every_sampler() {
    let sd = model();
    let mut report = Vec::new();
    for c in cases() {
        let ours = run_case(&sd, &c);
        let files = c["files"].as_array().unwrap();
        assert_eq!(ours.len(), files.len());
        for (img, f) in ours.iter().zip(files) {
            let want =
                imageio::read_rgb(&fixtures().join("pipelines").join(f.as_str().unwrap())).unwrap();
            let (mean, p99) = diff_stats(img, &want);
            report.push(format!("{f}: mean {mean:.3}, p99 {p99}"));
            assert!(
                mean <= 1.0 && p99 <= 4.0,
                "{f}: mean {mean:.3} p99 {p99}\n{}",
                report.join("\n")
            );
        }
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
fn samplers_give_clearly_different_images() {
    // The parity test above must be able to tell samplers apart: every pair of samplers gives
    // images further apart than its tolerance (mean 1, p99 4 levels). The exception is DDIM
    // (eta 0) vs Euler, which are the same first-order solver of the probability-flow ODE in
    // different variables (Karras et al. 2022, sec. 4) and agree to rounding.
    let dir = fixtures().join("pipelines");
    let names = [
        "pndm",
        "ddim",
        "euler",
        "euler-a-0",
        "dpmpp-2m",
        "dpmpp-2m-karras",
        "lms",
    ];
    let imgs: Vec<_> = names
        .iter()
        .map(|n| imageio::read_rgb(&dir.join(format!("txt2img-{n}.png"))).unwrap())
        .collect();
    let mut far = 0;
    for i in 0..imgs.len() {
        for j in i + 1..imgs.len() {
            let (mean, p99) = diff_stats(&imgs[i], &imgs[j]);
            if (names[i], names[j]) == ("ddim", "euler") {
                assert!(mean < 1.0, "DDIM and Euler should agree: {mean}");
                continue;
            }
            assert!(
                mean > 1.25 && p99 > 5.0,
                "{} vs {}: mean {mean:.2}, p99 {p99}",
                names[i],
                names[j]
            );
            if mean > 4.0 {
                far += 1;
            }
        }
    }
    // Most pairs are far apart (mean above four times the tolerance).
    assert!(
        far >= 15,
        "only {far} of 20 sampler pairs differ by more than 4 levels on average"
    );
    // And the two images of one seed differ from each other.
    let a = imageio::read_rgb(&dir.join("txt2img-euler-a-1.png")).unwrap();
    assert!(diff_stats(&imgs[3], &a).0 > 4.0);
}

#[test]
fn bad_sampling_parameters_are_errors() {
    let sd = model();
    let cfg: SchedulerConfig = sd.scheduler_config.clone().unwrap();
    let mut s = from_name("ddim", &cfg).unwrap();
    let mut p = TextToImage {
        prompt: "x".into(),
        negative_prompt: String::new(),
        steps: 0,
        guidance: 5.0,
        seed: 0,
        width: 32,
        height: 32,
        num_images: 1,
    };
    assert!(text_to_image(&sd, s.as_mut(), &p, |_, _| {})
        .unwrap_err()
        .to_string()
        .contains("steps"));
    p.steps = 2;
    p.width = 30;
    assert!(text_to_image(&sd, s.as_mut(), &p, |_, _| {})
        .unwrap_err()
        .to_string()
        .contains("multiples of 8"));
    let q = ImageToImage {
        prompt: "x".into(),
        negative_prompt: String::new(),
        steps: 4,
        guidance: 5.0,
        seed: 0,
        strength: 1.5,
        variations: 1,
    };
    let x = tch::Tensor::zeros([1, 3, 16, 16], (tch::Kind::Float, tch::Device::Cpu));
    let err = image_to_image(&sd, s.as_mut(), &q, &x, |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("strength") && err.contains("(0, 1]"), "{err}");
}
