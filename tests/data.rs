//! The dataset: captions from a CSV, sidecar files or metadata.csv, the issue report (missing,
//! duplicate, unreadable and badly named files, symlink loops), corrupt images skipped by the
//! loader, the train/validation split, and the shapes generator. (Transforms, batches and
//! aspect buckets: tests/data_loader.rs.)
mod common;

use common::data::{opts, png};
use std::path::Path;
use std::sync::Arc;
use studioize::data::captions;
use studioize::data::dataset::{CaptionSource, Dataset, IssueKind};
use studioize::data::loader::{Batches, LoaderOptions};
use studioize::data::shapes::{self, ShapesOptions};
use studioize::data::transform;

#[test]
fn csv_captions_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let imgs = dir.path().join("imgs");
    png(&imgs, "a.png", 20, 10, 1);
    png(&imgs, "sub/b.jpg", 10, 20, 2);
    png(&imgs, "c.png", 10, 10, 3); // not in the CSV
    std::fs::write(imgs.join("notes.md"), "ignored").unwrap();
    let csv = dir.path().join("caps.csv");
    std::fs::write(
        &csv,
        "id,file_name,text,extra\n1,a.png,\"a photo, of a\",x\n2,./sub/b.jpg,  b photo ,y\n3,missing.png,gone,z\n4,a.png,again,w\n",
    )
    .unwrap();
    let (ds, report) = Dataset::open(&imgs, Some(&csv)).unwrap();
    let got: Vec<(&str, &str)> = ds
        .samples()
        .iter()
        .map(|s| (s.file_name.as_str(), s.caption.as_str()))
        .collect();
    assert_eq!(got, [("a.png", "a photo, of a"), ("sub/b.jpg", "b photo")]);
    assert_eq!((ds.samples()[0].width, ds.samples()[0].height), (20, 10));
    assert_eq!(report.captions, CaptionSource::Csv(csv.clone()));
    assert_eq!(report.images_found, 3);
    let missing_caption: Vec<_> = report
        .of_kind(IssueKind::MissingCaption)
        .map(|i| i.path.clone())
        .collect();
    assert_eq!(missing_caption, [imgs.join("c.png")]);
    let missing_image: Vec<_> = report
        .of_kind(IssueKind::MissingImage)
        .map(|i| i.path.clone())
        .collect();
    assert_eq!(missing_image, [imgs.join("missing.png")]);
    assert_eq!(report.count(IssueKind::DuplicateCaption), 1);
    assert_eq!(
        report.issues.len(),
        3,
        "each problem reported once: {report}"
    );
    assert!(report.to_string().contains("c.png"));

    // missing column / file errors name the file
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "file_name,caption\na.png,x\n").unwrap();
    let e = format!("{:#}", Dataset::open(&imgs, Some(&bad)).unwrap_err());
    assert!(e.contains("bad.csv") && e.contains("'text'"), "{e}");
    let e = format!(
        "{:#}",
        captions::read_csv(&dir.path().join("nope.csv")).unwrap_err()
    );
    assert!(e.contains("nope.csv"), "{e}");
}

#[test]
fn sidecar_captions_and_default_metadata_csv() {
    let dir = tempfile::tempdir().unwrap();
    png(dir.path(), "a.png", 8, 8, 1);
    std::fs::write(dir.path().join("a.txt"), "a red mug\n").unwrap();
    png(dir.path(), "B.JPEG", 8, 8, 2); // no sidecar
    std::fs::write(dir.path().join("orphan.txt"), "no image").unwrap();
    let (ds, report) = Dataset::open(dir.path(), None).unwrap();
    assert_eq!(report.captions, CaptionSource::Sidecars);
    assert_eq!(ds.len(), 1);
    assert_eq!(ds.samples()[0].caption, "a red mug");
    assert_eq!(
        report
            .of_kind(IssueKind::MissingCaption)
            .next()
            .unwrap()
            .path,
        dir.path().join("B.JPEG")
    );
    assert_eq!(
        report.of_kind(IssueKind::MissingImage).next().unwrap().path,
        dir.path().join("orphan.txt")
    );

    // a metadata.csv in the folder takes over from sidecars
    std::fs::write(
        dir.path().join("metadata.csv"),
        "file_name,text\nB.JPEG,from csv\n",
    )
    .unwrap();
    let (ds, report) = Dataset::open(dir.path(), None).unwrap();
    assert!(matches!(report.captions, CaptionSource::Csv(_)));
    assert_eq!(ds.samples()[0].caption, "from csv");
}

