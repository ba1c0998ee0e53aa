//! Textual-inversion embeddings against diffusers' `load_textual_inversion` (fixtures of
//! tools/make_embedding_fixtures.py): every format gives diffusers' images (mean <= 1 level,
//! p99 <= 4), the tokenizer gives transformers' ids after `add_tokens` and diffusers'
//! `maybe_convert_prompt`, added rows stand in for vocabulary rows and alone take gradients,
//! written files load in diffusers and as A1111 reads them, and pickled files read the
//! safetensors vectors. (The command line: tests/embedding_cli.rs.)
mod common;

use common::embedding::{cli_path, dir, pt_dir, read_json, text};
use common::{diff_stats, fixtures, tiny_a};
use serde_json::Value;
use std::path::{Path, PathBuf};
use studioize::imageio;
use studioize::models::clip::ClipTokenizer;
use studioize::pipelines::embedding::{apply, EmbeddingSpec};
use studioize::pipelines::img2img::{image_to_image, ImageToImage};
use studioize::pipelines::sampling::to_rgb8;
use studioize::pipelines::text2img::{text_to_image, TextToImage};
use studioize::pipelines::StableDiffusion;

use common::load_tiny_a as model;

fn render(sd: &StableDiffusion, c: &Value) -> image::RgbImage {
    let cfg = sd.scheduler_config.clone().unwrap();
    let mut s = studioize::schedulers::from_name("pndm", &cfg).unwrap();
    let (steps, guidance) = (
        c["steps"].as_u64().unwrap() as usize,
        c["guidance"].as_f64().unwrap(),
    );
    let seed = c["seed"].as_u64().unwrap();
    let images = if c["task"] == "generate" {
        let p = TextToImage {
            prompt: text(c, "prompt"),
            negative_prompt: text(c, "negative_prompt"),
            steps,
            guidance,
            seed,
            width: c["width"].as_i64().unwrap(),
            height: c["height"].as_i64().unwrap(),
            num_images: 1,
        };
        text_to_image(sd, s.as_mut(), &p, |_, _| {}).unwrap()
    } else {
        let p = ImageToImage {
            prompt: text(c, "prompt"),
            negative_prompt: text(c, "negative_prompt"),
            steps,
            guidance,
            seed,
            strength: c["strength"].as_f64().unwrap(),
            variations: 1,
        };
        let input = imageio::read_rgb(&dir().join(text(c, "input"))).unwrap();
        let x = imageio::to_model_input(&input);
        image_to_image(sd, s.as_mut(), &p, &x, |_, _| {}).unwrap()
    };
    to_rgb8(&images).unwrap().remove(0)
}

