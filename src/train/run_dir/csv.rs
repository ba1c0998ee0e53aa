//! Readers for the CSV files that `studioize train` writes into a run folder.
//!
//! Both readers look columns up by name, so extra columns are ignored. Values may be `NaN`,
//! `inf` or `-inf` (a diverged run writes them); an empty field is "no value". Errors name the
//! file, the line and the column. A last line without its newline is taken to be still being
//! written by a live run and is skipped. When the step column goes backwards (a run resumed from
//! a checkpoint appends from that checkpoint's step), the rows of the abandoned stretch are
//! dropped, so the result is in increasing step order.

use anyhow::{bail, Context, Result};
use std::path::Path;

/// One row of `metrics.csv` (one optimisation step).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsRow {
    pub step: u64,
    pub epoch: Option<f64>,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub images_per_s: Option<f64>,
    pub elapsed_s: Option<f64>,
    /// The fp16 loss scale (`loss_scale`, optional column).
    pub loss_scale: Option<f64>,
    /// A step skipped by fp16 loss scaling (`skipped` = 1, optional column): not an update,
    /// and no divergence.
    pub skipped: bool,
}

/// One row of `validation.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationRow {
    pub step: u64,
    pub val_loss: f64,
    /// `None` when the run has no prior (regularisation) set.
    pub prior_loss: Option<f64>,
    /// Validation loss at each of [`Validation::timesteps`], in that order.
    pub val_t: Vec<Option<f64>>,
    /// Prior loss at each of [`Validation::timesteps`], in that order.
    pub prior_t: Vec<Option<f64>>,
}

/// The contents of `validation.csv`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Validation {
    /// The fixed diffusion timesteps of the `val_t<T>` / `prior_t<T>` columns.
    pub timesteps: Vec<u32>,
    pub rows: Vec<ValidationRow>,
}

impl Validation {
    /// True when at least one row has a prior loss.
    pub fn has_prior(&self) -> bool {
        self.rows.iter().any(|r| r.prior_loss.is_some())
    }
}

/// A parsed CSV: header plus records with their 1-based line numbers.
struct Table {
    header: Vec<String>,
    records: Vec<(u64, csv::StringRecord)>,
}

impl Table {
    fn read(path: &Path) -> Result<Table> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        // A live run may be in the middle of appending a line: ignore an unterminated tail.
        let complete = match text.rfind('\n') {
            Some(i) if i + 1 < text.len() => &text[..=i],
            Some(_) => &text[..],
            None => "",
        };
        if complete.trim().is_empty() {
            bail!("{}: line 1: file is empty (no header)", path.display());
        }
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .trim(csv::Trim::All)
            .from_reader(complete.as_bytes());
        let header: Vec<String> = rdr
            .headers()
            .with_context(|| format!("{}: line 1: cannot read the header", path.display()))?
            .iter()
            .map(str::to_string)
            .collect();
        let mut records = Vec::new();
        for rec in rdr.records() {
            let rec = rec.map_err(|e| {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                anyhow::anyhow!("{}: line {line}: {e}", path.display())
            })?;
            let line = rec.position().map(|p| p.line()).unwrap_or(0);
            if rec.iter().all(str::is_empty) {
                continue;
            }
            records.push((line, rec));
        }
        Ok(Table { header, records })
    }

    fn column(&self, path: &Path, name: &str) -> Result<usize> {
        self.header.iter().position(|h| h == name).with_context(|| {
            format!(
                "{}: line 1: missing column `{name}` (header: {})",
                path.display(),
                self.header.join(",")
            )
        })
    }

    fn optional_column(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h == name)
    }
}

fn parse_f64(path: &Path, line: u64, col: &str, field: &str) -> Result<Option<f64>> {
    if field.is_empty() {
        return Ok(None);
    }
    field.parse::<f64>().map(Some).map_err(|_| {
        anyhow::anyhow!(
            "{}: line {line}: column `{col}`: cannot parse {field:?} as a number",
            path.display()
        )
    })
}

fn required_f64(path: &Path, line: u64, col: &str, field: &str) -> Result<f64> {
    parse_f64(path, line, col, field)?
        .with_context(|| format!("{}: line {line}: column `{col}` is empty", path.display()))
}

fn parse_step(path: &Path, line: u64, field: &str) -> Result<u64> {
    field.parse::<u64>().map_err(|_| {
        anyhow::anyhow!(
            "{}: line {line}: column `step`: cannot parse {field:?} as a step number",
            path.display()
        )
    })
}