#[test]
fn corrupt_images_reported_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..6 {
        png(dir.path(), &format!("ok{i}.png"), 24, 16, i as u8);
    }
    std::fs::write(dir.path().join("garbage.png"), b"this is not a png").unwrap();
    std::fs::write(dir.path().join("empty.jpg"), b"").unwrap();
    // a valid header with the pixel data cut off: passes open, fails on first decode
    let full = std::fs::read(dir.path().join("ok0.png")).unwrap();
    std::fs::write(dir.path().join("truncated.png"), &full[..full.len() / 2]).unwrap();
    let mut csv = String::from("file_name,text\n");
    for f in [
        "garbage.png",
        "empty.jpg",
        "truncated.png",
        "ok0.png",
        "ok1.png",
        "ok2.png",
        "ok3.png",
        "ok4.png",
        "ok5.png",
    ] {
        csv.push_str(&format!("{f},caption of {f}\n"));
    }
    std::fs::write(dir.path().join("metadata.csv"), csv).unwrap();
    let (ds, report) = Dataset::open(dir.path(), None).unwrap();
    let unreadable: Vec<_> = report
        .of_kind(IssueKind::Unreadable)
        .map(|i| i.path.clone())
        .collect();
    assert_eq!(
        unreadable,
        [dir.path().join("empty.jpg"), dir.path().join("garbage.png")]
    );
    assert_eq!(ds.len(), 7);
    let trunc = ds
        .samples()
        .iter()
        .position(|s| s.file_name == "truncated.png")
        .unwrap();

    let ds = Arc::new(ds);
    let o = LoaderOptions {
        batch_size: 7,
        drop_last: true,
        ..opts(7, 3, 1)
    };
    let batches: Vec<_> = Batches::new(ds.clone(), o, 0)
        .unwrap()
        .take(3)
        .map(|b| b.unwrap())
        .collect();
    let skipped = {
        let mut it = Batches::new(ds.clone(), o, 0).unwrap();
        it.next().unwrap().unwrap();
        it.skipped()
    };
    assert!(
        skipped.contains_key(&trunc),
        "truncated image not reported: {skipped:?}"
    );
    for b in &batches {
        assert_eq!(b.indices.len(), 7);
        assert!(!b.indices.contains(&trunc), "the truncated image was used");
        assert_eq!(b.pixels.size(), [7, 3, 16, 16]);
    }
    // the substitution is deterministic, whichever worker finds the broken file
    let again: Vec<_> = Batches::new(
        ds,
        LoaderOptions {
            num_workers: 0,
            ..o
        },
        0,
    )
    .unwrap()
    .take(3)
    .map(|b| b.unwrap())
    .collect();
    for (a, b) in batches.iter().zip(&again) {
        assert_eq!(a.indices, b.indices);
        assert!(a.pixels.equal(&b.pixels));
    }
}

#[test]
fn empty_dataset_is_an_error_naming_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let e = format!("{:#}", Dataset::open(dir.path(), None).unwrap_err());
    assert!(e.contains(&dir.path().display().to_string()), "{e}");
    png(dir.path(), "a.png", 8, 8, 0); // no caption
    let e = format!("{:#}", Dataset::open(dir.path(), None).unwrap_err());
    assert!(
        e.contains(&dir.path().display().to_string()) && e.contains("1 without captions"),
        "{e}"
    );
    let e = format!(
        "{:#}",
        Dataset::open(&dir.path().join("nope"), None).unwrap_err()
    );
    assert!(e.contains("nope"), "{e}");
}

