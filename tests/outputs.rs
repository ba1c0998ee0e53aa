//! What `generate` and `transform` write and refuse: A1111-readable metadata (checked with an
//! independent reader, sd-parsers), unique output names for same-stem inputs, no overwriting
//! of inputs, non-UTF-8 file names, sizes and batches checked up front, one-line usage errors.
mod common;

use common::{one_line_error, studioize, tiny_a};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn model() -> String {
    tiny_a()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn python() -> PathBuf {
    option_env!("STUDIOIZE_PYTHON")
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .expect(
            "STUDIOIZE_PYTHON (written by setup.sh into .cargo/config.toml) must point at the venv",
        )
}

fn read_with_sd_parsers(image: &Path) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/read_infotext.py");
    let out = Command::new(python())
        .arg(script)
        .arg(image)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn png_parameters_are_a1111_infotext() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("one.png");
    let out = studioize(&[
        "generate",
        "--model",
        &model(),
        "--prompt",
        "a red leather handbag, studio lighting",
        "--negative-prompt",
        "blurry, watermark",
        "--sampler",
        "euler-a",
        "--steps",
        "3",
        "--guidance",
        "6.5",
        "--seed",
        "42",
        "--width",
        "32",
        "--height",
        "48",
        "--device",
        "cpu",
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let parsed = read_with_sd_parsers(&file);
    assert_eq!(parsed["generator"], "AUTOMATIC1111", "{parsed}");
    assert_eq!(parsed["sampler"], "Euler a", "{parsed}");
    assert_eq!(
        parsed["prompt"], "a red leather handbag, studio lighting",
        "{parsed}"
    );
    assert_eq!(parsed["negative_prompt"], "blurry, watermark", "{parsed}");
    assert_eq!(parsed["model"], "tiny-a", "{parsed}");
    let p = &parsed["parameters"];
    assert_eq!(p["steps"], "3", "{parsed}");
    assert_eq!(p["cfg_scale"], "6.5", "{parsed}");
    assert_eq!(p["seed"], "42", "{parsed}");
    assert_eq!(parsed["metadata"]["Size"], "32x48", "{parsed}");
    // The exact record is still there (chunk and sidecar).
    let meta = studioize::imageio::read_png_params(&file).unwrap();
    assert_eq!(meta["negative_prompt"], "blurry, watermark");
    assert_eq!(meta["sampler"], "euler-a");
    assert!(dir.path().join("one.png.json").is_file());
}

/// Writes a small photo at `path` (parents created).
fn photo(path: &Path, rgb: [u8; 3]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = image::RgbImage::from_pixel(40, 32, image::Rgb(rgb));
    img.save(path).unwrap();
}

fn transform(out: &Path, inputs: &[&Path]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_studioize"));
    cmd.args([
        "transform",
        "--model",
        &model(),
        "--prompt",
        "studio photo",
        "--strength",
        "0.5",
        "--steps",
        "2",
        "--device",
        "cpu",
        "--out",
    ]);
    // Paths go to the command as they are (non-UTF-8 names included).
    cmd.arg(out).args(inputs);
    cmd.output().unwrap()
}

#[test]
fn same_stem_inputs_get_their_own_outputs_and_inputs_are_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    photo(&d.join("in/a/x.png"), [200, 10, 10]);
    photo(&d.join("in/b/x.png"), [10, 200, 10]);
    photo(&d.join("in/x.jpg"), [10, 10, 200]);
    photo(&d.join("in/x.png"), [90, 90, 90]);
    let out_dir = d.join("out");
    let out = transform(&out_dir, &[&d.join("in")]);
    assert!(out.status.success(), "{}", stderr(&out));
    for f in [
        "a/x-s0-000.png",
        "b/x-s0-000.png",
        "x-jpg-s0-000.png",
        "x-png-s0-000.png",
    ] {
        assert!(
            out_dir.join(f).is_file(),
            "{f} missing: {:?}",
            std::fs::read_dir(&out_dir).unwrap().collect::<Vec<_>>()
        );
    }
    let inputs: Vec<String> = [
        "a/x-s0-000.png",
        "b/x-s0-000.png",
        "x-jpg-s0-000.png",
        "x-png-s0-000.png",
    ]
    .iter()
    .map(|f| {
        studioize::imageio::read_png_params(&out_dir.join(f)).unwrap()["input"]
            .as_str()
            .unwrap()
            .to_string()
    })
    .collect();
    let mut sorted = inputs.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 4, "four inputs, four outputs: {inputs:?}");

    // `--out photo.png photo.png` would overwrite the photo: refused, the photo unchanged.
    let before = std::fs::read(d.join("in/x.png")).unwrap();
    let e = one_line_error(&transform(&d.join("in/x.png"), &[&d.join("in/x.png")]));
    assert!(e.contains("would overwrite the input photo"), "{e}");
    assert_eq!(std::fs::read(d.join("in/x.png")).unwrap(), before);
}

