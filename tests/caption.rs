//! `studioize caption` and `studioize captions stats` end to end, on the tiny BLIP checkpoint:
//! captions equal to transformers' (refs.json), relative file names, errors CSV, sidecars,
//! resume after kill -9, templates with Shopify metadata, statistics; the output lock, refused
//! paths, non-UTF-8 names, protected sidecars, symlink loops, BOMs and unclosed quotes.
mod common;

use common::fixtures;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_studioize"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("run studioize")
}

fn model() -> String {
    fixtures().join("blip/tiny").to_string_lossy().to_string()
}

fn refs() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("blip/refs.json")).unwrap())
        .unwrap()
}

/// The transformers captions of a refs.json case, by image name.
fn reference(case: &str) -> HashMap<String, String> {
    let r = refs();
    let c = r["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == case)
        .unwrap();
    r["images"]
        .as_array()
        .unwrap()
        .iter()
        .zip(c["captions"].as_array().unwrap())
        .map(|(i, c)| {
            (
                i.as_str().unwrap().to_string(),
                c.as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn read_rows(path: &Path) -> Vec<(String, String)> {
    let mut r = csv::Reader::from_path(path).unwrap();
    assert_eq!(
        r.headers().unwrap().iter().collect::<Vec<_>>(),
        ["file_name", "text"]
    );
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            (rec[0].to_string(), rec[1].to_string())
        })
        .collect()
}

/// The fixture images under `dir` (one in a subfolder) plus a corrupt one.
fn photo_folder(dir: &Path) -> PathBuf {
    let photos = dir.join("photos");
    std::fs::create_dir_all(photos.join("sub")).unwrap();
    for e in std::fs::read_dir(fixtures().join("blip/images")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_owned();
        let to = if name == "tall.png" {
            photos.join("sub").join(name)
        } else {
            photos.join(name)
        };
        std::fs::copy(&p, to).unwrap();
    }
    std::fs::write(photos.join("broken.jpg"), b"\xff\xd8\xff not a jpeg").unwrap();
    photos
}

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

/// `caption` on `inputs` into `out` with the tiny model and short captions, plus `extra` args.
fn caption(out: &Path, inputs: &[&Path], extra: &[&str]) -> Output {
    let mut c = bin();
    c.args([
        "caption",
        "--model",
        &model(),
        "--max-new-tokens",
        "12",
        "--device",
        "cpu",
    ])
    .args(extra)
    .arg("--out")
    .arg(out)
    .args(inputs);
    c.output().expect("run studioize")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a failed run printed exactly one `error:` line containing every needle.
fn assert_one_line_error(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert!(!o.status.success(), "should fail: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    for n in needles {
        assert!(lines[0].contains(n), "{n:?} not in {err}");
    }
}

/// `n` copies of the fixture images in a new folder `dir/name`.
fn copies(dir: &Path, name: &str, n: usize) -> PathBuf {
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    let mut images: Vec<PathBuf> = std::fs::read_dir(fixtures().join("blip/images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    images.sort();
    for i in 0..n {
        std::fs::copy(
            &images[i % images.len()],
            folder.join(format!("p{i:03}.png")),
        )
        .unwrap();
    }
    folder
}

#[test]
fn a_second_caption_to_one_out_fails_on_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let photos = copies(dir.path(), "photos", 20);
    let out = dir.path().join("c.csv");
    let lock = dir.path().join("c.csv.lock");

    // The lock held by this process: the run fails at once, naming the holder and the file.
    let held = studioize::fsutil::Lock::acquire(&lock, "test").unwrap();
    let o = caption(&out, &[&photos], &[]);
    let pid = std::process::id().to_string();
    assert_one_line_error(&o, &["is in use by process", &pid, "c.csv.lock"]);
    assert!(!out.exists(), "nothing written by the refused run");
    drop(held);

    // Two real processes: the second fails while the first runs, which then finishes alone.
    let slow = ["--beams", "3", "--batch-size", "1"];
    let mut first = bin()
        .args([
            "caption",
            "--model",
            &model(),
            "--max-new-tokens",
            "12",
            "--device",
            "cpu",
        ])
        .args(slow)
        .arg("--out")
        .arg(&out)
        .arg(&photos)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::fs::read_to_string(&out).map_or(0, |t| t.lines().count()) < 3 {
        assert!(std::time::Instant::now() < deadline, "no rows appeared");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(
        std::fs::read_to_string(&lock).unwrap().trim(),
        first.id().to_string(),
        "the lock file holds the owner's pid"
    );
    let second = caption(&out, &[&photos], &slow);
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first run must still be running for this test to mean anything"
    );
    assert_one_line_error(
        &second,
        &[
            "captions file",
            "is in use by process",
            &first.id().to_string(),
        ],
    );
    let status = first.wait().unwrap();
    assert!(status.success());
    let rows = read_rows(&out);
    let names: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!((rows.len(), names.len()), (20, 20), "every image once");
    assert!(!lock.exists(), "the lock file is removed at the end");
}

#[test]
fn errors_csv_equal_to_out_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let img = fixtures().join("blip/images/gray.png");
    let out = dir.path().join("c.csv");
    let before = "file_name,text\nx.png,a hand-made caption\n";
    std::fs::write(&out, before).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::os::unix::fs::symlink(&out, dir.path().join("link.csv")).unwrap();
    std::fs::hard_link(&out, dir.path().join("hard.csv")).unwrap();
    for errors in [
        out.clone(),
        dir.path().join("sub/../c.csv"),
        dir.path().join("link.csv"),
        dir.path().join("hard.csv"),
    ] {
        let o = caption(&out, &[&img], &["--errors", errors.to_str().unwrap()]);
        assert_one_line_error(&o, &["is the same file as --out", "c.csv"]);
        assert_eq!(std::fs::read_to_string(&out).unwrap(), before, "{errors:?}");
    }
    // Also when neither exists yet.
    let new = dir.path().join("new.csv");
    let o2 = bin()
        .current_dir(dir.path())
        .args([
            "caption",
            "--model",
            &model(),
            "--out",
            "new.csv",
            "--errors",
        ])
        .arg("sub/../new.csv")
        .arg(&img)
        .output()
        .unwrap();
    assert_one_line_error(&o2, &["is the same file as --out"]);
    assert!(!new.exists());
}

#[test]
fn non_utf8_file_names_are_listed_as_errors_not_collapsed() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    let gray = fixtures().join("blip/images/gray.png");
    std::fs::copy(&gray, photos.join("ok.png")).unwrap();
    // Two names that a lossy conversion would both write as "caf\u{FFFD}.png".
    for name in [&b"caf\xe9.png"[..], &b"caf\xe8.png"[..]] {
        std::fs::copy(&gray, photos.join(std::ffi::OsStr::from_bytes(name))).unwrap();
    }
    let out = dir.path().join("c.csv");
    let o = caption(&out, &[&photos], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(!text.contains('\u{fffd}'), "{text}");
    let rows = read_rows(&out);
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0],
        (
            "ok.png".to_string(),
            reference("greedy")["gray.png"].clone()
        )
    );
    let mut r = csv::Reader::from_path(dir.path().join("c.errors.csv")).unwrap();
    let errors: Vec<(String, String)> = r
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].to_string(), r[1].to_string())
        })
        .collect();
    let names: Vec<&str> = errors.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(names, ["caf\\xE8.png", "caf\\xE9.png"], "one row each");
    for (_, reason) in &errors {
        assert!(reason.contains("not valid UTF-8"), "{reason}");
    }
    assert!(
        stderr(&o).contains("2 image(s) not captioned"),
        "{}",
        stderr(&o)
    );

    // Given as a file, a non-UTF-8 name is refused the same way; nothing else to do fails.
    let bad = photos.join(std::ffi::OsStr::from_bytes(b"caf\xe9.png"));
    let o = caption(&dir.path().join("d.csv"), &[&bad], &[]);
    assert_one_line_error(&o, &["no image can be captioned", "d.errors.csv"]);
    assert!(!dir.path().join("d.csv").exists());
    let errors = std::fs::read_to_string(dir.path().join("d.errors.csv")).unwrap();
    assert!(
        errors.contains("caf\\xE9.png") && errors.contains("not valid UTF-8"),
        "{errors}"
    );
}