#[test]
fn split_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    shapes::generate_shapes(
        dir.path(),
        &ShapesOptions {
            count: 20,
            size: 8,
            seed: 1,
        },
    )
    .unwrap();
    let (ds, _) = Dataset::open(dir.path(), None).unwrap();
    let (t1, v1) = ds.split(0.25, 7).unwrap();
    let (t2, v2) = ds.split(0.25, 7).unwrap();
    assert_eq!((t1.len(), v1.len()), (15, 5));
    assert_eq!((&t1, &v1), (&t2, &v2));
    let mut all: Vec<_> = t1
        .samples()
        .iter()
        .chain(v1.samples())
        .map(|s| s.file_name.clone())
        .collect();
    all.sort();
    let orig: Vec<_> = ds.samples().iter().map(|s| s.file_name.clone()).collect();
    assert_eq!(all, orig, "a partition");
    let (_, v3) = ds.split(0.25, 8).unwrap();
    assert_ne!(v1, v3, "the seed matters");
    let (t0, v0) = ds.split(0.0, 7).unwrap();
    assert_eq!((t0.len(), v0.len()), (20, 0));
    let (_, vsmall) = ds.split(0.01, 7).unwrap();
    assert_eq!(
        vsmall.len(),
        1,
        "a positive split holds out at least one image"
    );
    assert!(ds.split(1.0, 0).is_err());
}

#[test]
fn shapes_generator_writes_a_readable_dataset() {
    let dir = tempfile::tempdir().unwrap();
    shapes::generate_fixture(dir.path(), 12, 8, 32, 5).unwrap();
    let (train, report) = Dataset::open(&dir.path().join("train"), None).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(train.len(), 12);
    let (prior, report) = Dataset::open(&dir.path().join("prior"), None).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(prior.len(), 8);
    let mut kinds = std::collections::BTreeSet::new();
    for s in train.samples() {
        assert_eq!((s.width, s.height), (32, 32));
        let img = transform::load_image(&s.path).unwrap();
        let corner = img.get_pixel(0, 0).0;
        if s.caption
            .ends_with("on a white background, studio product photo")
        {
            assert_eq!(corner, [255, 255, 255], "{}", s.file_name);
            kinds.insert("white");
        } else {
            assert!(s.caption.ends_with("on a cluttered table"), "{}", s.caption);
            assert_ne!(corner, [255, 255, 255]);
            kinds.insert("cluttered");
        }
        // the shape is there: the centre pixel is saturated, not white/grey
        let c = img.get_pixel(16, 16).0;
        let spread = c.iter().max().unwrap() - c.iter().min().unwrap();
        assert!(spread > 60, "{}: centre {c:?}", s.file_name);
        let shape = ["circle", "square", "triangle"]
            .iter()
            .find(|k| s.caption.contains(*k));
        assert!(shape.is_some(), "{}", s.caption);
    }
    assert_eq!(kinds.len(), 2);
    let csv = std::fs::read_to_string(dir.path().join("train/metadata.csv")).unwrap();
    assert!(csv.starts_with("file_name,text,shape,color,background\n"));
    // deterministic: the same seed writes the same bytes, another seed other images
    let again = tempfile::tempdir().unwrap();
    shapes::generate_fixture(again.path(), 12, 8, 32, 5).unwrap();
    let other = tempfile::tempdir().unwrap();
    shapes::generate_fixture(other.path(), 12, 8, 32, 6).unwrap();
    for f in [
        "train/shape_0007.png",
        "train/metadata.csv",
        "prior/prior_0003.png",
        "prior/metadata.csv",
    ] {
        assert_eq!(
            std::fs::read(dir.path().join(f)).unwrap(),
            std::fs::read(again.path().join(f)).unwrap(),
            "{f}"
        );
    }
    assert_ne!(
        std::fs::read(dir.path().join("train/shape_0007.png")).unwrap(),
        std::fs::read(other.path().join("train/shape_0007.png")).unwrap()
    );
}

