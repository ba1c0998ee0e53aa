//! Offline analysis of run folders and of experiment (sweep) folders.

use crate::train::health::{num, replay, Analysis, Detector, DetectorConfig, Label};
use crate::train::run_dir::{read_metrics, MetricsRow, RunDir, RunStatus, Validation};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// File names inside a run folder (owned by [`RunDir`]).
pub use crate::train::run_dir::{
    ANALYSIS_JSON, CONFIG_TOML, METRICS_CSV, STATUS_JSON, VALIDATION_CSV,
};
/// The summary of an experiment folder.
pub const SUMMARY_CSV: &str = "summary.csv";

/// Replays a run's metrics and validations through a fresh [`Detector`], in step order (a
/// validation logged at step `s` is taken to follow training step `s`).
pub fn analyze_data(
    metrics: &[MetricsRow],
    validation: Option<&Validation>,
    cfg: &DetectorConfig,
) -> Analysis {
    let mut det = Detector::new(cfg.clone());
    replay(&mut det, metrics, validation);
    det.analysis()
}

/// Reads the validation file of a run folder; `None` when the run has none (no validation set
/// configured, or it stopped before the first validation).
pub fn read_run_validation(run_dir: &Path) -> Result<Option<Validation>> {
    RunDir::new(run_dir).read_validation()
}

/// The detector config a run was trained with: its `config.toml`'s `[monitor]` table over
/// `fallback`, with the smoothing window resolved for the run's planned length (`train.steps`,
/// else its last logged step), so the offline verdict is the one the run saw online.
pub fn run_detector_config(
    run_dir: &Path,
    metrics: &[MetricsRow],
    fallback: &DetectorConfig,
) -> Result<DetectorConfig> {
    let path = run_dir.join(CONFIG_TOML);
    let table: Option<toml::Table> = if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Some(toml::from_str(&text).with_context(|| format!("{}: invalid TOML", path.display()))?)
    } else {
        None
    };
    let mut cfg = match table.as_ref().and_then(|t| t.get("monitor")) {
        Some(m) => DetectorConfig::deserialize(m.clone())
            .map_err(|e| anyhow::anyhow!("{}: [monitor]: {}", path.display(), e.message()))?,
        None => fallback.clone(),
    };
    let planned = table
        .as_ref()
        .and_then(|t| t.get("train"))
        .and_then(|t| t.get("steps"))
        .and_then(|v| v.as_integer())
        .map(|v| v.max(0) as u64)
        .or_else(|| metrics.last().map(|m| m.step))
        .unwrap_or(0);
    cfg.smoothing_window = crate::train::health::smooth::window(cfg.smoothing_window, planned);
    Ok(cfg)
}

/// Analyses one run folder (`metrics.csv` required, `validation.csv` used when present) and writes
/// the result to `analysis.json` in that folder. The thresholds are the run's own (see
/// [`run_detector_config`]), `cfg` where it has none.
pub fn analyze_run(run_dir: &Path, cfg: &DetectorConfig) -> Result<Analysis> {
    cfg.validate()?;
    let metrics = read_metrics(&run_dir.join(METRICS_CSV))?;
    let validation = read_run_validation(run_dir)?;
    let cfg = run_detector_config(run_dir, &metrics, cfg)?;
    let analysis = analyze_data(&metrics, validation.as_ref(), &cfg);
    let out = run_dir.join(ANALYSIS_JSON);
    let json = serde_json::to_string_pretty(&analysis)?;
    crate::fsutil::write_atomic(&out, (json + "\n").as_bytes())?;
    Ok(analysis)
}

/// The run folders of `dir`: `dir` itself when it holds `metrics.csv`, else its subfolders that
/// do, sorted by name.
pub fn find_runs(dir: &Path) -> Result<Vec<PathBuf>> {
    if is_run(dir) {
        return Ok(vec![dir.to_path_buf()]);
    }
    let rd = std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let mut runs = Vec::new();
    for entry in rd {
        let path = entry
            .with_context(|| format!("cannot read {}", dir.display()))?
            .path();
        if is_run(&path) {
            runs.push(path);
        }
    }
    if runs.is_empty() {
        bail!(
            "{}: neither a run folder nor an experiment folder (no {METRICS_CSV} in it or in its subfolders)",
            dir.display()
        );
    }
    runs.sort();
    Ok(runs)
}

/// Whether `dir` is a run folder: it has the training log `metrics.csv` and is not a
/// `studioize compare` folder (whose `compare.csv` sits beside `evaluate`'s `metrics.csv` when
/// the metrics are measured there).
fn is_run(dir: &Path) -> bool {
    dir.join(METRICS_CSV).is_file() && !dir.join("compare.csv").is_file()
}

/// The run's id: its folder name (`lr=3e-06` for a sweep point).
pub fn run_id(run_dir: &Path) -> String {
    run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| run_dir.display().to_string())
}

/// Reads `status.json`; `Ok(None)` when the file does not exist.
pub fn read_status(run_dir: &Path) -> Result<Option<RunStatus>> {
    RunDir::new(run_dir).read_status()
}

