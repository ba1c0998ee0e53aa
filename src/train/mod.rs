//! Training: the experiment config, the objective, schedules, EMA, and the training loop.
pub mod checkpoint;
pub mod config;
pub mod ema;
pub mod lr;
pub mod objective;
pub mod optim;
mod resume;
pub mod runner;
pub mod samples;
pub mod validation;

pub use config::{ExperimentConfig, SweepPoint};
