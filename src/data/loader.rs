//! Batches for training and validation.
//!
//! Global batch `b` is batch `b % per_epoch` of epoch `b / per_epoch`; the epoch's order is the
//! permutation of (seed, epoch), and each sample's crop/flip/dropout depends on
//! (seed, epoch, index) only, so a loader started at batch `k` yields exactly what an
//! uninterrupted one yields from its `k`-th batch on, without decoding the skipped ones. (With
//! gradient accumulation the training loop starts at `step * gradient_accumulation`.)
//!
//! With `num_workers > 0` a background thread assembles batches ahead (up to `prefetch`
//! waiting in a bounded channel), decoding each batch's images in parallel on a rayon pool of
//! `num_workers` threads. With 0, batches are built on the caller's thread.
//!
//! An image that fails to decode (its header was fine when the dataset was opened) is reported
//! once on stderr, remembered, and replaced by the next decodable sample of the epoch order;
//! the replacement depends only on which files are broken, so it is deterministic too.
use super::buckets::{BucketPlan, BucketSpec, PlannedBatch};
use super::dataset::Dataset;
use super::rng::epoch_permutation;
use super::transform::{self, TransformOptions};
use anyhow::{anyhow, bail, Result};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tch::Tensor;

/// Loader settings (the training stage builds them from its experiment config).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoaderOptions {
    pub batch_size: usize,
    pub seed: u64,
    pub transform: TransformOptions,
    /// Probability of an empty caption.
    pub caption_dropout: f64,
    /// Shuffle every epoch (training); else file order (validation).
    pub shuffle: bool,
    /// Drop each epoch's last incomplete batch, so every batch has `batch_size` samples.
    pub drop_last: bool,
    pub num_workers: usize,
    /// Batches assembled ahead of the consumer (with `num_workers > 0`).
    pub prefetch: usize,
    /// Aspect-ratio buckets (see [`super::buckets`]); `None`: square crops of the resolution.
    pub buckets: Option<BucketSpec>,
}

/// One batch.
#[derive(Debug)]
pub struct Batch {
    /// `[B, 3, H, W]` f32 in [-1, 1], on the CPU: `H = W = resolution`, or the batch's
    /// aspect bucket.
    pub pixels: Tensor,
    /// Captions (empty where dropped).
    pub captions: Vec<String>,
    /// Dataset indices of the samples.
    pub indices: Vec<usize>,
    pub epoch: usize,
    /// Global batch number (0-based).
    pub position: u64,
}

struct Planner {
    dataset: Arc<Dataset>,
    opts: LoaderOptions,
    per_epoch: u64,
    order: Option<(u64, Arc<Vec<usize>>)>,
    buckets: Option<BucketPlan>,
    plan: Option<(u64, Arc<Vec<PlannedBatch>>)>,
    bad: Arc<Mutex<BTreeMap<usize, String>>>,
    pool: Option<rayon::ThreadPool>,
}

impl Planner {
    fn order(&mut self, epoch: u64) -> Arc<Vec<usize>> {
        if let Some((e, o)) = &self.order {
            if *e == epoch {
                return o.clone();
            }
        }
        let n = self.dataset.len();
        let o = if self.opts.shuffle {
            epoch_permutation(n, self.opts.seed, epoch)
        } else {
            (0..n).collect()
        };
        let o = Arc::new(o);
        self.order = Some((epoch, o.clone()));
        o
    }

    /// The bucketed epoch plan (cached for the current epoch).
    fn plan(&mut self, epoch: u64) -> Arc<Vec<PlannedBatch>> {
        if let Some((e, p)) = &self.plan {
            if *e == epoch {
                return p.clone();
            }
        }
        let buckets = self.buckets.as_ref().expect("called with buckets only");
        let shuffle = self.opts.shuffle.then_some((self.opts.seed, epoch));
        let p = Arc::new(buckets.epoch(self.opts.batch_size, self.opts.drop_last, shuffle));
        self.plan = Some((epoch, p.clone()));
        p
    }