#[test]
fn sidecars_never_replace_hand_written_text_or_follow_symlinks_without_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let photos = copies(dir.path(), "photos", 3); // p000, p001, p002
    let hand = photos.join("p000.txt");
    std::fs::write(&hand, "my own careful caption\n").unwrap();
    let target = dir.path().join("elsewhere.txt");
    std::fs::write(&target, "not a caption file\n").unwrap();
    let link = photos.join("p001.txt");
    std::os::unix::fs::symlink(&target, &link).unwrap();

    let out = dir.path().join("c.csv");
    let o = caption(&out, &[&photos], &["--sidecar"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("2 existing sidecar .txt file(s) left alone"),
        "{err}"
    );
    assert!(
        err.contains("p000.txt") && err.contains("p001.txt"),
        "{err}"
    );
    let rows: HashMap<String, String> = read_rows(&out).into_iter().collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(
        std::fs::read_to_string(&hand).unwrap(),
        "my own careful caption\n"
    );
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "not a caption file\n"
    );
    let fresh = photos.join("p002.txt");
    assert_eq!(
        std::fs::read_to_string(&fresh).unwrap().trim(),
        rows["p002.png"]
    );

    // Resumed with --overwrite: the two are replaced by files; the link's target is untouched.
    let o = caption(&out, &[&photos], &["--sidecar", "--overwrite"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("left alone"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(&hand).unwrap().trim(),
        rows["p000.png"]
    );
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_file());
    assert_eq!(
        std::fs::read_to_string(&link).unwrap().trim(),
        rows["p001.png"]
    );
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "not a caption file\n"
    );

    let o = caption(&out, &[&photos], &["--overwrite"]);
    assert_one_line_error(&o, &["--overwrite", "--sidecar"]);
}

