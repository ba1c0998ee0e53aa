//! Textual-inversion embeddings against diffusers' `load_textual_inversion` (fixtures of
//! tools/make_embedding_fixtures.py): every format gives diffusers' images (mean <= 1 level,
//! p99 <= 4), the tokenizer gives transformers' ids after `add_tokens` and diffusers'
//! `maybe_convert_prompt`, the CLI writes the images and records the embeddings, and bad files
//! are refused with one line naming the file and the problem.
mod common;

use common::{diff_stats, fixtures, one_line_error, studioize, tiny_a};
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

fn dir() -> PathBuf {
    fixtures().join("embedding")
}

/// tools/make_pt_embedding_fixtures.py's torch.save files (the safetensors fixtures' vectors).
fn pt_dir() -> PathBuf {
    fixtures().join("embedding-pt")
}

fn read_json(name: &str) -> Vec<Value> {
    serde_json::from_str(&std::fs::read_to_string(dir().join(name)).unwrap()).unwrap()
}

/// What the command line names for a fixture file: diffusers' training folder for
/// `studio/learned_embeds.safetensors`, the file otherwise.
fn cli_path(file: &str) -> PathBuf {
    let p = dir().join(file);
    match file.strip_suffix("/learned_embeds.safetensors") {
        Some(folder) => dir().join(folder),
        None => p,
    }
}

fn text(c: &Value, k: &str) -> String {
    c[k].as_str().unwrap().to_string()
}

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

fn generate_args<'a>(model: &'a str, out: &'a str, c: &'a Value) -> Vec<String> {
    let mut a: Vec<String> = ["generate", "--model", model, "--out", out]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for (flag, key) in [
        ("--prompt", "prompt"),
        ("--negative-prompt", "negative_prompt"),
        ("--steps", "steps"),
        ("--guidance", "guidance"),
        ("--seed", "seed"),
        ("--width", "width"),
        ("--height", "height"),
    ] {
        a.push(flag.into());
        a.push(match &c[key] {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        });
    }
    a
}

fn case(name: &str) -> Value {
    read_json("cases.json")
        .into_iter()
        .find(|c| c["name"] == name)
        .unwrap()
}

fn run(args: &[String]) -> std::process::Output {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    studioize(&refs)
}

#[test]
fn bad_files_and_tokens_are_refused_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let not_st = tmp.path().join("text.safetensors");
    std::fs::write(&not_st, "not a safetensors file").unwrap();
    let lora = fixtures().join("lora/a/pytorch_lora_weights.safetensors");
    let mug = dir().join("mug.safetensors").display().to_string();
    let cases: Vec<(Vec<String>, &str, &str)> = vec![
        (
            vec![dir().join("sdxl.safetensors").display().to_string()],
            "sdxl.safetensors",
            "SDXL",
        ),
        (
            vec![dir().join("wide.safetensors").display().to_string()],
            "wide.safetensors",
            "hidden size 32",
        ),
        (
            vec![pt_dir().join("evil.pt").display().to_string()],
            "evil.pt",
            "refused global 'posix.system'",
        ),
        (
            vec![lora.display().to_string()],
            "pytorch_lora_weights",
            "use --lora",
        ),
        (
            vec![format!("{mug}:cat")],
            "mug.safetensors",
            "'cat' is already in the tokenizer's vocabulary",
        ),
        (
            vec![mug.clone(), mug.clone()],
            "mug.safetensors",
            "'<mug>' is already",
        ),
        (
            vec![not_st.display().to_string()],
            "text.safetensors",
            "not a valid safetensors",
        ),
        (
            vec![tmp.path().join("none.safetensors").display().to_string()],
            "none.safetensors",
            "no such file",
        ),
        (
            vec![tmp.path().display().to_string()],
            "learned_embeds.safetensors",
            "a folder without",
        ),
    ];
    let model = tiny_a();
    let c = case("mug");
    for (files, name, what) in cases {
        let out_png = tmp.path().join("x.png");
        let mut args = generate_args(&model, out_png.to_str().unwrap(), &c);
        for f in files {
            args.push("--embedding".into());
            args.push(f);
        }
        let line = one_line_error(&run(&args));
        assert!(line.contains(name) && line.contains(what), "{line}");
        assert!(!out_png.exists());
    }
}