    fn batch(&mut self, position: u64) -> Result<Batch> {
        let epoch = position / self.per_epoch;
        let k = (position % self.per_epoch) as usize;
        // The slots of the batch in an order, and the size every sample is brought to.
        let (order, slots, (w, h)) = if self.buckets.is_none() {
            let order = self.order(epoch);
            let b = self.opts.batch_size;
            let slots: Vec<usize> = (k * b..((k + 1) * b).min(order.len())).collect();
            let r = self.opts.transform.resolution;
            (order, slots, (r, r))
        } else {
            let plan = self.plan(epoch);
            let pb = &plan[k];
            let size = self.buckets.as_ref().expect("checked above").sizes[pb.bucket];
            (pb.order.clone(), (pb.start..pb.end).collect(), size)
        };
        let work = |&slot: &usize| {
            load_slot(
                &self.dataset,
                &self.opts,
                &order,
                slot,
                epoch,
                (w, h),
                &self.bad,
            )
        };
        let loaded: Vec<Result<(usize, Vec<f32>, String)>> = match &self.pool {
            Some(pool) => pool.install(|| slots.par_iter().map(work).collect()),
            None => slots.iter().map(work).collect(),
        };
        let mut pixels = Vec::with_capacity(slots.len() * 3 * (w * h) as usize);
        let mut captions = Vec::with_capacity(slots.len());
        let mut indices = Vec::with_capacity(slots.len());
        for item in loaded {
            let (i, px, cap) = item?;
            pixels.extend_from_slice(&px);
            captions.push(cap);
            indices.push(i);
        }
        let pixels =
            Tensor::from_slice(&pixels).view([indices.len() as i64, 3, h as i64, w as i64]);
        Ok(Batch {
            pixels,
            captions,
            indices,
            epoch: epoch as usize,
            position,
        })
    }
}

/// Decodes and transforms (to `size` = (width, height)) the sample at `slot` of `order` (the
/// epoch order, or with buckets the bucket's epoch order), or the next decodable one.
fn load_slot(
    dataset: &Dataset,
    opts: &LoaderOptions,
    order: &[usize],
    slot: usize,
    epoch: u64,
    size: (u32, u32),
    bad: &Mutex<BTreeMap<usize, String>>,
) -> Result<(usize, Vec<f32>, String)> {
    let n = order.len();
    for step in 0..n {
        let index = order[(slot + step) % n];
        if bad.lock().expect("bad-image set").contains_key(&index) {
            continue;
        }
        let sample = &dataset.samples()[index];
        match transform::load_image(&sample.path) {
            Ok(img) => {
                let px = transform::prepare_to(
                    &img,
                    &opts.transform,
                    size,
                    opts.seed,
                    epoch,
                    index as u64,
                );
                let caption = if transform::caption_dropped(
                    opts.caption_dropout,
                    opts.seed,
                    epoch,
                    index as u64,
                ) {
                    String::new()
                } else {
                    sample.caption.clone()
                };
                return Ok((index, px, caption));
            }
            Err(e) => {
                let reason = format!("{e:#}");
                let mut bad = bad.lock().expect("bad-image set");
                if let std::collections::btree_map::Entry::Vacant(slot) = bad.entry(index) {
                    eprintln!(
                        "warning: skipping unreadable image {}: {reason}",
                        sample.path.display()
                    );
                    slot.insert(reason);
                }
            }
        }
    }
    bail!(
        "{}: none of the {n} images that could fill this batch can be decoded",
        dataset.root().display()
    )
}

/// The bucket assignment (with buckets on) and the number of batches per epoch.
fn epoch_layout(dataset: &Dataset, opts: &LoaderOptions) -> Result<(Option<BucketPlan>, u64)> {
    let Some(spec) = opts.buckets else {
        return Ok((None, Batches::batches_per_epoch_of(dataset.len(), opts)?));
    };
    if opts.batch_size == 0 {
        bail!("batch_size must be at least 1");
    }
    let plan = BucketPlan::new(&spec, dataset.samples().iter().map(|s| (s.width, s.height)));
    match plan.batches_per_epoch(opts.batch_size, opts.drop_last) {
        0 => bail!(
            "no aspect bucket holds a full batch of {} (images per bucket: {:?}); lower train.batch_size or turn data.aspect_buckets off",
            opts.batch_size,
            plan.members().iter().map(Vec::len).filter(|&n| n > 0).collect::<Vec<_>>()
        ),
        n => Ok((Some(plan), n as u64)),
    }
}

enum Source {
    Inline(Box<Planner>),
    Background {
        rx: Option<Receiver<Result<Batch>>>,
        handle: Option<JoinHandle<()>>,
    },
}

