//! Run health monitoring, offline: analysis of run and experiment folders from the CSV files
//! that `train` wrote, with each run's own `[monitor]` thresholds, and the recommended
//! learning rate of a sweep.
//!
//! The detector itself, the CSV readers and the run folder's file names belong to the training
//! stage (`train::health`, `train::run_dir`): training comes before monitoring and uses them
//! online. They are re-exported here under their old paths:
//!
//! - [`detector`] (`train::health`): [`Detector`], its [`DetectorConfig`] (the `[monitor]` TOML
//!   table), [`Label`], [`Event`] and [`Analysis`]; [`smooth`], the debiased moving average;
//! - [`data`] (`train::run_dir::csv`): readers for `metrics.csv` and `validation.csv`;
//! - [`run`]: [`analyze_run`] (writes `analysis.json`) and [`analyze_experiment`] (writes
//!   `summary.csv`, recommends a learning rate).
pub mod run;

pub use crate::train::health as detector;
pub use crate::train::health::smooth;
pub use crate::train::run_dir::csv as data;

pub use crate::train::health::{replay, Analysis, Detector, DetectorConfig, Event, Label};
pub use crate::train::run_dir::{
    read_metrics, read_validation, MetricsRow, RunStatus, Validation, ValidationRow,
};
pub use run::{
    analyze_data, analyze_experiment, analyze_run, find_runs, load_experiment, lr_from_id,
    read_analysis, read_status, run_detector_config, run_id, run_learning_rate, ExperimentSummary,
    RunSummary,
};
