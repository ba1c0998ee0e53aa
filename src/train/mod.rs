//! Training: the experiment config, the objective, schedules, EMA, and the training loop.
pub mod config;
pub mod ema;
pub mod lr;
pub mod objective;

pub use config::{ExperimentConfig, SweepPoint};
