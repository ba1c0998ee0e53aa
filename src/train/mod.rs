//! Training: the experiment config (the training loop lands here later).
pub mod config;

pub use config::{ExperimentConfig, SweepPoint};
