//! Textual-inversion embeddings on the command line: `generate`, `transform` and `compare` with
//! `--embedding` (safetensors and pickled files) write diffusers' images (mean <= 1 level,
//! p99 <= 4) and record the embeddings, and bad files, tokens and unsafe or broken pickles are
//! refused with one line naming the file and the problem.
mod common;

use common::embedding::{cli_path, dir, pt_dir, read_json, text};
use common::{diff_stats, fixtures, one_line_error, studioize, tiny_a};
use serde_json::Value;
use std::path::Path;
use studioize::imageio;

/// `flag value` pairs of a reference case: each flag with the case's value of its key.
fn case_flags(c: &Value, pairs: &[(&str, &str)]) -> Vec<String> {
    let mut a = Vec::with_capacity(2 * pairs.len());
    for (flag, key) in pairs {
        a.push(flag.to_string());
        a.push(match &c[key] {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        });
    }
    a
}

fn generate_args<'a>(model: &'a str, out: &'a str, c: &'a Value) -> Vec<String> {
    let mut a: Vec<String> = ["generate", "--model", model, "--out", out]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.extend(case_flags(
        c,
        &[
            ("--prompt", "prompt"),
            ("--negative-prompt", "negative_prompt"),
            ("--steps", "steps"),
            ("--guidance", "guidance"),
            ("--seed", "seed"),
            ("--width", "width"),
            ("--height", "height"),
        ],
    ));
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
    let mut common = case_flags(
        &c,
        &[
            ("--prompt", "prompt"),
            ("--negative-prompt", "negative_prompt"),
            ("--steps", "steps"),
            ("--guidance", "guidance"),
            ("--seed", "seed"),
            ("--strength", "strength"),
        ],
    );
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