fn embedding_flags(c: &Value) -> Vec<String> {
    (c["files"].as_array().unwrap().iter())
        .flat_map(|f| {
            [
                "--embedding".to_string(),
                cli_path(f[0].as_str().unwrap()).display().to_string(),
            ]
        })
        .collect()
}

fn assert_recorded(png: &Path, c: &Value) {
    let params = imageio::read_png_params(png).unwrap();
    let recorded = params["embeddings"].as_array().unwrap();
    let files = c["files"].as_array().unwrap();
    assert_eq!(recorded.len(), files.len());
    for (r, f) in recorded.iter().zip(files) {
        let n = c["ids"][f[0].as_str().unwrap()].as_array().unwrap().len();
        assert_eq!(
            (&r["token"], r["vectors"].as_u64()),
            (&f[1], Some(n as u64)),
            "{r}"
        );
        assert_eq!(r["hash"].as_str().unwrap().len(), 12);
    }
    let texts = imageio::read_png_texts(png).unwrap();
    let infotext = &texts.iter().find(|(k, _)| k == "parameters").unwrap().1;
    let tokens: Vec<String> = (files.iter())
        .map(|f| {
            format!(
                "{}: {}",
                f[1].as_str().unwrap(),
                recorded.iter().find(|r| r["token"] == f[1]).unwrap()["hash"]
                    .as_str()
                    .unwrap()
            )
        })
        .collect();
    assert!(
        infotext.contains(&format!("TI hashes: \"{}\"", tokens.join(", "))),
        "{infotext}"
    );
}

#[test]
fn generate_with_embedding_flags_writes_diffusers_image_and_records_them() {
    let c = case("all");
    let tmp = tempfile::tempdir().unwrap();
    let out_png = tmp.path().join("out.png");
    let model = tiny_a();
    let mut args = generate_args(&model, out_png.to_str().unwrap(), &c);
    args.extend(embedding_flags(&c));
    let out = run(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("token '<studio-light>' (3 vector(s), ids 49409..=49411)"),
        "{err}"
    );
    let (mean, p99) = diff_stats(
        &imageio::read_rgb(&out_png).unwrap(),
        &imageio::read_rgb(&dir().join("all.png")).unwrap(),
    );
    assert!(mean <= 1.0 && p99 <= 4.0, "mean {mean} p99 {p99}");
    assert_recorded(&out_png, &c);
}