#[test]
fn non_utf8_names_are_reported_not_mangled() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    png(dir.path(), "a.png", 8, 8, 1);
    // Two names a lossy conversion would both turn into "caf\u{FFFD}.png".
    for (i, name) in [&b"caf\xe9.png"[..], &b"caf\xe8.png"[..]]
        .iter()
        .enumerate()
    {
        png(dir.path(), "tmp.png", 8, 8, i as u8);
        std::fs::rename(
            dir.path().join("tmp.png"),
            dir.path().join(OsStr::from_bytes(name)),
        )
        .unwrap();
    }
    std::fs::create_dir(dir.path().join(OsStr::from_bytes(b"d\xff"))).unwrap();
    png(
        &dir.path().join(OsStr::from_bytes(b"d\xff")),
        "b.png",
        8,
        8,
        3,
    );
    std::fs::write(
        dir.path().join("metadata.csv"),
        "file_name,text\na.png,a mug\n",
    )
    .unwrap();
    let (ds, report) = Dataset::open(dir.path(), None).unwrap();
    assert_eq!(ds.len(), 1);
    assert_eq!(report.images_found, 1);
    let bad: Vec<(&Path, &str)> = report
        .of_kind(IssueKind::BadFileName)
        .map(|i| (i.path.as_path(), i.reason.as_str()))
        .collect();
    assert_eq!(bad.len(), 3, "{report}");
    let want = [&b"caf\xe8.png"[..], &b"caf\xe9.png"[..], &b"d\xff"[..]];
    for ((path, reason), name) in bad.iter().zip(want) {
        assert_eq!(
            *path,
            dir.path().join(OsStr::from_bytes(name)),
            "the exact path"
        );
        assert!(reason.contains("not valid UTF-8"), "{reason}");
    }
    assert!(bad[0].1.contains("file name caf\\xE8.png"), "{}", bad[0].1);
    assert!(bad[2].1.contains("folder name d\\xFF"), "{}", bad[2].1);
    assert_eq!(report.count(IssueKind::MissingCaption), 0, "{report}");
    assert_eq!(report.count(IssueKind::Unreadable), 0, "{report}");
}

#[test]
fn a_symlink_loop_is_walked_once_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    png(dir.path(), "a.png", 8, 8, 1);
    png(dir.path(), "sub/b.png", 8, 8, 2);
    std::os::unix::fs::symlink("..", dir.path().join("sub/up")).unwrap();
    std::os::unix::fs::symlink(".", dir.path().join("self")).unwrap();
    std::fs::write(dir.path().join("a.txt"), "a mug").unwrap();
    std::fs::write(dir.path().join("sub/b.txt"), "a cup").unwrap();
    let (ds, report) = Dataset::open(dir.path(), None).unwrap();
    let names: Vec<&str> = ds.samples().iter().map(|s| s.file_name.as_str()).collect();
    assert_eq!(names, ["a.png", "sub/b.png"], "each image once");
    let repeated: Vec<_> = report
        .of_kind(IssueKind::RepeatedFolder)
        .map(|i| i.path.clone())
        .collect();
    assert_eq!(
        repeated,
        [dir.path().join("self"), dir.path().join("sub/up")]
    );
    assert_eq!(report.issues.len(), 2, "{report}");
    assert!(
        report.to_string().contains("folder already searched"),
        "{report}"
    );
}

#[test]
fn captions_csv_with_bom_is_read_and_an_unclosed_quote_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    png(dir.path(), "a.png", 8, 8, 1);
    png(dir.path(), "b.png", 8, 8, 2);
    let csv = dir.path().join("caps.csv");
    std::fs::write(
        &csv,
        "\u{feff}file_name,text\na.png,a mug\nb.png,\"a cup, blue\"\n",
    )
    .unwrap();
    let (ds, report) = Dataset::open(dir.path(), Some(&csv)).unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(ds.samples()[1].caption, "a cup, blue");

    // csv would read the rest of the file into the open field: refused, naming the line.
    std::fs::write(&csv, "file_name,text\na.png,\"a mug\nb.png,a cup\n").unwrap();
    let e = format!("{:#}", Dataset::open(dir.path(), Some(&csv)).unwrap_err());
    assert!(
        e.contains("caps.csv: line 2:") && e.contains("never closed"),
        "{e}"
    );
}