#[test]
fn a_symlink_loop_in_an_input_folder_is_searched_once() {
    let dir = tempfile::tempdir().unwrap();
    let photos = photo_folder(dir.path());
    std::os::unix::fs::symlink("..", photos.join("sub/up")).unwrap();
    std::os::unix::fs::symlink(".", photos.join("again")).unwrap();
    let out = dir.path().join("c.csv");
    let o = caption(&out, &[&photos], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("not searching"), "{}", stderr(&o));
    let mut names: Vec<String> = read_rows(&out).into_iter().map(|r| r.0).collect();
    names.sort();
    let mut want: Vec<String> = reference("greedy")
        .keys()
        .map(|k| {
            if k == "tall.png" {
                "sub/tall.png".to_string()
            } else {
                k.clone()
            }
        })
        .collect();
    want.sort();
    assert_eq!(names, want, "each image once");
}

#[test]
fn a_run_that_fails_before_its_first_row_leaves_no_csv() {
    let dir = tempfile::tempdir().unwrap();
    let photos = photo_folder(dir.path());
    let bad_model = ["--model", dir.path().to_str().unwrap()];
    let out = dir.path().join("out/c.csv");
    let mut c = bin();
    c.args(["caption"])
        .args(bad_model)
        .arg("--out")
        .arg(&out)
        .arg(&photos);
    let o = c.output().unwrap();
    assert_one_line_error(&o, &["config.json"]);
    for f in ["c.csv", "c.errors.csv", "c.csv.lock", "c.errors.csv.lock"] {
        assert!(!dir.path().join("out").join(f).exists(), "{f} left behind");
    }
    // An existing CSV (with a torn last row) and errors CSV are left exactly as they were.
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let old = "file_name,text\ngray.png,a caption\nrgba.png,torn ro";
    std::fs::write(&out, old).unwrap();
    let errors = dir.path().join("out/c.errors.csv");
    std::fs::write(&errors, "file_name,error\nbroken.jpg,old\n").unwrap();
    let o = bin()
        .args(["caption"])
        .args(bad_model)
        .arg("--out")
        .arg(&out)
        .arg(&photos)
        .output();
    assert_one_line_error(&o.unwrap(), &["config.json"]);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), old);
    assert_eq!(
        std::fs::read_to_string(&errors).unwrap(),
        "file_name,error\nbroken.jpg,old\n"
    );
}

#[test]
fn a_bom_csv_is_resumed_and_an_unclosed_quote_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let photos = photo_folder(dir.path());
    let out = dir.path().join("c.csv");
    // As Excel saves it: a byte order mark before the header.
    let old = "\u{feff}file_name,text\ngray.png,my own caption\n";
    std::fs::write(&out, old).unwrap();
    let o = caption(&out, &[&photos], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("(1 already there)"), "{}", stderr(&o));
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.starts_with(old), "kept as it was: {text}");
    let rows = studioize::data::captions::read_csv(&out).unwrap();
    assert_eq!(rows.len(), reference("greedy").len());
    assert_eq!(rows.iter().filter(|r| r.file_name == "gray.png").count(), 1);

    // An unclosed quote on line 3: named, and the file untouched.
    let bad = dir.path().join("bad.csv");
    let old = "file_name,text\ngray.png,fine\nrgba.png,\"never closed\nwide_down.png,x\n";
    std::fs::write(&bad, old).unwrap();
    let o = caption(&bad, &[&photos], &[]);
    assert_one_line_error(&o, &["bad.csv: line 3:", "never closed"]);
    assert_eq!(std::fs::read_to_string(&bad).unwrap(), old);
    let o = run(&["captions", "stats", bad.to_str().unwrap()]);
    assert_one_line_error(&o, &["bad.csv: line 3:", "never closed"]);
}