/// Keeps rows in increasing step order: a row whose step is not after the previous one replaces
/// every earlier row from its step on (a resumed run re-logging from its checkpoint).
fn drop_abandoned<T>(rows: Vec<T>, step: impl Fn(&T) -> u64) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(rows.len());
    for r in rows {
        let s = step(&r);
        while out.last().is_some_and(|last| step(last) >= s) {
            out.pop();
        }
        out.push(r);
    }
    out
}

/// Reads `metrics.csv` (header `step,epoch,loss,lr,grad_norm,images_per_s,elapsed_s`, then
/// `loss_scale,skipped` in runs written since fp16 loss scaling).
/// `step`, `loss`, `lr` and `grad_norm` are required; the other columns are optional.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricsRow>> {
    let t = Table::read(path)?;
    let c_step = t.column(path, "step")?;
    let c_loss = t.column(path, "loss")?;
    let c_lr = t.column(path, "lr")?;
    let c_gn = t.column(path, "grad_norm")?;
    let c_epoch = t.optional_column("epoch");
    let c_ips = t.optional_column("images_per_s");
    let c_el = t.optional_column("elapsed_s");
    let c_scale = t.optional_column("loss_scale");
    let c_skipped = t.optional_column("skipped");
    let mut rows = Vec::with_capacity(t.records.len());
    for (line, rec) in &t.records {
        let line = *line;
        let opt = |c: Option<usize>, name: &str| -> Result<Option<f64>> {
            match c {
                Some(c) => parse_f64(path, line, name, &rec[c]),
                None => Ok(None),
            }
        };
        rows.push(MetricsRow {
            step: parse_step(path, line, &rec[c_step])?,
            epoch: opt(c_epoch, "epoch")?,
            loss: required_f64(path, line, "loss", &rec[c_loss])?,
            lr: required_f64(path, line, "lr", &rec[c_lr])?,
            grad_norm: required_f64(path, line, "grad_norm", &rec[c_gn])?,
            images_per_s: opt(c_ips, "images_per_s")?,
            elapsed_s: opt(c_el, "elapsed_s")?,
            loss_scale: opt(c_scale, "loss_scale")?,
            skipped: opt(c_skipped, "skipped")?.is_some_and(|v| v != 0.0),
        });
    }
    Ok(drop_abandoned(rows, |r| r.step))
}

/// Reads `validation.csv` (header `step,val_loss,prior_loss,val_t<T>...,prior_t<T>...`).
/// An empty `prior_loss` means the run has no prior set.
pub fn read_validation(path: &Path) -> Result<Validation> {
    let t = Table::read(path)?;
    let c_step = t.column(path, "step")?;
    let c_val = t.column(path, "val_loss")?;
    let c_prior = t.column(path, "prior_loss")?;
    let mut timesteps = Vec::new();
    for h in &t.header {
        if let Some(ts) = h.strip_prefix("val_t") {
            let ts: u32 = ts.parse().map_err(|_| {
                anyhow::anyhow!(
                    "{}: line 1: column `{h}`: expected `val_t<timestep>`",
                    path.display()
                )
            })?;
            timesteps.push(ts);
        }
    }
    let val_cols: Vec<usize> = timesteps
        .iter()
        .map(|ts| t.column(path, &format!("val_t{ts}")))
        .collect::<Result<_>>()?;
    let prior_cols: Vec<Option<usize>> = timesteps
        .iter()
        .map(|ts| t.optional_column(&format!("prior_t{ts}")))
        .collect();
    let mut rows = Vec::with_capacity(t.records.len());
    for (line, rec) in &t.records {
        let line = *line;
        let mut val_t = Vec::with_capacity(timesteps.len());
        for (ts, &c) in timesteps.iter().zip(&val_cols) {
            val_t.push(parse_f64(path, line, &format!("val_t{ts}"), &rec[c])?);
        }
        let mut prior_t = Vec::with_capacity(timesteps.len());
        for (ts, c) in timesteps.iter().zip(&prior_cols) {
            prior_t.push(match c {
                Some(c) => parse_f64(path, line, &format!("prior_t{ts}"), &rec[*c])?,
                None => None,
            });
        }
        rows.push(ValidationRow {
            step: parse_step(path, line, &rec[c_step])?,
            val_loss: required_f64(path, line, "val_loss", &rec[c_val])?,
            prior_loss: parse_f64(path, line, "prior_loss", &rec[c_prior])?,
            val_t,
            prior_t,
        });
    }
    let rows = drop_abandoned(rows, |r| r.step);
    Ok(Validation { timesteps, rows })
}