#[test]
fn non_utf8_file_names_are_transformed() {
    let dir = tempfile::tempdir().unwrap();
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.png");
    let input = dir.path().join("in").join(name);
    photo(&input, [120, 40, 40]);
    let out_dir = dir.path().join("out");
    let out = transform(&out_dir, &[&dir.path().join("in")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"));
    let mut want = std::ffi::OsString::from(std::ffi::OsStr::from_bytes(b"caf\xe9"));
    want.push("-s0-000.png");
    assert!(out_dir.join(want).is_file());
    // Named on the command line, too.
    let out_file = dir
        .path()
        .join(std::ffi::OsStr::from_bytes(b"out-\xe9.png"));
    let out = transform(&out_file, &[&input]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out_file.is_file());
}

#[test]
fn sizes_batches_and_seeds_are_checked_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    let o = out.to_str().unwrap();
    let base = [
        "generate",
        "--model",
        &model(),
        "--prompt",
        "x",
        "--steps",
        "1",
        "--device",
        "cpu",
    ];
    let run = |extra: &[&str]| studioize(&[&base[..], extra].concat());
    let e = one_line_error(&run(&[
        "--width", "100000", "--height", "100000", "--out", o,
    ]));
    assert!(e.contains("at most 16384"), "{e}");
    let e = one_line_error(&run(&[
        "--width",
        "8192",
        "--height",
        "8192",
        "--num-images",
        "64",
        "--batch-size",
        "64",
        "--out",
        o,
    ]));
    assert!(e.contains("lower --batch-size") && e.contains("GiB"), "{e}");
    let e = one_line_error(&run(&["--batch-size", "0", "--out", o]));
    assert!(e.contains("--batch-size must be at least 1"), "{e}");
    let e = one_line_error(&run(&["--num-images", "0", "--out", o]));
    assert!(e.contains("--num-images must be at least 1"), "{e}");
    let e = one_line_error(&run(&[
        "--seed",
        "18446744073709551615",
        "--num-images",
        "3",
        "--batch-size",
        "1",
        "--out",
        o,
    ]));
    assert!(e.contains("past the largest seed"), "{e}");
    let e = one_line_error(&studioize(&[
        "generate",
        "--model",
        &model(),
        "--prompt",
        "x",
        "--steps",
        "1001",
        "--device",
        "cpu",
        "--out",
        o,
    ]));
    assert!(e.contains("more than the 1000 timesteps"), "{e}");
    let e = one_line_error(&run(&["--variant", "fp8", "--out", o]));
    assert!(e.contains("variant 'fp8'"), "{e}");
    let e = one_line_error(&run(&["--out", dir.path().join("x.bmp").to_str().unwrap()]));
    assert!(e.contains("'.bmp' is not a format"), "{e}");
    assert!(!dir.path().join("x.bmp").exists());
    // Many images come in batches: 3 images with --batch-size 2 are two batches (seeds 0, 1).
    let res = run(&[
        "--num-images",
        "3",
        "--batch-size",
        "2",
        "--width",
        "16",
        "--height",
        "16",
        "--out",
        o,
    ]);
    assert!(res.status.success(), "{}", stderr(&res));
    for f in ["x-s0-000.png", "x-s0-001.png", "x-s1-000.png"] {
        assert!(out.join(f).is_file(), "{f}");
    }
    // transform --size: the same budget.
    photo(&dir.path().join("p.png"), [1, 2, 3]);
    let e = one_line_error(&studioize(&[
        "transform",
        "--model",
        &model(),
        "--prompt",
        "x",
        "--size",
        "100000",
        "--device",
        "cpu",
        "--out",
        o,
        dir.path().join("p.png").to_str().unwrap(),
    ]));
    assert!(e.contains("at most 16384") && e.contains("p.png"), "{e}");
}

#[test]
fn long_prompts_are_cut_with_one_warning() {
    let dir = tempfile::tempdir().unwrap();
    let long = vec!["studio"; 90].join(" ");
    let out = studioize(&[
        "generate",
        "--model",
        &model(),
        "--prompt",
        &long,
        "--negative-prompt",
        &long,
        "--steps",
        "1",
        "--width",
        "16",
        "--height",
        "16",
        "--device",
        "cpu",
        "--out",
        dir.path().join("l.png").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.matches("longer than CLIP's 75").count(), 1, "{err}");
}

#[test]
fn usage_errors_are_one_line() {
    for args in [
        &["generate", "--bogus"][..],
        &["transform", "--model", "m"][..],
        &["nonsense"][..],
    ] {
        let out = studioize(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains("--help"),
            "{err}"
        );
    }
}