#[test]
fn transform_and_compare_use_the_embeddings() {
    let c = case("studio-img2img");
    let tmp = tempfile::tempdir().unwrap();
    let input = dir().join(text(&c, "input"));
    let want = imageio::read_rgb(&dir().join(text(&c, "file"))).unwrap();
    let model = tiny_a();
    let mut common: Vec<String> = vec![];
    for (flag, key) in [
        ("--prompt", "prompt"),
        ("--negative-prompt", "negative_prompt"),
        ("--steps", "steps"),
        ("--guidance", "guidance"),
        ("--seed", "seed"),
        ("--strength", "strength"),
    ] {
        common.push(flag.into());
        common.push(match &c[key] {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        });
    }
    common.extend(embedding_flags(&c));
    let out_png = tmp.path().join("out.png");
    let mut args: Vec<String> = [
        "transform",
        "--model",
        &model,
        "--out",
        out_png.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(common.clone());
    args.push(input.display().to_string());
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (mean, p99) = diff_stats(&imageio::read_rgb(&out_png).unwrap(), &want);
    assert!(
        mean <= 1.0 && p99 <= 4.0,
        "transform: mean {mean} p99 {p99}"
    );
    assert_recorded(&out_png, &c);

    // compare: the embeddings are on every row; the base row is transform's image.
    let cmp = tmp.path().join("cmp");
    let lora = fixtures().join("lora/a").display().to_string();
    let mut args: Vec<String> = [
        "compare",
        "--model",
        &model,
        "--include-base",
        "--lora",
        &lora,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend([
        "--out".into(),
        cmp.display().to_string(),
        "--inputs".into(),
        input.display().to_string(),
    ]);
    args.extend(common);
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let base = cmp.join("base/input-photo.png");
    let (mean, p99) = diff_stats(&imageio::read_rgb(&base).unwrap(), &want);
    assert!(
        mean <= 1.0 && p99 <= 4.0,
        "compare's base row: mean {mean} p99 {p99}"
    );
    assert_recorded(&base, &c);
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(cmp.join("compare.json")).unwrap()).unwrap();
    assert_eq!(meta["embeddings"][0]["token"], "<studio-light>");
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

#[test]
fn generate_with_pickled_embeddings_gives_diffusers_images() {
    let model = tiny_a();
    let tmp = tempfile::tempdir().unwrap();
    for (name, file) in [("red-bag", "red-bag.pt"), ("studio", "studio")] {
        let c = case(name);
        let out_png = tmp.path().join(format!("{name}.png"));
        let mut args = generate_args(&model, out_png.to_str().unwrap(), &c);
        args.extend([
            "--embedding".into(),
            pt_dir().join(file).display().to_string(),
        ]);
        let out = run(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (mean, p99) = diff_stats(
            &imageio::read_rgb(&out_png).unwrap(),
            &imageio::read_rgb(&dir().join(text(&c, "file"))).unwrap(),
        );
        assert!(mean <= 1.0 && p99 <= 4.0, "{name}: mean {mean} p99 {p99}");
        assert_recorded(&out_png, &c);
    }
}

#[test]
fn unsafe_and_broken_pickles_are_refused_in_one_line_without_running_them() {
    // tools/make_pt_embedding_fixtures.py's evil.pt runs `touch` of this file when unpickled.
    let marker = Path::new("/tmp/studioize-evil-pt-marker");
    let _ = std::fs::remove_file(marker);
    let tmp = tempfile::tempdir().unwrap();
    let good = std::fs::read(pt_dir().join("red-bag.pt")).unwrap();
    let truncated = tmp.path().join("truncated.pt");
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    // The storage cut short inside a well-formed zip: the 256-byte entry rewritten as 8 bytes.
    let short = tmp.path().join("short.pt");
    write_zip_with_storage(&pt_dir().join("red-bag.pt"), &short, &[0u8; 8]);
    let model = tiny_a();
    let c = case("red-bag");
    for (file, what) in [
        (pt_dir().join("evil.pt"), "refused global 'posix.system'"),
        (pt_dir().join("other.pt"), "2 tensors (a, b)"),
        (truncated.clone(), "not a torch.save zip"),
        (short.clone(), "8 bytes for 64 elements"),
    ] {
        let out_png = tmp.path().join("x.png");
        let mut args = generate_args(&model, out_png.to_str().unwrap(), &c);
        args.extend(["--embedding".into(), file.display().to_string()]);
        let line = one_line_error(&run(&args));
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(line.contains(name) && line.contains(what), "{line}");
        assert!(!out_png.exists());
    }
    assert!(!marker.exists(), "evil.pt was run");
}

/// `src` with its storage `data/0` replaced by `data` (every other entry copied, stored).
fn write_zip_with_storage(src: &Path, dst: &Path, data: &[u8]) {
    use std::io::{Read, Write};
    let mut zin = zip::ZipArchive::new(std::fs::File::open(src).unwrap()).unwrap();
    let mut zout = zip::ZipWriter::new(std::fs::File::create(dst).unwrap());
    let opts =
        zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..zin.len() {
        let mut f = zin.by_index(i).unwrap();
        let name = f.name().to_string();
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).unwrap();
        zout.start_file(name.as_str(), opts).unwrap();
        zout.write_all(if name.ends_with("/data/0") {
            data
        } else {
            &bytes
        })
        .unwrap();
    }
    zout.finish().unwrap();
}
