//! The samples section of a report: per run (a sweep point; a product of a DreamBooth
//! catalogue), its instance prompt when it has one, its detector verdict, and the sample sheet
//! of every checkpoint (`samples/step-N/sheet.png`, written with
//! `train.sample_every_checkpoint`) in step order, each captioned with the validation and prior
//! losses at that step.
use super::html::escape;
use super::{img_tag, label_span, opt_num};
use crate::monitor::run::CONFIG_TOML;
use crate::monitor::{ExperimentSummary, RunSummary};
use crate::plot::RunData;
use crate::train::RunDir;
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The sheet of a checkpoint's samples.
const SHEET: &str = "sheet.png";

/// `(step, sheet)` of every `samples/step-N/sheet.png` of a run, by step.
pub fn sample_sheets(run: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let root = RunDir::new(run).samples_root();
    let entries = match std::fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot list", root.display())),
    };
    let mut sheets = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("{}: cannot list", root.display()))?;
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(step) = RunDir::checkpoint_step(&name) else {
            continue;
        };
        let sheet = entry.path().join(SHEET);
        if sheet.is_file() {
            sheets.push((step, sheet));
        }
    }
    sheets.sort();
    Ok(sheets)
}

/// `dreambooth.instance_prompt` of a run's `config.toml`, if any.
fn instance_prompt(run: &Path) -> Option<String> {
    let text = std::fs::read_to_string(run.join(CONFIG_TOML)).ok()?;
    let table: toml::Table = text.parse().ok()?;
    let prompt = table.get("dreambooth")?.get("instance_prompt")?.as_str()?;
    Some(prompt.to_string())
}

/// The section: every run with sample sheets, or a note on how to get them.
pub fn section(s: &ExperimentSummary, runs: &[RunData]) -> Result<String> {
    let mut h = String::from("<h2>Samples at each checkpoint</h2>\n");
    let mut any = false;
    for r in &s.runs {
        let sheets = sample_sheets(&r.dir)?;
        if sheets.is_empty() {
            continue;
        }
        any = true;
        let data = runs.iter().find(|d| d.dir == r.dir);
        h.push_str(&run_samples(r, data, &sheets)?);
    }
    if !any {
        h.push_str(
            "<p>None: set <code>train.sample_every_checkpoint = true</code> and \
             <code>train.validation_prompts</code> to sample every checkpoint.</p>\n",
        );
    }
    Ok(h)
}

fn run_samples(
    r: &RunSummary,
    data: Option<&RunData>,
    sheets: &[(u64, PathBuf)],
) -> Result<String> {
    let mut h = format!(
        "<h3 id=\"samples-{}\">{} {}</h3>\n",
        escape(&r.id),
        escape(&r.id),
        label_span(r.analysis.label.as_str())
    );
    if let Some(p) = instance_prompt(&r.dir) {
        let _ = writeln!(h, "<p>Instance prompt: <code>{}</code></p>", escape(&p));
    }
    h.push_str("<div class=\"sheets\">\n");
    for (step, sheet) in sheets {
        let row = data
            .and_then(|d| d.validation.as_ref())
            .and_then(|v| v.rows.iter().find(|row| row.step == *step));
        let losses = match row {
            Some(row) => format!(
                " · val loss {} · prior loss {}",
                opt_num(Some(row.val_loss)),
                opt_num(row.prior_loss)
            ),
            None => String::new(),
        };
        let _ = writeln!(
            h,
            "<figure>{}<figcaption>step {step}{}</figcaption></figure>",
            img_tag(sheet, &format!("{} step {step}", r.id))?,
            escape(&losses)
        );
    }
    h.push_str("</div>\n");
    Ok(h)
}
