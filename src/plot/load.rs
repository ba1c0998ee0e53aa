//! Run loading: the CSVs, the detector's verdict and the smoothing window of each run folder,
//! and the runs of an experiment in plotting order.

use crate::monitor::data::{read_metrics, MetricsRow, Validation};
use crate::monitor::detector::{Analysis, DetectorConfig};
use crate::monitor::run::{
    find_runs, read_analysis, read_run_validation, run_detector_config, run_id, run_learning_rate,
    METRICS_CSV,
};
use anyhow::Result;
use std::path::{Path, PathBuf};

/// Everything plotted for one run.
#[derive(Debug, Clone)]
pub struct RunData {
    /// Legend label: the sweep point id or the folder name.
    pub label: String,
    pub dir: PathBuf,
    pub metrics: Vec<MetricsRow>,
    pub validation: Option<Validation>,
    /// The detector's verdict (from `analysis.json`), for the event and best-checkpoint markers.
    pub analysis: Option<Analysis>,
    /// Window (steps) of the smoothed loss and gradient-norm curves: the detector's.
    pub smoothing_window: u64,
}

impl RunData {
    /// Reads a run folder: `metrics.csv` (required), `validation.csv` and `analysis.json` (when
    /// present; run [`crate::monitor::analyze_run`] first to get the markers).
    pub fn load(run_dir: &Path) -> Result<RunData> {
        let metrics = read_metrics(&run_dir.join(METRICS_CSV))?;
        let validation = read_run_validation(run_dir)?;
        let analysis = read_analysis(run_dir)?;
        let smoothing_window =
            run_detector_config(run_dir, &metrics, &DetectorConfig::default())?.smoothing_window;
        Ok(RunData {
            label: run_id(run_dir),
            dir: run_dir.to_path_buf(),
            metrics,
            validation,
            analysis,
            smoothing_window,
        })
    }
}

/// Loads every run of an experiment folder (or the single run of a run folder), ordered by
/// learning rate when every run has one, else by name.
pub fn load_runs(dir: &Path) -> Result<Vec<RunData>> {
    let mut runs = Vec::new();
    let mut lrs = Vec::new();
    for d in find_runs(dir)? {
        lrs.push(run_learning_rate(&d).ok().flatten());
        runs.push(RunData::load(&d)?);
    }
    if lrs.iter().all(Option::is_some) {
        let mut pairs: Vec<(f64, RunData)> = lrs.into_iter().flatten().zip(runs).collect();
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        runs = pairs.into_iter().map(|p| p.1).collect();
    }
    Ok(runs)
}