#[test]
fn every_format_gives_diffusers_images() {
    let mut report = Vec::new();
    for c in read_json("cases.json") {
        let name = text(&c, "name");
        let mut sd = model();
        let specs: Vec<EmbeddingSpec> = (c["files"].as_array().unwrap().iter())
            .map(|f| EmbeddingSpec {
                path: cli_path(f[0].as_str().unwrap()),
                token: None,
            })
            .collect();
        let applied = apply(&mut sd, &specs).unwrap();
        for (a, f) in applied.iter().zip(c["files"].as_array().unwrap()) {
            let want: Vec<i64> = (c["ids"][f[0].as_str().unwrap()].as_array().unwrap().iter())
                .map(|v| v.as_i64().unwrap())
                .collect();
            assert_eq!(
                (a.token.as_str(), &a.ids),
                (f[1].as_str().unwrap(), &want),
                "{name}"
            );
        }
        // The checkpoint's token embedding is never resized: the added rows live beside it.
        let vars = sd.text_encoder_vs.variables();
        let table = &vars["text_model.embeddings.token_embedding.weight"];
        assert_eq!(table.size(), [49408, 32]);
        let ours = render(&sd, &c);
        let want = imageio::read_rgb(&dir().join(text(&c, "file"))).unwrap();
        let (mean, p99) = diff_stats(&ours, &want);
        report.push(format!("{name}: mean {mean:.3} p99 {p99}"));
        assert!(mean <= 1.0 && p99 <= 4.0, "{}", report.join("\n"));
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
fn the_images_tell_the_embeddings_apart() {
    // The parity test can only fail usefully if an embedding moves the image by more than its
    // tolerance: each differs from the same prompt without embeddings.
    let img = |f: &str| imageio::read_rgb(&dir().join(f)).unwrap();
    let base = img("base.png");
    for c in read_json("cases.json") {
        if c["task"] != "generate" || c["name"] == "base" {
            continue;
        }
        let (mean, _) = diff_stats(&img(c["file"].as_str().unwrap()), &base);
        assert!(
            mean > 3.0,
            "{}: only {mean:.2} levels from the base",
            c["name"]
        );
    }
}

/// tiny-a's tokenizer with the three fixture embeddings' tokens added, in diffusers' order.
fn tokenizer_with_tokens() -> ClipTokenizer {
    let mut t = ClipTokenizer::from_dir(&fixtures().join("sd/tiny-a/tokenizer")).unwrap();
    let mut ids = Vec::new();
    for (token, n) in [("<mug>", 1), ("<studio-light>", 3), ("red-bag", 2)] {
        ids.extend(t.add_embedding_tokens(token, n).unwrap());
    }
    assert_eq!(ids, (49408..49414).collect::<Vec<i64>>());
    t
}

fn ids(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_i64().unwrap())
        .collect()
}

#[test]
fn token_ids_equal_transformers_and_the_prompt_rewrite_diffusers() {
    let t = tokenizer_with_tokens();
    for row in read_json("tokens.json") {
        let prompt = text(&row, "prompt");
        // The tokenizer itself: transformers' ids after add_tokens, for every prompt.
        assert_eq!(
            t.encode_raw(&prompt).unwrap(),
            ids(&row["raw"]),
            "{prompt:?}"
        );
        match prompt.as_str() {
            // diffusers' str.replace misses the capitals its tokenizer matched: studioize
            // expands the 2-vector red-bag there too.
            "a <MUG> on a Red-Bag" => {
                assert_eq!(
                    t.expand_prompt(&prompt).unwrap(),
                    "a <MUG> on a Red-Bag red-bag_1"
                );
                let mut want = ids(&row["raw"]);
                want.insert(6, 49413);
                want.truncate(77);
                assert_eq!(t.encode(&prompt).unwrap(), want);
            }
            // Written out in full: diffusers expands it a second time (into stray pieces);
            // studioize leaves it as it is.
            "<studio-light> <studio-light>_1 <studio-light>_2" => {
                assert_eq!(t.expand_prompt(&prompt).unwrap(), prompt);
                assert_eq!(t.encode(&prompt).unwrap(), ids(&row["raw"]));
            }
            _ => {
                assert_eq!(t.expand_prompt(&prompt).unwrap(), text(&row, "converted"));
                assert_eq!(
                    t.encode(&prompt).unwrap(),
                    ids(&row["converted_ids"]),
                    "{prompt:?}"
                );
            }
        }
    }
}

#[test]
fn tokens_the_vocabulary_has_are_refused() {
    let mut t = tokenizer_with_tokens();
    for (token, n, what) in [
        ("cat", 1, "already in the tokenizer's vocabulary"),
        ("<MUG>", 1, "already added"),
        ("red", 2, "already in the tokenizer's vocabulary"),
        ("<studio-light>", 1, "already in the tokenizer's vocabulary"),
        ("two words", 1, "one word"),
    ] {
        let e = t.add_embedding_tokens(token, n).unwrap_err().to_string();
        assert!(e.contains(what) && !e.contains('\n'), "{token}: {e}");
    }
    // Nothing was added by the refused calls: the next token still gets 49414.
    assert_eq!(t.add_embedding_tokens("<next>", 1).unwrap(), [49414]);
}

#[test]
fn added_rows_stand_in_for_vocabulary_rows_and_alone_take_gradients() {
    // Rows copied from the vocabulary's rows of `photo` (1125) and `of` (539) under new ids
    // give the same hidden states as the original ids; as a trainable leaf they get the
    // gradient and the checkpoint's table none (what textual-inversion training needs).
    let mut sd = model();
    sd.text_encoder_vs.freeze();
    let table = sd.text_encoder_vs.variables()["text_model.embeddings.token_embedding.weight"]
        .shallow_clone();
    let rows = tch::no_grad(|| table.index_select(0, &tch::Tensor::from_slice(&[1125i64, 539])))
        .copy()
        .set_requires_grad(true);
    sd.text_encoder.add_token_rows(49408, &rows).unwrap();
    assert_eq!(sd.text_encoder.token_count(), 49410);
    let ids = |v: &[i64]| tch::Tensor::from_slice(v).unsqueeze(0);
    let added = sd
        .text_encoder
        .forward(&ids(&[49406, 320, 49408, 49409, 49407, 49407]));
    let plain = sd
        .text_encoder
        .forward(&ids(&[49406, 320, 1125, 539, 49407, 49407]));
    let err = f64::try_from((&added - &plain).abs().max()).unwrap();
    assert!(err < 1e-6, "{err}");
    added.sum(tch::Kind::Float).backward();
    let (first, stored) = sd.text_encoder.token_rows().unwrap();
    assert_eq!(first, 49408);
    let g = stored.grad();
    assert!(g.defined() && f64::try_from(g.abs().sum(tch::Kind::Float)).unwrap() > 0.0);
    assert!(!table.grad().defined());
}

#[test]
fn written_files_load_in_diffusers_and_as_a1111_reads_them() {
    use studioize::weights::embedding::{write_diffusers, write_emb_params, EmbeddingFile};
    let src = EmbeddingFile::read(&dir().join("studio")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let diffusers_file = tmp.path().join("learned_embeds.safetensors");
    let kohya_file = tmp.path().join("studio-light.safetensors");
    write_diffusers(&diffusers_file, "<studio-light>", &src.vectors).unwrap();
    write_emb_params(&kohya_file, "studio-light", Some(100), &src.vectors).unwrap();
    let python = option_env!("STUDIOIZE_PYTHON")
        .map(PathBuf::from)
        .expect("STUDIOIZE_PYTHON (setup.sh)");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/check_embedding.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .args(["--model", &tiny_a(), "--file"])
        .arg(format!("{}:<studio-light>", diffusers_file.display()))
        .arg("--file")
        .arg(format!("{}:studio-light", kohya_file.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let want: Vec<Vec<f64>> = Vec::try_from(src.vectors.to_kind(tch::Kind::Double)).unwrap();
    for (r, key) in lines.iter().zip(["<studio-light>", "emb_params"]) {
        assert_eq!(r["keys"], serde_json::json!([key]), "{r}");
        assert_eq!(
            (&r["dtype"], &r["shape"]),
            (
                &serde_json::json!("torch.float32"),
                &serde_json::json!([3, 32])
            )
        );
        assert_eq!(r["metadata"]["format"], "pt");
        assert_eq!(r["ids"], serde_json::json!([49408, 49409, 49410]));
        let rows: Vec<Vec<f64>> = serde_json::from_value(r["rows"].clone()).unwrap();
        assert_eq!(rows, want, "diffusers' rows of {key}");
        assert_eq!(r["a1111_vectors"], 3);
    }
    assert_eq!(lines[1]["a1111_name"], "studio-light");
    assert_eq!(lines[1]["metadata"]["step"], "100");
    // studioize reads both back under their tokens.
    let k = EmbeddingFile::read(&kohya_file).unwrap();
    assert_eq!(k.token, "studio-light");
    assert!(k.vectors.equal(&src.vectors));
    let d = EmbeddingFile::read(tmp.path()).unwrap();
    assert_eq!(d.token, "<studio-light>");
    assert!(d.vectors.equal(&src.vectors));
}

fn sha256_12(file: &Path) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(std::fs::read(file).unwrap());
    digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..12]
        .to_string()
}

#[test]
fn pickled_embeddings_read_the_safetensors_vectors_under_their_tokens() {
    use studioize::weights::embedding::{EmbeddingFile, EmbeddingFormat};
    let red = EmbeddingFile::read(&dir().join("red-bag.safetensors")).unwrap();
    let studio = EmbeddingFile::read(&dir().join("studio")).unwrap();
    for (file, want, token, format) in [
        ("red-bag.pt", &red, "red-bag", EmbeddingFormat::A1111),
        ("param/red-bag.pt", &red, "red-bag", EmbeddingFormat::A1111),
        (
            "paramdict/red-bag.pt",
            &red,
            "red-bag",
            EmbeddingFormat::A1111,
        ),
        (
            "strided/red-bag.pt",
            &red,
            "red-bag",
            EmbeddingFormat::A1111,
        ),
        (
            "studio",
            &studio,
            "<studio-light>",
            EmbeddingFormat::Diffusers,
        ),
    ] {
        let e = EmbeddingFile::read(&pt_dir().join(file)).unwrap();
        assert_eq!((e.token.as_str(), e.format), (token, format), "{file}");
        assert_eq!(e.vectors.kind(), tch::Kind::Float);
        assert!(e.vectors.equal(&want.vectors), "{file}: other vectors");
        assert_eq!(e.short_hash, sha256_12(&e.path), "{file}");
        if format == EmbeddingFormat::A1111 {
            let m = |k: &str| e.metadata.get(k).map(String::as_str);
            assert_eq!(
                (m("name"), m("step"), m("sd_checkpoint_name")),
                (Some("red-bag"), Some("500"), Some("tiny-a")),
                "{file}"
            );
        } else {
            assert!(e.path.ends_with("studio/learned_embeds.bin"));
        }
    }
    // tools/make_embedding_fixtures.py's a1111.pt: A1111's full dict, two random rows.
    let e = EmbeddingFile::read(&dir().join("a1111.pt")).unwrap();
    assert_eq!(
        (e.token.as_str(), e.vector_count(), e.dim()),
        ("a1111", 2, 32)
    );
    assert_eq!(e.metadata.get("step").map(String::as_str), Some("10"));
}
