//! `studioize caption`'s files end to end, on the tiny BLIP checkpoint: the output lock (held,
//! and two real processes), `--errors` equal to `--out` refused, non-UTF-8 file names listed as
//! errors instead of collapsed rows, sidecars that are hand-written or symlinks left alone
//! without `--overwrite`, symlink loops in input folders, no CSV after a run that fails before
//! its first row, byte order marks and unclosed quotes.
mod caption_util;
mod common;

use caption_util::*;
use common::fixtures;
use std::collections::HashMap;
use std::process::Stdio;

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
