//! The data loader: transforms (resize, exact center crop, random crops and flips, caption
//! dropout), deterministic and resumable batches, and aspect-ratio buckets.
mod common;

use common::data::{opts, png};
use image::{Rgb, RgbImage};
use std::path::Path;
use std::sync::Arc;
use studioize::data::buckets::BucketSpec;
use studioize::data::dataset::Dataset;
use studioize::data::loader::{Batches, LoaderOptions};
use studioize::data::shapes::{self, ShapesOptions};
use studioize::data::transform::{self, TransformOptions};
use tch::Tensor;

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
