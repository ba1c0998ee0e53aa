//! The run folder of `studioize train`: every file name in it, in one place, so no other module
//! writes a literal path.
//!
//! ```text
//! RUN/
//!   .lock                 one train process at a time (fsutil::Lock)
//!   config.toml           the resolved experiment config
//!   status.json           running / finished / stopped / failed, with the reason and step
//!   metrics.csv           one row per optimisation step (log.rs writes, csv.rs reads)
//!   validation.csv        deterministic validation and prior losses
//!   buckets.csv           aspect buckets in use (with data.aspect_buckets)
//!   analysis.json         the detector's verdict (written by `analyze`)
//!   checkpoints/step-N/   one checkpoint (its inside: train::checkpoint)
//!   checkpoints/.tmp-step-N/  a checkpoint being written
//!   samples/step-N/       fixed-seed samples of a checkpoint
//! ```
pub mod csv;
pub mod log;

pub use csv::{read_metrics, read_validation, MetricsRow, Validation, ValidationRow};
pub use log::{Logs, MetricsLog, StepRecord, ValidationLog, ValidationRecord};

use crate::fsutil::Lock;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The lock file of a run folder.
pub const LOCK_FILE: &str = ".lock";
pub const CONFIG_TOML: &str = "config.toml";
pub const STATUS_JSON: &str = "status.json";
pub const METRICS_CSV: &str = "metrics.csv";
pub const VALIDATION_CSV: &str = "validation.csv";
pub const BUCKETS_CSV: &str = "buckets.csv";
pub const ANALYSIS_JSON: &str = "analysis.json";
pub const CHECKPOINTS_DIR: &str = "checkpoints";
pub const SAMPLES_DIR: &str = "samples";
/// The name prefix of a step folder under `checkpoints/` and `samples/`.
const STEP_PREFIX: &str = "step-";
/// The name prefix of a checkpoint being written.
const PARTIAL_PREFIX: &str = ".tmp-step-";

/// A run folder (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn lock_file(&self) -> PathBuf {
        self.root.join(LOCK_FILE)
    }
    pub fn config_toml(&self) -> PathBuf {
        self.root.join(CONFIG_TOML)
    }
    pub fn status_json(&self) -> PathBuf {
        self.root.join(STATUS_JSON)
    }
    pub fn metrics_csv(&self) -> PathBuf {
        self.root.join(METRICS_CSV)
    }
    pub fn validation_csv(&self) -> PathBuf {
        self.root.join(VALIDATION_CSV)
    }
    pub fn buckets_csv(&self) -> PathBuf {
        self.root.join(BUCKETS_CSV)
    }
    pub fn analysis_json(&self) -> PathBuf {
        self.root.join(ANALYSIS_JSON)
    }
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join(CHECKPOINTS_DIR)
    }
    /// `checkpoints/step-N`.
    pub fn checkpoint(&self, step: u64) -> PathBuf {
        self.checkpoints().join(format!("{STEP_PREFIX}{step}"))
    }
    /// `checkpoints/.tmp-step-N`: where checkpoint N is written before it is renamed.
    pub fn partial_checkpoint(&self, step: u64) -> PathBuf {
        self.checkpoints().join(format!("{PARTIAL_PREFIX}{step}"))
    }
    /// `samples/step-N`.
    pub fn samples(&self, step: u64) -> PathBuf {
        self.root
            .join(SAMPLES_DIR)
            .join(format!("{STEP_PREFIX}{step}"))
    }

    /// The step of a `checkpoints/` entry named `step-N`.
    pub fn checkpoint_step(name: &str) -> Option<u64> {
        name.strip_prefix(STEP_PREFIX)?.parse().ok()
    }
    /// True for a `checkpoints/` entry that is a checkpoint being written.
    pub fn is_partial_checkpoint(name: &str) -> bool {
        name.starts_with(PARTIAL_PREFIX)
    }

    /// Creates the folder (and its parents).
    pub fn create(&self) -> Result<()> {
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("{}: cannot create the run folder", self.root.display()))
    }

    /// Locks the folder for this process until the lock is dropped.
    pub fn lock(&self) -> Result<Lock> {
        Lock::acquire(
            &self.lock_file(),
            &format!("run folder {}", self.root.display()),
        )
    }

    /// True when the folder already holds (the start of) a run.
    pub fn holds_run(&self) -> bool {
        self.metrics_csv().exists()
    }

    /// Removes the training logs (a run starting from step 0).
    pub fn remove_logs(&self) {
        for f in [self.metrics_csv(), self.validation_csv()] {
            let _ = std::fs::remove_file(f);
        }
    }

    /// Keeps only the rows of the training logs up to `step` (a run resumed there).
    pub fn truncate_logs(&self, step: u64) -> Result<()> {
        log::truncate(&self.metrics_csv(), step)?;
        log::truncate(&self.validation_csv(), step)
    }

    /// Writes `status.json` atomically; if that fails (a full disk has no room for the
    /// temporary file), overwrites it in place, which reuses the old file's space.
    pub fn write_status(&self, state: &str, reason: &str, step: u64) -> Result<()> {
        let v = serde_json::json!({ "state": state, "reason": reason, "step": step });
        let text = serde_json::to_string_pretty(&v)? + "\n";
        let path = self.status_json();
        crate::fsutil::write_atomic(&path, text.as_bytes())
            .or_else(|e| std::fs::write(&path, &text).map_err(|_| e))
    }

    /// Reads `status.json`; `Ok(None)` when the file does not exist.
    pub fn read_status(&self) -> Result<Option<RunStatus>> {
        let path = self.status_json();
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let st =
            serde_json::from_str(&text).with_context(|| format!("{}: invalid", path.display()))?;
        Ok(Some(st))
    }

    /// Reads `validation.csv`; `None` when the run has none (no validation set configured, or
    /// it stopped before the first validation).
    pub fn read_validation(&self) -> Result<Option<Validation>> {
        let path = self.validation_csv();
        if path.exists() {
            Ok(Some(read_validation(&path)?))
        } else {
            Ok(None)
        }
    }
}

/// `status.json` of a run folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStatus {
    pub state: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub step: Option<u64>,
}

impl RunStatus {
    /// The state for tables: `finished`, `failed`, `running`, or for a run the detector (or a
    /// non-finite loss) ended, `stopped: diverged at step 12` (the label and step of its reason).
    pub fn short(&self) -> String {
        match (self.state.as_str(), self.reason.as_deref()) {
            ("stopped", Some(r)) if !r.is_empty() => {
                format!("stopped: {}", r.split(':').next().unwrap_or(r).trim())
            }
            (state, _) => state.to_string(),
        }
    }

    /// True for a run that ended by itself (finished, or stopped by the detector).
    pub fn is_done(&self) -> bool {
        self.state == "finished" || self.state == "stopped"
    }
}