/// The run's learning rate: `[train] learning_rate` of its `config.toml`, else an `lr=<value>`
/// (or `learning_rate=<value>`) part of its id.
pub fn run_learning_rate(run_dir: &Path) -> Result<Option<f64>> {
    let path = run_dir.join(CONFIG_TOML);
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let value: toml::Table =
            toml::from_str(&text).with_context(|| format!("{}: invalid TOML", path.display()))?;
        let lr = value.get("train").and_then(|t| t.get("learning_rate"));
        match lr {
            Some(toml::Value::Float(f)) => return Ok(Some(*f)),
            Some(toml::Value::Integer(i)) => return Ok(Some(*i as f64)),
            Some(toml::Value::String(s)) => {
                let f = s.trim().parse::<f64>().with_context(|| {
                    format!(
                        "{}: [train] learning_rate {s:?} is not a number",
                        path.display()
                    )
                })?;
                return Ok(Some(f));
            }
            Some(other) => bail!(
                "{}: [train] learning_rate must be a number, got {other}",
                path.display()
            ),
            None => {}
        }
    }
    Ok(lr_from_id(&run_id(run_dir)))
}

/// Parses `lr=<value>` / `learning_rate=<value>` out of a sweep point id such as
/// `lr=3e-06` or `lr=1e-5,batch=4`.
pub fn lr_from_id(id: &str) -> Option<f64> {
    for key in ["learning_rate=", "lr="] {
        let mut rest = id;
        while let Some(i) = rest.find(key) {
            let starts_word = !rest[..i].ends_with(|c: char| c.is_ascii_alphanumeric());
            let tail = &rest[i + key.len()..];
            let end = tail
                .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+')))
                .unwrap_or(tail.len());
            if starts_word {
                if let Ok(v) = tail[..end].parse::<f64>() {
                    return Some(v);
                }
            }
            rest = tail;
        }
    }
    None
}

/// One run of an experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub id: String,
    pub dir: PathBuf,
    pub learning_rate: Option<f64>,
    pub status: Option<RunStatus>,
    pub analysis: Analysis,
}

impl RunSummary {
    /// True when the run may be recommended: it has a best validation loss and is neither
    /// diverged nor deconverged.
    pub fn eligible(&self) -> bool {
        self.analysis.best_val_loss.is_some()
            && !matches!(self.analysis.label, Label::Diverged | Label::Deconverged)
    }
}

/// The analysis of every run of an experiment and the recommended one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentSummary {
    pub dir: PathBuf,
    /// Sorted by learning rate (runs without one last, by id).
    pub runs: Vec<RunSummary>,
    /// Index into `runs` of the recommended run: the lowest best validation loss among the
    /// runs that are neither diverged nor deconverged.
    pub recommended: Option<usize>,
}

impl ExperimentSummary {
    pub fn recommended_run(&self) -> Option<&RunSummary> {
        self.recommended.map(|i| &self.runs[i])
    }

    /// The learning rate of the recommended run.
    pub fn recommended_lr(&self) -> Option<f64> {
        self.recommended_run().and_then(|r| r.learning_rate)
    }

    /// A plain-text table for the terminal, one line per run, with the recommendation below.
    pub fn table(&self) -> String {
        let rows = self.table_rows();
        let widths = column_widths(&TABLE_HEADER, &rows);
        let mut out = String::new();
        push_table_line(&mut out, &TABLE_HEADER, widths);
        let total: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
        out.push_str(&"-".repeat(total));
        out.push('\n');
        for row in &rows {
            let cells: Vec<&str> = row.iter().map(String::as_str).collect();
            push_table_line(&mut out, &cells, widths);
        }
        self.push_events(&mut out);
        self.push_recommendation(&mut out);
        out
    }

    /// The table's cells, one row per run (the recommended run's id marked with ` *`).
    fn table_rows(&self) -> Vec<[String; 7]> {
        let mut rows: Vec<[String; 7]> = Vec::new();
        for (i, r) in self.runs.iter().enumerate() {
            let mark = if Some(i) == self.recommended {
                " *"
            } else {
                ""
            };
            rows.push([
                format!("{}{mark}", r.id),
                r.learning_rate.map_or("-".into(), |lr| format!("{lr:e}")),
                r.analysis.label.to_string(),
                opt_u64(r.analysis.best_step),
                r.analysis.best_val_loss.map_or("-".into(), num),
                opt_u64(r.analysis.last_step),
                r.status.as_ref().map_or("-".into(), RunStatus::short),
            ]);
        }
        rows
    }

    /// Appends one line per detector event of every run, in run order.
    fn push_events(&self, out: &mut String) {
        for r in &self.runs {
            for e in &r.analysis.events {
                let _ = writeln!(
                    out,
                    "{}: {} at step {}: {}",
                    r.id, e.label, e.step, e.reason
                );
            }
        }
    }

    /// Appends the recommendation line (or the reason there is none).
    fn push_recommendation(&self, out: &mut String) {
        match self.recommended_run() {
            Some(r) => {
                let lr = r
                    .learning_rate
                    .map_or("unknown".into(), |lr| format!("{lr:e}"));
                let _ = writeln!(
                    out,
                    "recommended learning rate: {lr} (run {}, best val loss {} at step {})",
                    r.id,
                    r.analysis.best_val_loss.map_or("-".into(), num),
                    opt_u64(r.analysis.best_step)
                );
            }
            None => out.push_str(
                "no recommendation: every run diverged, deconverged or has no validation\n",
            ),
        }
    }

