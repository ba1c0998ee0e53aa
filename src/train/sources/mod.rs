//! Data sources of a run. The training stream is a [`Source`]: it yields micro-batches as VAE
//! posteriors with their captions, in the loader's deterministic order. The validation and
//! prior sets are [`FixedSet`]s: encoded once, with fixed noise, for a loss that only the
//! weights change.
//!
//! A DreamBooth class-images set would be a second `Source` mixed into the stream (the
//! objective weighting its rows by the prior-loss weight); paired studio / casual sets a
//! `Source` whose examples carry their targets.
mod fixed;
pub mod options;
mod training;

pub use fixed::{fixed_timesteps, FixedSet};
pub use training::{LatentCache, TrainingSource};

use super::config::ExperimentConfig;
use super::objective::Objective;
use super::run_dir::{RunDir, ValidationRecord};
use crate::data::buckets::{BucketPlan, BucketSpec};
use crate::data::Dataset;
use crate::models::vae::DiagonalGaussian;
use crate::pipelines::StableDiffusion;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One training micro-batch, encoded.
pub struct Example {
    /// The VAE posterior of the images; the step draws its latents from it.
    pub posterior: DiagonalGaussian,
    /// Their captions (empty where dropped).
    pub captions: Vec<String>,
    /// The data epoch it comes from.
    pub epoch: u64,
}

/// A stream of training micro-batches.
pub trait Source {
    /// The next micro-batch.
    fn next(&mut self, sd: &StableDiffusion) -> Result<Example>;
}

/// The data of a run, opened once.
pub struct Sources {
    /// The training images (after the validation split).
    pub training: Arc<Dataset>,
    pub validation: Option<FixedSet>,
    /// The prior (forgetting) set, validated beside the validation set.
    pub prior: Option<FixedSet>,
    /// The fixed timesteps of the validation losses.
    pub timesteps: Vec<i64>,
}

impl Sources {
    /// Opens the training, validation and prior sets of `cfg` (warnings for skipped files on
    /// stderr), writes `buckets.csv` with aspect buckets, and encodes the fixed sets.
    pub fn open(
        cfg: &ExperimentConfig,
        sd: &StableDiffusion,
        objective: &Objective,
        run: &RunDir,
    ) -> Result<Self> {
        let d = &cfg.data;
        let all = open_set(&d.images, d.captions.as_ref(), "training")?;
        let (training, validation) = match &d.validation_images {
            Some(dir) => (
                all,
                open_set(dir, d.validation_captions.as_ref(), "validation")?,
            ),
            None => all.split(d.validation_split(), d.validation_seed)?,
        };
        if training.is_empty() {
            bail!(
                "{}: no training images left after the validation split",
                d.images.display()
            );
        }
        if let Some(spec) = d.bucket_spec() {
            write_buckets(run, &spec, &training)?;
        }
        let prior = match &d.prior_images {
            Some(dir) => Some(open_set(dir, d.prior_captions.as_ref(), "prior")?),
            None => None,
        };
        let n = objective.num_train_timesteps();
        let timesteps = fixed_timesteps(n, cfg.train.validation_timesteps.max(1));
        let opts = options::validation(cfg);
        let fixed = |set: Dataset, seed: u64| {
            FixedSet::build(sd, Arc::new(set), opts, timesteps.clone(), seed)
        };
        let validation = fixed(validation, d.validation_seed)?;
        let prior = match prior {
            Some(p) => fixed(p, d.validation_seed + 7)?,
            None => None,
        };
        Ok(Self {
            training: Arc::new(training),
            validation,
            prior,
            timesteps,
        })
    }

    /// The training stream from micro-batch `start` on.
    pub fn stream(
        &self,
        cfg: &ExperimentConfig,
        sd: &StableDiffusion,
        start: u64,
    ) -> Result<Box<dyn Source>> {
        let cache = if cfg.data.latent_cache {
            let opts = options::fixed_order(cfg);
            Some(LatentCache::build(sd, self.training.clone(), opts)?)
        } else {
            None
        };
        let opts = options::training(cfg);
        let source = TrainingSource::new(self.training.clone(), opts, start, cache)?;
        Ok(Box::new(source))
    }

    /// The validation and prior losses with the current weights (`None` without a validation
    /// set). With `fresh_text` the captions are embedded again with the current text encoder.
    pub fn validate(
        &self,
        sd: &StableDiffusion,
        objective: &Objective,
        batch: i64,
        fresh_text: bool,
    ) -> Result<Option<ValidationRecord>> {
        let Some(v) = &self.validation else {
            return Ok(None);
        };
        let (val_loss, val_t) = v.loss(sd, objective, batch, fresh_text)?;
        let (prior_loss, prior_t) = match &self.prior {
            Some(p) => {
                let (l, t) = p.loss(sd, objective, batch, fresh_text)?;
                (Some(l), t)
            }
            None => (None, Vec::new()),
        };
        Ok(Some(ValidationRecord {
            val_loss,
            val_t,
            prior_loss,
            prior_t,
        }))
    }
}

fn open_set(images: &Path, captions: Option<&PathBuf>, what: &str) -> Result<Dataset> {
    let (ds, report) = Dataset::open(images, captions.map(|p| p.as_path()))
        .with_context(|| format!("{what} set"))?;
    for issue in &report.issues {
        eprintln!(
            "warning: {what} set: skipped {}: {}",
            issue.path.display(),
            issue.reason
        );
    }
    Ok(ds)
}

/// `buckets.csv`: every aspect bucket in use and how many training images it holds, so a
/// researcher sees how the data was shaped.
fn write_buckets(run: &RunDir, spec: &BucketSpec, train: &Dataset) -> Result<()> {
    let plan = BucketPlan::new(spec, train.samples().iter().map(|s| (s.width, s.height)));
    let mut text = String::from("width,height,images\n");
    for (size, members) in plan.sizes.iter().zip(plan.members()) {
        if !members.is_empty() {
            text += &format!("{},{},{}\n", size.0, size.1, members.len());
        }
    }
    crate::fsutil::write_atomic(&run.buckets_csv(), text.as_bytes())
}
