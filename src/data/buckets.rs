//! Aspect-ratio buckets (as kohya's trainers and SDXL do, for SD 1.x): instead of cropping every
//! photo to a square, each image goes to the bucket (a width × height of about the training
//! area) whose aspect ratio is closest to its own, is resized to cover it and cropped to it, and
//! every batch is drawn from one bucket so its tensors stack.
//!
//! The epoch plan is a pure function of (seed, epoch): each bucket's images are shuffled, cut
//! into batches, and the batches of all buckets are shuffled together. The number of batches
//! per epoch does not depend on the shuffle, so global batch `b` is still batch `b % per_epoch`
//! of epoch `b / per_epoch` and a resumed run sees exactly what an uninterrupted one would.
use super::rng::{derive_seed, epoch_permutation};
use anyhow::{bail, Result};

/// Bucket geometry: sides are multiples of `step` in `[min_side, max_side]`, areas at most
/// `resolution²`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketSpec {
    pub resolution: u32,
    pub min_side: u32,
    pub max_side: u32,
    pub step: u32,
}

impl BucketSpec {
    /// The defaults for a training resolution: sides from half to twice the resolution, in
    /// steps of 64 px (8 px below 256, where 64 would leave almost no shapes).
    pub fn for_resolution(resolution: u32) -> Self {
        Self {
            resolution,
            min_side: resolution / 2,
            max_side: resolution * 2,
            step: if resolution >= 256 { 64 } else { 8 },
        }
    }

    pub fn validate(&self) -> Result<()> {
        let s = self;
        if s.step == 0 || !s.step.is_multiple_of(8) {
            bail!("data.bucket_step: {} must be a positive multiple of 8 (latents are 1/8 of the image)", s.step);
        }
        if s.min_side < s.step
            || !s.min_side.is_multiple_of(s.step)
            || !s.max_side.is_multiple_of(s.step)
        {
            bail!(
                "data.bucket_min_side / data.bucket_max_side: {} and {} must be multiples of data.bucket_step {} (and at least one step)",
                s.min_side,
                s.max_side,
                s.step
            );
        }
        if s.min_side > s.resolution || s.max_side < s.resolution {
            bail!(
                "data.bucket_min_side / data.bucket_max_side: [{}, {}] must include data.resolution {}",
                s.min_side,
                s.max_side,
                s.resolution
            );
        }
        if !s.resolution.is_multiple_of(s.step) {
            bail!(
                "data.resolution: {} must be a multiple of data.bucket_step {} (the square bucket)",
                s.resolution,
                s.step
            );
        }
        Ok(())
    }

    /// Every bucket `(width, height)`: for each width, the tallest height within the area; and
    /// the same with the roles swapped. Unique, sorted by aspect ratio (tall to wide). The
    /// square `resolution × resolution` is always one of them.
    pub fn buckets(&self) -> Vec<(u32, u32)> {
        let area = u64::from(self.resolution).pow(2);
        let mut out = Vec::new();
        let mut side = self.min_side;
        while side <= self.max_side {
            let other =
                ((area / u64::from(side)) as u32 / self.step * self.step).min(self.max_side);
            if other >= self.min_side {
                out.push((side, other));
                out.push((other, side));
            }
            side += self.step;
        }
        out.sort_by(|a, b| {
            (u64::from(a.0) * u64::from(b.1))
                .cmp(&(u64::from(b.0) * u64::from(a.1)))
                .then(a.0.cmp(&b.0))
        });
        out.dedup();
        // Of buckets with the same aspect ratio keep the largest.
        let mut kept: Vec<(u32, u32)> = Vec::new();
        for b in out {
            match kept.last_mut() {
                Some(k) if u64::from(k.0) * u64::from(b.1) == u64::from(b.0) * u64::from(k.1) => {
                    if b.0 > k.0 {
                        *k = b;
                    }
                }
                _ => kept.push(b),
            }
        }
        kept
    }
}

