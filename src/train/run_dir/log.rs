//! The training logs of a run folder, written as the loop goes: append-only CSV files whose
//! every row is flushed (a killed run loses at most the row being written; `csv.rs` skips an
//! unterminated last line), and errors name the file.
use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The header of `metrics.csv`.
/// `loss_scale` is the fp16 loss scale the step's backward pass used (empty without one);
/// `skipped` is 1 for a step whose scaled gradients overflowed, so it was not taken.
pub const METRICS_HEADER: &str =
    "step,epoch,loss,lr,grad_norm,images_per_s,elapsed_s,loss_scale,skipped";

/// An append-only CSV file (`file` is `None` for a run folder this process only reads: the
/// rows of a data-parallel rank other than 0 go nowhere).
struct CsvLog {
    file: Option<std::fs::File>,
    path: PathBuf,
}

impl CsvLog {
    /// Opens `path` for appending; a new or empty file gets `header` first.
    fn open(path: &Path, header: &str) -> Result<Self> {
        let fresh = std::fs::metadata(path).map_or(true, |m| m.len() == 0);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("{}: cannot open", path.display()))?;
        let mut log = Self {
            file: Some(file),
            path: path.to_path_buf(),
        };
        if fresh {
            log.row(header)?;
        }
        Ok(log)
    }

    /// A log whose rows are dropped.
    fn discard(path: &Path) -> Self {
        Self {
            file: None,
            path: path.to_path_buf(),
        }
    }

    fn row(&mut self, line: &str) -> Result<()> {
        let Some(file) = &mut self.file else {
            return Ok(());
        };
        file.write_all(format!("{line}\n").as_bytes())
            .and_then(|_| file.flush())
            .with_context(|| format!("{}: cannot write", self.path.display()))
    }
}

/// One optimisation step as `metrics.csv` records it.
#[derive(Debug, Clone, Copy)]
pub struct StepRecord {
    pub step: u64,
    pub epoch: u64,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    /// `None` for a step that was not taken (non-finite loss or gradient): written as 0.
    pub images_per_s: Option<f64>,
    pub elapsed_s: f64,
    /// The fp16 loss scale of the step (`None` without loss scaling).
    pub loss_scale: Option<f64>,
    /// The step was skipped: its scaled gradients overflowed (fp16 loss scaling).
    pub skipped: bool,
}

/// `metrics.csv`.
pub struct MetricsLog {
    log: CsvLog,
    /// The file has the `loss_scale,skipped` columns (not so in a run begun before them,
    /// which keeps its header when resumed).
    scaling_columns: bool,
}

impl MetricsLog {
    pub fn open(path: &Path) -> Result<Self> {
        let first = std::fs::read_to_string(path).unwrap_or_default();
        let header = first.lines().next().unwrap_or(METRICS_HEADER);
        let scaling_columns = header.trim_end().ends_with(",skipped");
        let log = CsvLog::open(path, METRICS_HEADER)?;
        Ok(Self {
            log,
            scaling_columns,
        })
    }

    pub fn row(&mut self, r: &StepRecord) -> Result<()> {
        let ips = r
            .images_per_s
            .map_or("0".to_string(), |v| format!("{v:.3}"));
        let mut row = format!(
            "{},{},{},{},{},{ips},{:.3}",
            r.step, r.epoch, r.loss, r.lr, r.grad_norm, r.elapsed_s
        );
        if self.scaling_columns {
            let scale = r.loss_scale.map_or(String::new(), |s| s.to_string());
            row.push_str(&format!(",{scale},{}", u8::from(r.skipped)));
        }
        self.log.row(&row)
    }
}

/// The losses of one validation: the mean over the fixed timesteps and the loss at each.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationRecord {
    pub val_loss: f64,
    pub val_t: Vec<f64>,
    /// `None` without a prior set.
    pub prior_loss: Option<f64>,
    pub prior_t: Vec<f64>,
}

/// `validation.csv`: `step,val_loss,prior_loss,val_t<T>...,prior_t<T>...`.
pub struct ValidationLog(CsvLog);

impl ValidationLog {
    /// Opens the log of a run validating at `timesteps`.
    pub fn open(path: &Path, timesteps: &[i64]) -> Result<Self> {
        let mut header = String::from("step,val_loss,prior_loss");
        for ts in timesteps {
            header.push_str(&format!(",val_t{ts}"));
        }
        for ts in timesteps {
            header.push_str(&format!(",prior_t{ts}"));
        }
        CsvLog::open(path, &header).map(Self)
    }

    pub fn row(&mut self, step: u64, r: &ValidationRecord) -> Result<()> {
        let mut row = format!(
            "{step},{},{}",
            r.val_loss,
            r.prior_loss.map(|x| x.to_string()).unwrap_or_default()
        );
        for x in &r.val_t {
            row.push_str(&format!(",{x}"));
        }
        for k in 0..r.val_t.len() {
            row.push_str(&format!(
                ",{}",
                r.prior_t.get(k).map(|x| x.to_string()).unwrap_or_default()
            ));
        }
        self.0.row(&row)
    }
}

/// Keeps the CSV rows whose first column (the step) is at most `max_step` (resume); a missing
/// file stays missing.
pub fn truncate(path: &Path, max_step: u64) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        let keep = i == 0
            || line
                .split(',')
                .next()
                .and_then(|s| s.parse::<u64>().ok())
                .is_some_and(|s| s <= max_step);
        if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    crate::fsutil::write_atomic(path, out.as_bytes())
}

/// Both logs of a run, opened for appending.
pub struct Logs {
    pub metrics: MetricsLog,
    pub validation: ValidationLog,
}

impl Logs {
    /// Opens `metrics.csv` and `validation.csv` of `run` (validating at `timesteps`); for a
    /// run folder this process only reads ([`super::RunDir::reader`]), logs that write nothing.
    pub fn open(run: &super::RunDir, timesteps: &[i64]) -> Result<Self> {
        if !run.writes() {
            return Ok(Self {
                metrics: MetricsLog {
                    log: CsvLog::discard(&run.metrics_csv()),
                    scaling_columns: false,
                },
                validation: ValidationLog(CsvLog::discard(&run.validation_csv())),
            });
        }
        Ok(Self {
            metrics: MetricsLog::open(&run.metrics_csv())?,
            validation: ValidationLog::open(&run.validation_csv(), timesteps)?,
        })
    }
}
