//! The shared decoder against Pillow 13 (fixtures from tools/make_decode_fixtures.py): every
//! JPEG / PNG / WebP fixture byte-identical to `Image.open(p).convert("RGB")` (and to
//! `convert("RGBA")`'s alpha, and to `exif_transpose` for the orientations), refusals as Pillow
//! refuses (truncated JPEG, decompression-bomb PNG) in one line naming the file, BLIP pixel
//! values of JPEGs equal to transformers', and the stages that use it: `transform` on an
//! EXIF-rotated photo, the training loader and dataset headers, a training run with a bomb.
mod common;

use common::{assert_close, fixtures, read_refs};
use image::RgbImage;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use studioize::imageio;
use tch::Tensor;

fn dir() -> PathBuf {
    fixtures().join("decode")
}

fn file(name: &str) -> PathBuf {
    dir().join("files").join(name)
}

fn manifest() -> Value {
    let text = std::fs::read_to_string(dir().join("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn entries() -> Vec<(String, Value)> {
    let m = manifest();
    let files = m["files"].as_object().unwrap();
    assert!(files.len() >= 50, "only {} fixtures", files.len());
    files.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn refs() -> HashMap<String, Tensor> {
    read_refs(&dir().join("refs.safetensors"))
}

fn bytes(t: &Tensor) -> Vec<u8> {
    let t = t.contiguous();
    let mut out = vec![0u8; t.numel()];
    t.copy_data(&mut out, t.numel());
    out
}

/// `None` when equal, else how the image differs from Pillow's `[H, W, C]` reference.
fn differs(name: &str, got: &[u8], (w, h): (u32, u32), reference: &Tensor) -> Option<String> {
    let size = reference.size();
    if size[0] != i64::from(h) || size[1] != i64::from(w) {
        return Some(format!("{name}: {w}x{h}, Pillow {}x{}", size[1], size[0]));
    }
    let want = bytes(reference);
    let bad = got.iter().zip(&want).filter(|(a, b)| a != b).count();
    let max = got
        .iter()
        .zip(&want)
        .map(|(&a, &b)| (i16::from(a) - i16::from(b)).abs())
        .max()
        .unwrap_or(0);
    (bad > 0).then(|| format!("{name}: {bad} of {} values differ (max {max})", want.len()))
}

fn size_of(v: &Value) -> (u32, u32) {
    let s = v.as_array().unwrap();
    (s[0].as_u64().unwrap() as u32, s[1].as_u64().unwrap() as u32)
}

#[test]
fn every_fixture_decodes_byte_identical_to_pillow() {
    let r = refs();
    let mut failures = Vec::new();
    let mut checked = 0;
    for (name, e) in entries() {
        if e.get("error").is_some() {
            continue;
        }
        let path = file(&name);
        let (img, orientation) = match imageio::decode_with_orientation(&path) {
            Ok(v) => v,
            Err(err) => {
                failures.push(format!("{name}: {err:#}"));
                continue;
            }
        };
        checked += 1;
        let rgb = img.to_rgb8();
        failures.extend(differs(
            &name,
            rgb.as_raw(),
            rgb.dimensions(),
            &r[&format!("{name}:rgb")],
        ));
        // Alpha: Pillow's convert("RGBA") (palette tRNS, gray/RGB colour keys, 16-bit alpha).
        let alpha: Vec<u8> = img.to_rgba8().pixels().map(|p| p[3]).collect();
        match r.get(&format!("{name}:alpha")) {
            Some(a) => failures.extend(differs(
                &format!("{name} alpha"),
                &alpha,
                rgb.dimensions(),
                &a.unsqueeze(-1),
            )),
            None if alpha.iter().any(|&a| a != 255) => {
                failures.push(format!("{name}: transparent pixels where Pillow has none"))
            }
            None => {}
        }
        // exif_transpose.
        let pillow_o = e["orientation"].as_u64().unwrap();
        let want_o = if (1..=8).contains(&pillow_o) {
            pillow_o
        } else {
            1
        };
        if u64::from(orientation.to_exif()) != want_o {
            failures.push(format!(
                "{name}: orientation {} (Pillow {want_o})",
                orientation.to_exif()
            ));
        }
        let upright = imageio::read_rgb_upright(&path).unwrap();
        let up_ref = r
            .get(&format!("{name}:upright"))
            .unwrap_or(&r[&format!("{name}:rgb")]);
        failures.extend(differs(
            &format!("{name} upright"),
            upright.as_raw(),
            upright.dimensions(),
            up_ref,
        ));
        // Header only: the stored and displayed sizes.
        let header = imageio::read_header(&path).unwrap();
        let stored = size_of(&e["size"]);
        if (header.width, header.height) != stored
            || header.upright_size() != size_of(&e["upright_size"])
        {
            failures.push(format!(
                "{name}: header {header:?}, Pillow {stored:?} / {}",
                e["upright_size"]
            ));
        }
        // `read_rgb` is the same bytes.
        if imageio::read_rgb(&path).unwrap() != rgb {
            failures.push(format!("{name}: read_rgb differs from decode"));
        }
    }
    assert!(checked >= 45, "only {checked} fixtures decoded");
    assert!(
        failures.is_empty(),
        "{} of {checked} differ from Pillow:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_orientations_cover_all_eight_and_swap_sizes() {
    let r = refs();
    let stored = imageio::read_rgb(&file("orient_1.jpg")).unwrap();
    assert_eq!(stored.dimensions(), (40, 24));
    let mut seen = Vec::new();
    for o in 1..=8u32 {
        let up = imageio::read_rgb_upright(&file(&format!("orient_{o}.jpg"))).unwrap();
        let want = if o >= 5 { (24, 40) } else { (40, 24) };
        assert_eq!(up.dimensions(), want, "orientation {o}");
        assert_eq!(r.contains_key(&format!("orient_{o}.jpg:upright")), o != 1);
        seen.push(up);
    }
    // Eight different pictures: each orientation does something else.
    for i in 0..8 {
        for j in i + 1..8 {
            assert!(
                seen[i] != seen[j],
                "orientations {} and {} give the same image",
                i + 1,
                j + 1
            );
        }
    }
    let xmp = imageio::read_header(&file("orient_xmp6.jpg")).unwrap();
    assert_eq!(xmp.orientation.to_exif(), 6);
    assert_eq!(
        imageio::read_header(&file("exif_orient6.png"))
            .unwrap()
            .upright_size(),
        (24, 40)
    );
    for (name, o) in [("raw_profile_orient3.png", 3), ("xmp_orient8.png", 8)] {
        assert_eq!(
            imageio::read_header(&file(name))
                .unwrap()
                .orientation
                .to_exif(),
            o,
            "{name}"
        );
    }
    assert_eq!(
        imageio::read_header(&file("orient_8.webp"))
            .unwrap()
            .upright_size(),
        (24, 40)
    );
}

#[test]
fn refused_files_give_one_line_errors_naming_the_file() {
    let mut kinds = Vec::new();
    for (name, e) in entries() {
        let Some(pillow) = e.get("error") else {
            continue;
        };
        let kind = e["kind"].as_str().unwrap().to_string();
        let err = match imageio::read_rgb(&file(&name)) {
            Ok(_) => panic!("{name}: decoded, but Pillow refuses it: {pillow}"),
            Err(err) => format!("{err:#}"),
        };
        assert!(!err.contains('\n'), "{name}: {err}");
        assert!(
            err.contains(&*file(&name).to_string_lossy()),
            "{name}: {err}"
        );
        match kind.as_str() {
            "truncated" => assert!(err.contains("image file is truncated"), "{name}: {err}"),
            "bomb" => assert!(
                err.contains("100000x100000") && err.contains("178956970"),
                "{err}"
            ),
            other => panic!("{name}: unexpected kind {other}: {pillow}"),
        }
        kinds.push(kind);
    }
    kinds.sort();
    kinds.dedup();
    assert_eq!(kinds, ["bomb", "truncated"]);
    // The bomb is refused from its header alone, before any pixel memory.
    let err = format!("{:#}", imageio::read_header(&file("bomb.png")).unwrap_err());
    assert!(
        err.contains("bomb.png") && err.contains("100000x100000"),
        "{err}"
    );
    // A truncated JPEG's header is fine: the dataset lists it, the loader skips it.
    assert_eq!(
        imageio::read_header(&file("truncated.jpg")).unwrap().width,
        161
    );
}

#[test]
fn blip_pixel_values_of_jpegs_equal_transformers() {
    let r = refs();
    let p = studioize::models::blip::processor::ImageProcessor::from_dir(
        &fixtures().join("blip").join("tiny"),
    )
    .unwrap();
    let cases = manifest()["blip"].as_array().unwrap().clone();
    assert!(cases.len() >= 5);
    for c in cases {
        let name = c.as_str().unwrap();
        let px = p.load(&file(name)).unwrap();
        assert_close(
            &format!("blip {name}"),
            &px,
            &r[&format!("blip:{name}")],
            1e-6,
        );
    }
}

#[test]
fn training_loader_decodes_pillows_upright_pixels() {
    let r = refs();
    for name in [
        "photo_420.jpg",
        "progressive.jpg",
        "cmyk.jpg",
        "gray16.png",
        "orient_6.jpg",
    ] {
        let img = studioize::data::transform::load_image(&file(name)).unwrap();
        let want = r
            .get(&format!("{name}:upright"))
            .unwrap_or(&r[&format!("{name}:rgb")]);
        assert!(
            differs(name, img.as_raw(), img.dimensions(), want).is_none(),
            "{name}"
        );
    }
    let err = format!(
        "{:#}",
        studioize::data::transform::load_image(&file("bomb.png")).unwrap_err()
    );
    assert!(
        err.contains("bomb.png") && err.contains("100000x100000"),
        "{err}"
    );
}

#[test]
fn dataset_sizes_are_upright_and_the_bomb_is_unreadable() {
    use studioize::data::dataset::{Dataset, IssueKind};
    let tmp = tempfile::tempdir().unwrap();
    let imgs = tmp.path().join("imgs");
    std::fs::create_dir(&imgs).unwrap();
    for name in ["orient_6.jpg", "orient_3.jpg", "bomb.png", "truncated.jpg"] {
        std::fs::copy(file(name), imgs.join(name)).unwrap();
        std::fs::write(imgs.join(name).with_extension("txt"), "a photo").unwrap();
    }
    let (ds, report) = Dataset::open(&imgs, None).unwrap();
    let sizes: Vec<(&str, u32, u32)> = ds
        .samples()
        .iter()
        .map(|s| (s.file_name.as_str(), s.width, s.height))
        .collect();
    assert_eq!(
        sizes,
        [
            ("orient_3.jpg", 40, 24),
            ("orient_6.jpg", 24, 40),
            ("truncated.jpg", 161, 97)
        ]
    );
    assert_eq!(report.count(IssueKind::Unreadable), 1);
    let issue = &report.issues[0];
    assert!(
        issue.path.ends_with("bomb.png") && issue.reason.contains("100000x100000"),
        "{issue:?}"
    );
    assert!(
        !issue.reason.contains("imgs/bomb.png"),
        "the path twice: {}",
        issue.reason
    );
}

fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_studioize")
}

/// `transform` of `input` with the tiny model into `out`.
fn transform(input: &Path, out: &Path) {
    let o = Command::new(exe())
        .args(["transform", "--model"])
        .arg(fixtures().join("sd").join("tiny-a"))
        .args([
            "--prompt",
            "a product photo",
            "--strength",
            "0.5",
            "--steps",
            "4",
        ])
        .args(["--seed", "3", "--device", "cpu", "--out"])
        .arg(out)
        .arg(input)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn transform_on_an_exif_rotated_jpeg_is_upright() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("rotated.png");
    transform(&file("orient_6.jpg"), &out);
    let got = imageio::read_rgb(&out).unwrap();
    assert_eq!(got.dimensions(), (24, 40), "stored 40x24, displayed 24x40");
    // The same as transforming Pillow's upright pixels saved losslessly.
    let r = refs();
    let up = &r["orient_6.jpg:upright"];
    let upright = RgbImage::from_raw(24, 40, bytes(up)).unwrap();
    let png = tmp.path().join("upright.png");
    upright.save(&png).unwrap();
    let reference = tmp.path().join("reference.png");
    transform(&png, &reference);
    assert!(
        got == imageio::read_rgb(&reference).unwrap(),
        "transform input was not Pillow's upright photo"
    );
}

/// A tiny training run on the shapes set with `extra` images (and captions) in its folder.
fn train_with(dir: &Path, extra: &[&str], only_extra: bool) -> (std::process::Output, Value) {
    let mut tables = common::tiny_experiment_tables(dir, 8, 5);
    let train = dir.join("shapes").join("train");
    if only_extra {
        let alone = dir.join("alone");
        std::fs::create_dir_all(&alone).unwrap();
        tables = tables.replace(&train.display().to_string(), &alone.display().to_string());
    }
    let images = if only_extra { dir.join("alone") } else { train };
    let csv = images.join("metadata.csv");
    let mut rows = std::fs::read_to_string(&csv).unwrap_or_else(|_| "file_name,text\n".into());
    for name in extra {
        std::fs::copy(file(name), images.join(name)).unwrap();
        rows.push_str(&format!("{name},a photo\n"));
    }
    std::fs::write(&csv, rows).unwrap();
    let cfg = format!(
        "{tables}[train]\nsteps = 2\nbatch_size = 2\nlearning_rate = 1e-4\nseed = 1\n\
         checkpoint_every = 100\nvalidate_every = 100\n[output]\ndir = \"{}\"\n",
        dir.join("run").display()
    );
    let path = dir.join("exp.toml");
    std::fs::write(&path, cfg).unwrap();
    let out = common::train_quiet(&path, &[]);
    let status = std::fs::read_to_string(dir.join("run").join("status.json"))
        .map(|s| serde_json::from_str(&s).unwrap())
        .unwrap_or(Value::Null);
    (out, status)
}

#[test]
fn training_skips_a_bomb_png_and_truncated_jpeg_instead_of_aborting() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, status) = train_with(tmp.path(), &["bomb.png", "truncated.jpg"], false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(status["state"], "finished", "{status}");
    assert!(
        stderr.contains("bomb.png") && stderr.contains("100000x100000"),
        "{stderr}"
    );
}

#[test]
fn training_on_only_a_bomb_fails_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, status) = train_with(tmp.path(), &["bomb.png"], true);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(status["state"], "failed", "{status}");
    // The dataset refuses the bomb from its header: the run fails before training, with the
    // reason in status.json and one error line, instead of aborting on a 30 GB allocation.
    let reason = status["reason"].as_str().unwrap();
    assert!(
        reason.contains("no usable images") && reason.contains("1 unreadable"),
        "{status}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}