/// The bucket (index into `buckets`) whose aspect ratio is closest to `width / height` in log
/// space; on a tie, the larger bucket.
pub fn assign(width: u32, height: u32, buckets: &[(u32, u32)]) -> usize {
    let r = (f64::from(width.max(1)) / f64::from(height.max(1))).ln();
    let mut best = 0;
    let mut best_d = f64::INFINITY;
    for (i, &(w, h)) in buckets.iter().enumerate() {
        let d = ((f64::from(w) / f64::from(h)).ln() - r).abs();
        let larger =
            u64::from(w) * u64::from(h) > u64::from(buckets[best].0) * u64::from(buckets[best].1);
        if d < best_d - 1e-12 || ((d - best_d).abs() <= 1e-12 && larger) {
            best = i;
            best_d = d;
        }
    }
    best
}

/// The images of a dataset by bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketPlan {
    pub sizes: Vec<(u32, u32)>,
    /// Bucket of each dataset sample.
    pub bucket_of: Vec<usize>,
}

impl BucketPlan {
    /// Assigns samples of the given (width, height) to the spec's buckets.
    pub fn new(spec: &BucketSpec, sample_sizes: impl IntoIterator<Item = (u32, u32)>) -> Self {
        let sizes = spec.buckets();
        let bucket_of = sample_sizes
            .into_iter()
            .map(|(w, h)| assign(w, h, &sizes))
            .collect();
        Self { sizes, bucket_of }
    }

    /// Sample indices of each bucket, in dataset order.
    pub fn members(&self) -> Vec<Vec<usize>> {
        let mut m = vec![Vec::new(); self.sizes.len()];
        for (i, &b) in self.bucket_of.iter().enumerate() {
            m[b].push(i);
        }
        m
    }

    /// Batches per epoch: each bucket's count divided by the batch size (its last partial batch
    /// dropped with `drop_last`, kept otherwise).
    pub fn batches_per_epoch(&self, batch_size: usize, drop_last: bool) -> usize {
        self.members()
            .iter()
            .map(|m| {
                if drop_last {
                    m.len() / batch_size
                } else {
                    m.len().div_ceil(batch_size)
                }
            })
            .sum()
    }

    /// The batches of one epoch: (bucket, that bucket's images in epoch order, the batch's
    /// range in it). Shuffled with `Some(seed)`, in dataset and bucket order with `None`.
    pub fn epoch(
        &self,
        batch_size: usize,
        drop_last: bool,
        shuffle: Option<(u64, u64)>,
    ) -> Vec<PlannedBatch> {
        let mut batches = Vec::new();
        for (b, members) in self.members().into_iter().enumerate() {
            let order: Vec<usize> = match shuffle {
                Some((seed, epoch)) => {
                    epoch_permutation(members.len(), derive_seed(&[seed, b as u64]), epoch)
                        .into_iter()
                        .map(|i| members[i])
                        .collect()
                }
                None => members,
            };
            let n = order.len();
            let full = if drop_last {
                n / batch_size
            } else {
                n.div_ceil(batch_size)
            };
            let order = std::sync::Arc::new(order);
            for k in 0..full {
                batches.push(PlannedBatch {
                    bucket: b,
                    order: order.clone(),
                    start: k * batch_size,
                    end: ((k + 1) * batch_size).min(n),
                });
            }
        }
        if let Some((seed, epoch)) = shuffle {
            let perm = epoch_permutation(batches.len(), derive_seed(&[seed, u64::MAX]), epoch);
            batches = perm.into_iter().map(|i| batches[i].clone()).collect();
        }
        batches
    }
}

