//! Run health monitoring: the deconvergence / divergence / overfitting / plateau detector, used
//! online by the training loop and offline over the CSV files of run and experiment folders.
//!
//! - [`detector`]: [`Detector`], its [`DetectorConfig`] (the `[monitor]` TOML table), [`Label`],
//!   [`Event`] and [`Analysis`];
//! - [`data`]: readers for `metrics.csv` and `validation.csv`;
//! - [`run`]: [`analyze_run`] (writes `analysis.json`) and [`analyze_experiment`] (writes
//!   `summary.csv`, recommends a learning rate).
pub mod data;
pub mod detector;
pub mod run;
pub mod smooth;

pub use data::{read_metrics, read_validation, MetricsRow, Validation, ValidationRow};
pub use detector::{Analysis, Detector, DetectorConfig, Event, Label};
pub use run::{
    analyze_data, analyze_experiment, analyze_run, find_runs, load_experiment, lr_from_id,
    read_analysis, read_status, replay, run_detector_config, run_id, run_learning_rate,
    ExperimentSummary, RunStatus, RunSummary,
};
