//! The data pipeline: captions, dataset, split, transforms, batches, shapes generator.
use image::{Rgb, RgbImage};
use std::path::Path;
use std::sync::Arc;
use studioize::data::buckets::BucketSpec;
use studioize::data::captions;
use studioize::data::dataset::{CaptionSource, Dataset, IssueKind};
use studioize::data::loader::{Batches, LoaderOptions};
use studioize::data::shapes::{self, ShapesOptions};
use studioize::data::transform::{self, TransformOptions};
use tch::Tensor;

fn png(dir: &Path, name: &str, w: u32, h: u32, seed: u8) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = RgbImage::from_fn(w, h, |x, y| {
        Rgb([
            (x as u8).wrapping_mul(7) ^ seed,
            (y as u8).wrapping_mul(13),
            seed,
        ])
    });
    img.save(path).unwrap();
}

fn opts(batch_size: usize, seed: u64, num_workers: usize) -> LoaderOptions {
    LoaderOptions {
        batch_size,
        seed,
        transform: TransformOptions {
            resolution: 16,
            center_crop: false,
            random_flip: true,
        },
        caption_dropout: 0.3,
        shuffle: true,
        drop_last: true,
        num_workers,
        prefetch: 2,
        buckets: None,
    }
}

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
fn transform_shapes_ranges_and_exact_center_crop() {
    assert_eq!(transform::resized_size(640, 480, 512), (682, 512));
    assert_eq!(transform::resized_size(300, 500, 100), (100, 166));
    assert_eq!(transform::center_offset(7, 4), 2); // round(1.5) = 2
    assert_eq!(transform::center_offset(9, 4), 2); // round(2.5) = 2 (half to even)
    assert_eq!(transform::center_offset(8, 4), 2);

    // random image, random crop: shape and range
    let img = RgbImage::from_fn(40, 30, |x, y| {
        Rgb([(x * 6) as u8, (y * 8) as u8, ((x * y) % 256) as u8])
    });
    let o = TransformOptions {
        resolution: 16,
        center_crop: false,
        random_flip: true,
    };
    let t = transform::prepare_tensor(&img, &o, 0, 0, 3);
    assert_eq!(t.size(), [3, 16, 16]);
    assert_eq!(t.kind(), tch::Kind::Float);
    let (lo, hi) = (
        f64::try_from(t.min()).unwrap(),
        f64::try_from(t.max()).unwrap(),
    );
    assert!((-1.0..=1.0).contains(&lo) && (-1.0..=1.0).contains(&hi) && hi > lo);
    // white is +1, black is -1
    let white = RgbImage::from_pixel(4, 4, Rgb([255, 255, 255]));
    let co = TransformOptions {
        resolution: 4,
        center_crop: true,
        random_flip: false,
    };
    assert_eq!(transform::prepare(&white, &co, 0, 0, 0), vec![1.0; 48]);
    assert_eq!(
        transform::prepare(&RgbImage::new(4, 4), &co, 0, 0, 0),
        vec![-1.0; 48]
    );

    // a 7x4 image needs no resize for resolution 4; the center crop takes columns 2..6
    let known = RgbImage::from_fn(7, 4, |x, y| Rgb([(x * 30) as u8, (y * 60) as u8, 200]));
    let out = transform::prepare_tensor(&known, &co, 0, 0, 0);
    let expected = Tensor::from_slice(
        &(0..3)
            .flat_map(|c| {
                (0..4).flat_map(move |y| {
                    (0..4).map(move |x| {
                        [((x + 2) * 30) as f32, (y * 60) as f32, 200.0][c] / 127.5 - 1.0
                    })
                })
            })
            .collect::<Vec<f32>>(),
    )
    .view([3, 4, 4]);
    assert!(out.equal(&expected), "center crop not exact: {out}");

    // flips: some (epoch, index) flip, and then the output is the mirror image
    let fo = TransformOptions {
        random_flip: true,
        ..co
    };
    let flipped = (0..64u64)
        .find(|&i| transform::augment_for(&fo, 7, 4, 5, 0, i).flip)
        .expect("some flip");
    let not = (0..64u64)
        .find(|&i| !transform::augment_for(&fo, 7, 4, 5, 0, i).flip)
        .expect("some non-flip");
    let a = transform::prepare_tensor(&known, &fo, 5, 0, flipped);
    assert!(a.equal(&expected.flip([2])));
    assert!(transform::prepare_tensor(&known, &fo, 5, 0, not).equal(&expected));

    // resizing: a 20x40 image to 10 -> 10x20, then a crop of 10 rows
    let tall = RgbImage::from_fn(20, 40, |_, y| Rgb([if y < 20 { 0 } else { 255 }, 0, 0]));
    let ro = TransformOptions {
        resolution: 10,
        center_crop: true,
        random_flip: false,
    };
    let t = transform::prepare_tensor(&tall, &ro, 0, 0, 0);
    assert_eq!(t.size(), [3, 10, 10]);
    let r = t.select(0, 0);
    assert!(
        f64::try_from(r.get(0).get(0)).unwrap() < -0.9
            && f64::try_from(r.get(9).get(0)).unwrap() > 0.9
    );

    // random crops cover different offsets and stay inside the image
    let offs: std::collections::BTreeSet<(u32, u32)> = (0..50u64)
        .map(|i| {
            let a = transform::augment_for(&o, 21, 16, 1, 0, i);
            assert!(a.left <= 5 && a.top == 0);
            (a.left, a.top)
        })
        .collect();
    assert!(offs.len() > 3, "{offs:?}");
    // caption dropout: deterministic, about the right rate
    let drops = (0..1000u64)
        .filter(|&i| transform::caption_dropped(0.2, 1, 0, i))
        .count();
    assert!((150..250).contains(&drops), "{drops}");
    assert_eq!(
        (0..100u64)
            .map(|i| transform::caption_dropped(0.2, 1, 0, i))
            .collect::<Vec<_>>(),
        (0..100u64)
            .map(|i| transform::caption_dropped(0.2, 1, 0, i))
            .collect::<Vec<_>>()
    );
    assert!(!(0..100u64).any(|i| transform::caption_dropped(0.0, 1, 0, i)));
}

