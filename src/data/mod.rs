//! The training data pipeline: captioned image folders ([`dataset`], [`captions`]), the
//! per-sample preprocessing of diffusers' `train_text_to_image.py` ([`transform`]), a
//! deterministic, resumable, prefetching batch loader ([`loader`]), optionally grouping images
//! into aspect-ratio buckets ([`buckets`]), and a generator of a small
//! synthetic test dataset ([`shapes`]).
//!
//! Every random choice (epoch order, crops, flips, caption dropout, the validation split) comes
//! from [`rng::SplitMix64`] streams seeded by [`rng::derive_seed`] from (seed, epoch, index, ...),
//! so a run resumed at any step sees exactly the samples an uninterrupted run would.
pub mod buckets;
pub mod captions;
pub mod catalogue;
pub mod dataset;
pub mod loader;
pub mod rng;
pub mod shapes;
pub mod transform;

pub use dataset::{Dataset, Issue, IssueKind, Report, Sample};
pub use loader::{Batch, Batches, LoaderOptions};
pub use transform::TransformOptions;