/// An iterator of batches (see the module docs); infinite for [`Batches::new`], one epoch for
/// [`Batches::one_epoch`]. Yields `Err` once and then ends when a batch cannot be built.
pub struct Batches {
    source: Source,
    next: u64,
    end: Option<u64>,
    per_epoch: u64,
    failed: bool,
    bad: Arc<Mutex<BTreeMap<usize, String>>>,
}

impl Batches {
    /// Batches from global batch `start` on, without end.
    pub fn new(dataset: Arc<Dataset>, opts: LoaderOptions, start: u64) -> Result<Self> {
        Self::with_range(dataset, opts, start, None)
    }

    /// The batches of one epoch (epoch 0).
    pub fn one_epoch(dataset: Arc<Dataset>, opts: LoaderOptions) -> Result<Self> {
        let (_, per_epoch) = epoch_layout(&dataset, &opts)?;
        Self::with_range(dataset, opts, 0, Some(per_epoch))
    }

    /// Batches `start..end` (`end = None`: without end).
    pub fn with_range(
        dataset: Arc<Dataset>,
        opts: LoaderOptions,
        start: u64,
        end: Option<u64>,
    ) -> Result<Self> {
        let (buckets, per_epoch) = epoch_layout(&dataset, &opts)?;
        let bad = Arc::new(Mutex::new(BTreeMap::new()));
        let pool = if opts.num_workers > 0 {
            Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(opts.num_workers)
                    .thread_name(|i| format!("studioize-data-{i}"))
                    .build()
                    .map_err(|e| anyhow!("cannot start the data loader threads: {e}"))?,
            )
        } else {
            None
        };
        let mut planner = Planner {
            dataset,
            opts,
            per_epoch,
            order: None,
            buckets,
            plan: None,
            bad: bad.clone(),
            pool,
        };
        let source = if opts.num_workers == 0 {
            Source::Inline(Box::new(planner))
        } else {
            let (tx, rx) = sync_channel(opts.prefetch.max(1));
            let handle = std::thread::Builder::new()
                .name("studioize-loader".into())
                .spawn(move || {
                    let mut pos = start;
                    while end.is_none_or(|e| pos < e) {
                        let batch = planner.batch(pos);
                        let failed = batch.is_err();
                        if tx.send(batch).is_err() || failed {
                            break;
                        }
                        pos += 1;
                    }
                })
                .map_err(|e| anyhow!("cannot start the data loader thread: {e}"))?;
            Source::Background {
                rx: Some(rx),
                handle: Some(handle),
            }
        };
        Ok(Batches {
            source,
            next: start,
            end,
            per_epoch,
            failed: false,
            bad,
        })
    }

    /// Batches per epoch for a dataset of `n` samples.
    pub fn batches_per_epoch_of(n: usize, opts: &LoaderOptions) -> Result<u64> {
        if opts.batch_size == 0 {
            bail!("batch_size must be at least 1");
        }
        let b = opts.batch_size;
        let per = if opts.drop_last { n / b } else { n.div_ceil(b) };
        if per == 0 {
            bail!("the dataset has {n} images, fewer than one batch of {b}");
        }
        Ok(per as u64)
    }

    pub fn batches_per_epoch(&self) -> u64 {
        self.per_epoch
    }

    /// Images that failed to decode so far, with the reason, by dataset index.
    pub fn skipped(&self) -> BTreeMap<usize, String> {
        self.bad.lock().expect("bad-image set").clone()
    }
}

impl Iterator for Batches {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.failed || self.end.is_some_and(|e| self.next >= e) {
            return None;
        }
        let item = match &mut self.source {
            Source::Inline(planner) => planner.batch(self.next),
            Source::Background { rx, .. } => {
                match rx.as_ref().expect("receiver lives until drop").recv() {
                    Ok(b) => b,
                    Err(_) => Err(anyhow!("the data loader thread stopped unexpectedly")),
                }
            }
        };
        self.failed = item.is_err();
        self.next += 1;
        Some(item)
    }
}

impl Drop for Batches {
    fn drop(&mut self) {
        if let Source::Background { rx, handle } = &mut self.source {
            drop(rx.take()); // the producer's next send fails and it stops
            if let Some(h) = handle.take() {
                let _ = h.join();
            }
        }
    }
}
