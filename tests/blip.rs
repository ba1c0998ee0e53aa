//! BLIP captioning against transformers on the tiny checkpoint of tools/make_blip_fixtures.py:
//! preprocessing, image features, first-step logits, and the generated captions (greedy and
//! beam search, with and without a prompt, with min_new_tokens / repetition_penalty).
mod common;

use common::{assert_close, fixtures, read_refs};
use serde_json::Value;
use std::path::PathBuf;
use studioize::models::blip::processor::ImageProcessor;
use studioize::pipelines::caption::{Captioner, DecodeOptions};
use tch::{Device, Kind, Tensor};

const TOL: f64 = 1e-4;

fn blip_dir() -> PathBuf {
    fixtures().join("blip")
}

fn meta() -> Value {
    let text = std::fs::read_to_string(blip_dir().join("refs.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn load() -> Captioner {
    Captioner::load(&blip_dir().join("tiny"), Device::Cpu, Kind::Float)
        .unwrap_or_else(|e| panic!("loading the tiny BLIP: {e:#}"))
}

fn images() -> Vec<PathBuf> {
    meta()["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| blip_dir().join("images").join(n.as_str().unwrap()))
        .collect()
}

fn pixel_values(c: &Captioner) -> Tensor {
    let px: Vec<Tensor> = images()
        .iter()
        .map(|p| c.processor.load(p).unwrap())
        .collect();
    Tensor::stack(&px, 0)
}

#[test]
fn preprocessing_matches_blip_image_processor() {
    let c = load();
    let r = read_refs(&blip_dir().join("refs.safetensors"));
    let px = pixel_values(&c);
    // Pillow's fixed-point resampler reproduced: the pixels are the same bytes, so only
    // float rounding of the normalisation is left.
    assert_close("pixel_values", &px, &r["pixel_values"], 1e-6);
}

#[test]
fn features_and_first_logits_match_transformers() {
    let c = load();
    let r = read_refs(&blip_dir().join("refs.safetensors"));
    let m = meta();
    let feats = c.features(&r["pixel_values"]);
    assert_close("vision features", &feats, &r["features"], TOL);

    tch::no_grad(|| {
        let n = feats.size()[0];
        let bos = m["bos_token_id"].as_i64().unwrap();
        let mut cache = c.model.text.cache(&feats);
        let first = c.model.text.step(
            &Tensor::full([n, 1], bos, (Kind::Int64, Device::Cpu)),
            &mut cache,
        );
        assert_close("logits of [DEC]", &first, &r["logits_first"], TOL);

        // The prompt's prefix, fed at once, and fed one token at a time through the cache.
        let prefix = c.prefix(Some(m["prompt"].as_str().unwrap())).unwrap();
        let ids: Vec<i64> = m["prompt_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        assert_eq!(prefix[1..], ids[1..ids.len() - 1], "prompt tokens");
        let input = Tensor::from_slice(&prefix).view([1, -1]).repeat([n, 1]);
        let mut cache = c.model.text.cache(&feats);
        let all = c.model.text.step(&input, &mut cache);
        assert_close("logits after the prompt", &all, &r["logits_prompt"], TOL);
        let mut cache = c.model.text.cache(&feats);
        let mut last = Tensor::zeros([1], (Kind::Float, Device::Cpu));
        for t in 0..prefix.len() as i64 {
            last = c.model.text.step(&input.narrow(1, t, 1), &mut cache);
        }
        assert_eq!(cache.len(), prefix.len() as i64);
        assert_close(
            "logits after the prompt, cached",
            &last,
            &r["logits_prompt"],
            TOL,
        );
    });
}

#[test]
fn captions_equal_transformers_generate() {
    let c = load();
    let m = meta();
    let px = pixel_values(&c);
    let mut distinct_cases = std::collections::BTreeSet::new();
    for case in m["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let opts = DecodeOptions {
            beams: case["num_beams"].as_u64().unwrap() as usize,
            max_new_tokens: case["max_new_tokens"].as_u64().unwrap() as usize,
            min_new_tokens: case["min_new_tokens"].as_u64().unwrap_or(0) as usize,
            repetition_penalty: case["repetition_penalty"].as_f64().unwrap_or(1.0),
            ..Default::default()
        };
        let prompt = case["prompt"].as_str();
        let ids = c.generate(&px, prompt, &opts).unwrap();
        let captions = c.caption(&px, prompt, &opts).unwrap();
        let want: Vec<&str> = case["captions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(captions, want, "{name}: captions");
        // Token ids too, up to the padding transformers adds to equalise the batch.
        for (i, row) in case["ids"].as_array().unwrap().iter().enumerate() {
            let want: Vec<i64> = row
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            assert_eq!(ids[i], want[..ids[i].len()], "{name}: ids of image {i}");
            assert!(
                want[ids[i].len()..].iter().all(|&t| t == 0 || t == 102),
                "{name}: tail of image {i}"
            );
        }
        if let Some(p) = prompt {
            assert!(
                captions.iter().all(|cap| cap.starts_with(p)),
                "{name}: the prompt is kept"
            );
        }
        // Different images give different captions (the fixture is built for this).
        let set: std::collections::BTreeSet<_> = captions.iter().collect();
        assert!(set.len() >= captions.len() - 1, "{name}: {captions:?}");
        distinct_cases.insert(captions.join("|"));
    }
    assert_eq!(
        distinct_cases.len(),
        m["cases"].as_array().unwrap().len(),
        "every decoding setting changes something"
    );
}

#[test]
fn one_image_at_a_time_gives_the_batch_result() {
    let c = load();
    let px = pixel_values(&c);
    let opts = DecodeOptions {
        beams: 3,
        max_new_tokens: 8,
        ..Default::default()
    };
    let batch = c.caption(&px, None, &opts).unwrap();
    for (i, want) in batch.iter().enumerate() {
        let one = c.caption(&px.narrow(0, i as i64, 1), None, &opts).unwrap();
        assert_eq!(&one[0], want);
    }
}

#[test]
fn parameter_count_matches_transformers() {
    let c = load();
    assert_eq!(
        c.model.parameter_count(),
        meta()["params"].as_i64().unwrap()
    );
}

#[test]
fn bad_model_folders_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = Captioner::load(dir.path(), Device::Cpu, Kind::Float)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("config.json"), "{err}");

    // A Stable Diffusion folder is not a BLIP model.
    let sd = fixtures().join("sd").join("tiny-a").join("text_encoder");
    let err = format!(
        "{:#}",
        Captioner::load(&sd, Device::Cpu, Kind::Float)
            .err()
            .unwrap()
    );
    assert!(
        err.contains("not a BLIP") || err.contains("model_type"),
        "{err}"
    );

    // Weights with a tensor of the wrong shape: named with the file.
    let src = blip_dir().join("tiny");
    let bad = dir.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    for f in std::fs::read_dir(&src).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, bad.join(f.file_name().unwrap())).unwrap();
    }
    let mut tensors: Vec<(String, Tensor)> =
        Tensor::read_safetensors(src.join("model.safetensors")).unwrap();
    for (name, t) in tensors.iter_mut() {
        if name == "vision_model.post_layernorm.weight" {
            *t = Tensor::ones([7], (Kind::Float, Device::Cpu));
        }
    }
    Tensor::write_safetensors(&tensors, bad.join("model.safetensors")).unwrap();
    let err = format!(
        "{:#}",
        Captioner::load(&bad, Device::Cpu, Kind::Float)
            .err()
            .unwrap()
    );
    assert!(
        err.contains("vision_model.post_layernorm.weight") && err.contains("model.safetensors"),
        "{err}"
    );

    // A processor config that disagrees with the model's image size.
    let cfg = std::fs::read_to_string(bad.join("processor_config.json")).unwrap();
    std::fs::write(
        bad.join("processor_config.json"),
        cfg.replace("\"height\": 32", "\"height\": 48"),
    )
    .unwrap();
    let proc = ImageProcessor::from_dir(&bad).unwrap();
    assert_eq!((proc.width, proc.height), (32, 48));
}

#[test]
fn corrupt_image_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("broken.png");
    std::fs::write(&p, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let err = ImageProcessor::read(&p).err().unwrap().to_string();
    assert!(err.contains("broken.png"), "{err}");
}