    /// Writes the summary as CSV
    /// (`id,learning_rate,label,best_step,best_val_loss,last_step,status,recommended,events`).
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record([
            "id",
            "learning_rate",
            "label",
            "best_step",
            "best_val_loss",
            "last_step",
            "status",
            "recommended",
            "events",
        ])?;
        for (i, r) in self.runs.iter().enumerate() {
            let events: Vec<String> = r
                .analysis
                .events
                .iter()
                .map(|e| format!("{}@{}", e.label, e.step))
                .collect();
            w.write_record([
                r.id.clone(),
                r.learning_rate
                    .map_or(String::new(), |lr| format!("{lr:e}")),
                r.analysis.label.to_string(),
                r.analysis
                    .best_step
                    .map_or(String::new(), |s| s.to_string()),
                r.analysis
                    .best_val_loss
                    .map_or(String::new(), |v| v.to_string()),
                r.analysis
                    .last_step
                    .map_or(String::new(), |s| s.to_string()),
                r.status.as_ref().map_or(String::new(), RunStatus::short),
                (Some(i) == self.recommended).to_string(),
                events.join(" "),
            ])?;
        }
        let bytes = w
            .into_inner()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        crate::fsutil::write_atomic(path, &bytes)
    }
}

/// The column titles of [`ExperimentSummary::table`].
const TABLE_HEADER: [&str; 7] = [
    "run",
    "lr",
    "label",
    "best step",
    "best val loss",
    "last step",
    "status",
];

/// Each column's width: its widest cell (header included), in chars.
fn column_widths(header: &[&str; 7], rows: &[[String; 7]]) -> [usize; 7] {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    widths
}

/// Appends one table line: cells left-aligned to `widths`, two spaces apart, right-trimmed.
fn push_table_line(out: &mut String, cells: &[&str], widths: [usize; 7]) {
    let mut l = String::new();
    for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
        if i > 0 {
            l.push_str("  ");
        }
        let _ = write!(l, "{c:<w$}");
    }
    out.push_str(l.trim_end());
    out.push('\n');
}

fn opt_u64(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

/// Analyses every run of an experiment folder (or a single run folder), writing each run's
/// `analysis.json` and the experiment's `summary.csv` into `dir`.
pub fn analyze_experiment(dir: &Path, cfg: &DetectorConfig) -> Result<ExperimentSummary> {
    summarize_experiment(dir, cfg, false)
}

/// As [`analyze_experiment`], but a run's existing `analysis.json` is read instead of being
/// recomputed; runs without one are analysed (and get one).
pub fn load_experiment(dir: &Path, cfg: &DetectorConfig) -> Result<ExperimentSummary> {
    summarize_experiment(dir, cfg, true)
}

/// A run's `analysis.json`, if it has one.
pub fn read_analysis(run_dir: &Path) -> Result<Option<Analysis>> {
    let path = run_dir.join(ANALYSIS_JSON);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let a = serde_json::from_str(&text)
        .with_context(|| format!("{}: invalid analysis", path.display()))?;
    Ok(Some(a))
}

fn summarize_experiment(
    dir: &Path,
    cfg: &DetectorConfig,
    reuse: bool,
) -> Result<ExperimentSummary> {
    let mut runs = Vec::new();
    for run_dir in find_runs(dir)? {
        let id = run_id(&run_dir);
        // analysis.json is derived data: a damaged one (an older crash) is made again.
        let existing = if reuse {
            read_analysis(&run_dir).unwrap_or_else(|e| {
                eprintln!("warning: run {id}: {e:#}; analysing it again");
                None
            })
        } else {
            None
        };
        let analysis = match existing {
            Some(a) => a,
            None => analyze_run(&run_dir, cfg).with_context(|| format!("run {id}"))?,
        };
        runs.push(RunSummary {
            learning_rate: run_learning_rate(&run_dir).with_context(|| format!("run {id}"))?,
            status: read_status(&run_dir).with_context(|| format!("run {id}"))?,
            id,
            dir: run_dir,
            analysis,
        });
    }
    runs.sort_by(|a, b| match (a.learning_rate, b.learning_rate) {
        (Some(x), Some(y)) => x.total_cmp(&y).then_with(|| a.id.cmp(&b.id)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.id.cmp(&b.id),
    });
    let recommended = runs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.eligible())
        .min_by(|(_, a), (_, b)| {
            let (a, b) = (a.analysis.best_val_loss, b.analysis.best_val_loss);
            a.unwrap_or(f64::INFINITY)
                .total_cmp(&b.unwrap_or(f64::INFINITY))
        })
        .map(|(i, _)| i);
    let summary = ExperimentSummary {
        dir: dir.to_path_buf(),
        runs,
        recommended,
    };
    summary.write_csv(&dir.join(SUMMARY_CSV))?;
    Ok(summary)
}