/// One batch of an epoch plan: slots `start..end` of its bucket's epoch order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedBatch {
    pub bucket: usize,
    pub order: std::sync::Arc<Vec<usize>>,
    pub start: usize,
    pub end: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_multiples_of_the_step_within_the_area_with_the_square() {
        let spec = BucketSpec::for_resolution(512);
        spec.validate().unwrap();
        let b = spec.buckets();
        assert!(b.contains(&(512, 512)));
        assert!(b.contains(&(256, 1024)) && b.contains(&(1024, 256)));
        assert!(b.contains(&(640, 384)) && b.contains(&(384, 640)));
        for &(w, h) in &b {
            assert!(w % 64 == 0 && h % 64 == 0, "{w}x{h}");
            assert!(
                (256..=1024).contains(&w) && (256..=1024).contains(&h),
                "{w}x{h}"
            );
            assert!(u64::from(w) * u64::from(h) <= 512 * 512, "{w}x{h}");
        }
        // Sorted from tall to wide, no aspect ratio twice.
        for pair in b.windows(2) {
            let (a, c) = (pair[0], pair[1]);
            assert!(
                u64::from(a.0) * u64::from(c.1) < u64::from(c.0) * u64::from(a.1),
                "{a:?} {c:?}"
            );
        }
        let tiny = BucketSpec::for_resolution(32);
        tiny.validate().unwrap();
        assert!(tiny.buckets().contains(&(32, 32)) && tiny.buckets().contains(&(48, 16)));
    }

    #[test]
    fn bad_specs_are_refused() {
        let base = BucketSpec::for_resolution(512);
        for bad in [
            BucketSpec { step: 60, ..base },
            BucketSpec {
                min_side: 96,
                ..base
            },
            BucketSpec {
                min_side: 576,
                ..base
            },
            BucketSpec {
                max_side: 448,
                ..base
            },
            BucketSpec {
                resolution: 520,
                min_side: 256,
                max_side: 1024,
                step: 64,
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn images_go_to_the_closest_aspect_ratio() {
        let b = BucketSpec::for_resolution(512).buckets();
        let size = |w, h| b[assign(w, h, &b)];
        assert_eq!(size(1000, 1000), (512, 512));
        assert_eq!(size(1200, 800), (640, 384).max(size(1200, 800)));
        let (w, h) = size(2000, 1000);
        assert!(
            w > h && (f64::from(w) / f64::from(h) - 2.0).abs() < 0.3,
            "{w}x{h}"
        );
        let (w, h) = size(1000, 2000);
        assert!(
            h > w && (f64::from(h) / f64::from(w) - 2.0).abs() < 0.3,
            "{w}x{h}"
        );
        let (w, h) = size(4000, 500);
        assert_eq!((w, h), (1024, 256), "the widest bucket for a panorama");
    }

    fn plan() -> BucketPlan {
        // 7 wide, 7 square, 7 tall images, interleaved.
        let sizes = (0..21).map(|i| match i % 3 {
            0 => (900, 500),
            1 => (500, 500),
            _ => (500, 900),
        });
        BucketPlan::new(&BucketSpec::for_resolution(512), sizes)
    }

    #[test]
    fn every_batch_is_one_bucket_and_every_image_comes_once_per_epoch() {
        let p = plan();
        for drop_last in [true, false] {
            let epoch = p.epoch(2, drop_last, Some((7, 3)));
            assert_eq!(epoch.len(), p.batches_per_epoch(2, drop_last));
            let mut seen = Vec::new();
            for b in &epoch {
                for &i in &b.order[b.start..b.end] {
                    assert_eq!(p.bucket_of[i], b.bucket);
                    seen.push(i);
                }
                assert!(!drop_last || b.end - b.start == 2);
            }
            seen.sort_unstable();
            let before = seen.len();
            seen.dedup();
            assert_eq!(seen.len(), before, "an image twice in one epoch");
            if !drop_last {
                assert_eq!(seen, (0..21).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn the_plan_depends_on_seed_and_epoch_only() {
        let p = plan();
        let flat = |e: &[PlannedBatch]| -> Vec<usize> {
            e.iter()
                .flat_map(|b| b.order[b.start..b.end].to_vec())
                .collect()
        };
        let a = flat(&p.epoch(4, true, Some((1, 0))));
        assert_eq!(a, flat(&p.epoch(4, true, Some((1, 0)))));
        assert_ne!(a, flat(&p.epoch(4, true, Some((2, 0)))));
        assert_ne!(a, flat(&p.epoch(4, true, Some((1, 1)))));
        // Without shuffling: dataset order within buckets, buckets in order.
        let fixed = p.epoch(4, false, None);
        assert!(fixed.windows(2).all(|w| w[0].bucket <= w[1].bucket));
    }
}
