//! `studioize caption` and `studioize captions stats` end to end, on the tiny BLIP checkpoint:
//! captions equal to transformers' (refs.json), relative file names, errors CSV, sidecars,
//! resume after kill -9, templates with Shopify metadata, statistics.
mod caption_util;
mod common;

use caption_util::*;
use common::fixtures;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;

#[test]
fn captions_a_folder_like_transformers_with_errors_listed_and_sidecars() {
    let dir = tempfile::tempdir().unwrap();
    let photos = photo_folder(dir.path());
    let out = dir.path().join("out/captions.csv");
    let o = run(&[
        "caption",
        "--model",
        &model(),
        "--max-new-tokens",
        "12",
        "--batch-size",
        "4",
        "--sidecar",
        "--out",
        out.to_str().unwrap(),
        photos.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = read_rows(&out);
    let want = reference("greedy");
    assert_eq!(rows.len(), want.len());
    for (file_name, text) in &rows {
        let base = file_name.rsplit('/').next().unwrap();
        assert_eq!(text, &want[base], "{file_name}");
        // Sidecars hold the same text.
        let side = photos.join(file_name).with_extension("txt");
        assert_eq!(std::fs::read_to_string(side).unwrap().trim(), text);
    }
    assert!(
        rows.iter().any(|(f, _)| f == "sub/tall.png"),
        "names relative to the folder"
    );
    // The corrupt image is listed with its reason and the run went on.
    let errors = std::fs::read_to_string(dir.path().join("out/captions.errors.csv")).unwrap();
    assert!(errors.starts_with("file_name,error\n"));
    assert!(
        errors.contains("broken.jpg,") && errors.contains("not a readable image"),
        "{errors}"
    );

    // A rerun has nothing left to do and changes nothing.
    let before = std::fs::read_to_string(&out).unwrap();
    let o = run(&[
        "caption",
        "--model",
        &model(),
        "--out",
        out.to_str().unwrap(),
        photos.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), before);
}

#[test]
fn prompt_and_beam_search_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let img = fixtures().join("blip/images/wide_down.png");
    let out = dir.path().join("c.csv");
    let r = refs();
    let o = run(&[
        "caption",
        "--model",
        &model(),
        "--max-new-tokens",
        "12",
        "--beams",
        "3",
        "--prompt",
        r["prompt"].as_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        img.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = read_rows(&out);
    assert_eq!(rows.len(), 1);
    // A file given by path keeps the path as given.
    assert_eq!(rows[0].0, img.to_string_lossy().trim_start_matches('/'));
    assert_eq!(rows[0].1, reference("beam3-prompt")["wide_down.png"]);
}

#[test]
fn resumes_after_kill_without_duplicates_or_loss() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("many");
    std::fs::create_dir(&photos).unwrap();
    let images: Vec<PathBuf> = std::fs::read_dir(fixtures().join("blip/images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    for i in 0..90 {
        std::fs::copy(
            &images[i % images.len()],
            photos.join(format!("p{i:03}.png")),
        )
        .unwrap();
    }
    let args = |out: &Path| -> Vec<String> {
        [
            "caption",
            "--model",
            &model(),
            "--beams",
            "3",
            "--max-new-tokens",
            "12",
            "--batch-size",
            "1",
            "--device",
            "cpu",
            "--out",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            out.to_string_lossy().to_string(),
            photos.to_string_lossy().to_string(),
        ])
        .collect()
    };
    // The uninterrupted run, for comparison.
    let full = dir.path().join("full.csv");
    assert!(bin().args(args(&full)).output().unwrap().status.success());
    let want: BTreeMap<String, String> = read_rows(&full).into_iter().collect();
    assert_eq!(want.len(), 90);

    let out = dir.path().join("resumed.csv");
    let mut child = bin()
        .args(args(&out))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let n = std::fs::read_to_string(&out)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if n > 10 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no rows appeared");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let partial = read_rows(&out);
    assert!(
        partial.len() >= 10 && partial.len() < 90,
        "killed after {} rows",
        partial.len()
    );
    // Simulate a torn last line as well: the rerun must drop and redo it.
    let mut f = std::fs::OpenOptions::new().append(true).open(&out).unwrap();
    std::io::Write::write_all(&mut f, b"p999.png,half a capt").unwrap();
    drop(f);

    let o = bin().args(args(&out)).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&format!("({} already there)", partial.len())),
        "{stderr}"
    );
    let rows = read_rows(&out);
    assert_eq!(rows.len(), 90, "no duplicates, no loss");
    let got: BTreeMap<String, String> = rows.into_iter().collect();
    assert_eq!(got, want);
    // The rows written before the kill were kept as they were.
    for (f, t) in partial {
        assert_eq!(got[&f], t);
    }
}