type Seen = Vec<(Vec<usize>, Vec<String>, usize, Tensor)>;

fn run(ds: &Arc<Dataset>, o: LoaderOptions, start: u64, n: usize) -> Seen {
    Batches::new(ds.clone(), o, start)
        .unwrap()
        .take(n)
        .map(|b| {
            let b = b.unwrap();
            (b.indices, b.captions, b.epoch, b.pixels)
        })
        .collect()
}

fn same(
    a: &[(Vec<usize>, Vec<String>, usize, Tensor)],
    b: &[(Vec<usize>, Vec<String>, usize, Tensor)],
) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.0 == y.0 && x.1 == y.1 && x.2 == y.2 && x.3.equal(&y.3))
}

#[test]
fn batches_deterministic_and_resumable() {
    let dir = tempfile::tempdir().unwrap();
    shapes::generate_shapes(
        dir.path(),
        &ShapesOptions {
            count: 10,
            size: 24,
            seed: 2,
        },
    )
    .unwrap();
    let (ds, _) = Dataset::open(dir.path(), None).unwrap();
    let ds = Arc::new(ds);
    let o = opts(3, 11, 2);
    assert_eq!(
        Batches::new(ds.clone(), o, 0).unwrap().batches_per_epoch(),
        3
    );

    let full = run(&ds, o, 0, 9);
    assert!(same(&full, &run(&ds, o, 0, 9)), "not deterministic");
    assert!(
        same(
            &full,
            &run(
                &ds,
                LoaderOptions {
                    num_workers: 0,
                    ..o
                },
                0,
                9
            )
        ),
        "depends on the workers"
    );
    assert!(
        same(&full[5..], &run(&ds, o, 5, 4)),
        "resuming at batch 5 differs"
    );
    assert!(same(&full[3..4], &run(&ds, o, 3, 1)));
    assert!(
        !same(&full, &run(&ds, opts(3, 12, 2), 0, 9)),
        "the seed does not matter"
    );

    for (k, (idx, caps, epoch, px)) in full.iter().enumerate() {
        assert_eq!(*epoch, k / 3);
        assert_eq!(idx.len(), 3);
        assert_eq!(px.size(), [3, 3, 16, 16]);
        for (i, c) in idx.iter().zip(caps) {
            assert!(c.is_empty() || *c == ds.samples()[*i].caption);
        }
    }
    // within an epoch, no sample repeats; epochs are ordered differently
    let epoch_of = |e: usize| -> Vec<usize> {
        full[e * 3..e * 3 + 3]
            .iter()
            .flat_map(|b| b.0.clone())
            .collect()
    };
    for e in 0..3 {
        let mut v = epoch_of(e);
        v.sort();
        v.dedup();
        assert_eq!(v.len(), 9);
    }
    assert_ne!(epoch_of(0), epoch_of(1));
    // caption dropout (p = 0.3) fires somewhere in 27 samples
    assert!(
        full.iter().flat_map(|b| b.1.iter()).any(|c| c.is_empty()),
        "caption dropout never fired"
    );

    // one validation epoch: file order, every sample once, last partial batch kept
    let v = LoaderOptions {
        shuffle: false,
        drop_last: false,
        caption_dropout: 0.0,
        ..o
    };
    let val: Vec<_> = Batches::one_epoch(ds.clone(), v)
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    assert_eq!(val.len(), 4);
    assert_eq!(
        val.iter()
            .flat_map(|b| b.indices.clone())
            .collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    assert_eq!(val[3].pixels.size(), [1, 3, 16, 16]);
    // too few images for one full batch
    assert!(Batches::new(ds, opts(11, 0, 0), 0).is_err());
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

/// A folder of wide, square and tall images with sidecar captions.
fn mixed_aspect_folder(dir: &Path) {
    for i in 0..18u8 {
        let (w, h) = match i % 3 {
            0 => (60, 30),
            1 => (40, 40),
            _ => (30, 60),
        };
        png(dir, &format!("img{i:02}.png"), w, h, i);
        std::fs::write(dir.join(format!("img{i:02}.txt")), format!("image {i}")).unwrap();
    }
}

#[test]
fn aspect_buckets_batch_by_shape_and_resume_exactly() {
    let dir = tempfile::tempdir().unwrap();
    mixed_aspect_folder(dir.path());
    let (ds, _) = Dataset::open(dir.path(), None).unwrap();
    let ds = Arc::new(ds);
    let spec = BucketSpec::for_resolution(32);
    let o = LoaderOptions {
        transform: TransformOptions {
            resolution: 32,
            center_crop: false,
            random_flip: true,
        },
        buckets: Some(spec),
        ..opts(4, 9, 2)
    };
    let buckets = spec.buckets();
    let per_epoch = Batches::new(ds.clone(), o, 0).unwrap().batches_per_epoch();
    // 6 images per shape, batches of 4 with the partial one dropped: one batch per bucket.
    assert_eq!(per_epoch, 3);
    let seen = run(&ds, o, 0, 9);
    let mut shapes = std::collections::BTreeSet::new();
    for (indices, _, _, px) in &seen {
        let s = px.size();
        assert_eq!(s[0], indices.len() as i64);
        let (w, h) = (s[3] as u32, s[2] as u32);
        assert!(buckets.contains(&(w, h)), "{w}x{h} is not a bucket");
        shapes.insert((w, h));
        // Every image of the batch has the batch's aspect.
        for &i in indices {
            let sample = &ds.samples()[i];
            let wide = sample.width > sample.height;
            let tall = sample.width < sample.height;
            assert_eq!(
                (wide, tall),
                (w > h, w < h),
                "{} in a {w}x{h} batch",
                sample.file_name
            );
        }
    }
    assert_eq!(shapes.len(), 3, "wide, square and tall batches: {shapes:?}");
    assert!(shapes.contains(&(32, 32)));
    // Resuming at any batch gives what the uninterrupted loader gives from there.
    for start in [1u64, 4, 7] {
        assert!(same(
            &run(&ds, o, start, 2),
            &seen[start as usize..start as usize + 2]
        ));
    }
    // A square-only loader of the same data differs, and a bucket of one image cannot batch.
    assert!(!same(
        &run(&ds, LoaderOptions { buckets: None, ..o }, 0, 3),
        &seen[..3]
    ));
    let err = Batches::new(ds, LoaderOptions { batch_size: 7, ..o }, 0)
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("no aspect bucket holds a full batch of 7"),
        "{err}"
    );
}

#[test]
fn bucket_transform_of_a_square_target_is_the_square_transform() {
    let dir = tempfile::tempdir().unwrap();
    for (i, (w, h)) in [(60, 30), (30, 61), (40, 40), (17, 33)]
        .into_iter()
        .enumerate()
    {
        png(dir.path(), "x.png", w, h, i as u8);
        let img = transform::load_image(&dir.path().join("x.png")).unwrap();
        for center_crop in [true, false] {
            let t = TransformOptions {
                resolution: 16,
                center_crop,
                random_flip: true,
            };
            for index in 0..4 {
                assert_eq!(
                    transform::prepare(&img, &t, 3, 1, index),
                    transform::prepare_to(&img, &t, (16, 16), 3, 1, index)
                );
            }
        }
        // A non-square target is covered exactly, keeping the aspect ratio.
        let (cw, ch) = transform::cover_size(w, h, (24, 16));
        assert!(
            cw >= 24 && ch >= 16 && (cw == 24 || ch == 16),
            "{w}x{h} -> {cw}x{ch}"
        );
        let px = transform::prepare_to(
            &img,
            &TransformOptions {
                resolution: 16,
                center_crop: true,
                random_flip: false,
            },
            (24, 16),
            0,
            0,
            0,
        );
        assert_eq!(px.len(), 3 * 24 * 16);
    }
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