#[test]
fn templates_with_shopify_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let photos = photo_folder(dir.path());
    let meta = dir.path().join("products.csv");
    std::fs::write(
        &meta,
        "Handle,Title,Body (HTML),Vendor,Type,Tags,Image Src\n\
         bag,Leather Bag,<p>Brown</p>,Acme,Bags,\"leather, brown\",https://cdn.shopify.com/s/files/1/products/wide_down.png?v=1\n\
         bag,,,,,,https://cdn.shopify.com/s/files/1/products/gray.png?v=1\n\
         tall,Tall Vase,,Potter,Decor,,\n",
    )
    .unwrap();
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("captions/templates/shopify.txt");
    let out = dir.path().join("c.csv");
    let o = run(&[
        "caption",
        "--model",
        &model(),
        "--max-new-tokens",
        "12",
        "--template",
        template.to_str().unwrap(),
        "--metadata",
        meta.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        photos.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows: HashMap<String, String> = read_rows(&out).into_iter().collect();
    let blip = reference("greedy");
    let suffix = "professional studio product photo";
    assert_eq!(
        rows["wide_down.png"],
        format!(
            "Leather Bag, Bags, {}, leather, brown, {suffix}",
            blip["wide_down.png"]
        )
    );
    // A further image row of the same product inherits its fields.
    assert_eq!(
        rows["gray.png"],
        format!(
            "Leather Bag, Bags, {}, leather, brown, {suffix}",
            blip["gray.png"]
        )
    );
    // Matched by handle = file stem, empty tags dropped.
    assert_eq!(
        rows["sub/tall.png"],
        format!("Tall Vase, Decor, {}, {suffix}", blip["tall.png"])
    );
    // No metadata: the caption and the fixed words only.
    assert_eq!(rows["rgba.png"], format!("{}, {suffix}", blip["rgba.png"]));

    // A field the metadata does not have is an error naming it and the file, before any work.
    let o = run(&[
        "caption",
        "--model",
        &model(),
        "--template",
        "{colour}, {caption}",
        "--metadata",
        meta.to_str().unwrap(),
        "--out",
        dir.path().join("x.csv").to_str().unwrap(),
        photos.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("{colour}") && err.contains("products.csv"),
        "{err}"
    );
    assert!(
        !dir.path().join("x.csv").exists(),
        "nothing written on a config error"
    );
}

#[test]
fn stats_report_lengths_vocabulary_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("c.csv");
    std::fs::write(
        &csv,
        "file_name,text\na.png,a brown leather bag\nb.png,a brown leather bag\nc.png,\"a blue mug, ceramic, on a white table\"\n",
    )
    .unwrap();
    let json = dir.path().join("s.json");
    let o = run(&[
        "captions",
        "stats",
        csv.to_str().unwrap(),
        "--top",
        "3",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("captions: 3") && text.contains("vocabulary: 10"),
        "{text}"
    );
    assert!(
        text.contains("1 caption text(s) shared by 2 image(s)"),
        "{text}"
    );
    assert!(
        text.contains("warning: median caption is 4 words"),
        "{text}"
    );
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(s["length"]["max"], 8);
    assert_eq!(s["top_words"][0], serde_json::json!(["bag", 2]));

    let o = run(&[
        "captions",
        "stats",
        dir.path().join("missing.csv").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.csv"));
}

#[test]
fn bad_inputs_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let photos = photo_folder(dir.path());
    let out = dir.path().join("c.csv");
    for (args, needle) in [
        (vec!["--model", dir.path().to_str().unwrap()], "config.json"),
        (vec!["--model", &model(), "--beams", "0"], "--beams"),
        (
            vec!["--model", &model(), "--max-new-tokens", "200"],
            "positions",
        ),
    ] {
        let mut a = vec!["caption"];
        a.extend(args);
        a.extend(["--out", out.to_str().unwrap(), photos.to_str().unwrap()]);
        let o = run(&a);
        assert!(!o.status.success(), "{a:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{a:?}: {err}");
        assert_eq!(
            err.trim()
                .lines()
                .filter(|l| l.starts_with("error"))
                .count(),
            1,
            "{err}"
        );
    }
    let o = run(&[
        "caption",
        "--model",
        &model(),
        "--out",
        out.to_str().unwrap(),
        "nowhere/",
    ]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("nowhere/: no such file or folder"));
}
