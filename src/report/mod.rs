//! `report.html` of an experiment: one self-contained file (images as base64 data URIs, inline
//! CSS, no scripts, no external resources) that opens in any browser without a server.
//!
//! Sections: the recommendation, the summary table (the data of `summary.csv` plus the final
//! losses), the loss plots (written by [`crate::plot::plot_runs`] into `<experiment>/plots/`),
//! each run's detector verdict with its events, each run's sample sheet at every checkpoint
//! with the losses there ([`samples`]; per product for a DreamBooth catalogue), the checkpoint
//! comparisons of
//! `studioize compare` with their studio-ize metrics per checkpoint when `studioize evaluate`
//! measured them ([`metrics`]), and each run's resolved `config.toml`.
pub mod html;
mod metrics;
mod samples;

use crate::monitor::detector::num;
use crate::monitor::run::CONFIG_TOML;
use crate::monitor::{load_experiment, DetectorConfig, ExperimentSummary, RunSummary};
use crate::plot::{load_runs, plot_runs, Format, RunData};
use anyhow::{Context, Result};
use html::{escape, png_data_uri};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What goes into a report.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Folders written by `studioize compare` (each with `compare.png`, maybe `compare.json`).
    pub compare_dirs: Vec<PathBuf>,
    /// Where the plots are written (default `<experiment>/plots`).
    pub plots_dir: Option<PathBuf>,
}

/// The comparison folders found in `<experiment>/compare`: the folder itself when it holds a
/// `compare.png`, else its sub-folders that do, sorted by name.
pub fn find_compare_dirs(experiment: &Path) -> Result<Vec<PathBuf>> {
    let root = experiment.join("compare");
    if root.join("compare.png").is_file() {
        return Ok(vec![root]);
    }
    let mut dirs = Vec::new();
    if root.is_dir() {
        for e in
            std::fs::read_dir(&root).with_context(|| format!("cannot read {}", root.display()))?
        {
            let p = e
                .with_context(|| format!("cannot read {}", root.display()))?
                .path();
            if p.join("compare.png").is_file() {
                dirs.push(p);
            }
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// Analyses the experiment where needed (reusing each run's `analysis.json`), draws the plots and
/// writes the report to `out`.
pub fn write_report(experiment: &Path, out: &Path, opts: &ReportOptions) -> Result<()> {
    let summary = load_experiment(experiment, &DetectorConfig::default())?;
    let runs = load_runs(experiment)?;
    let plots_dir = opts
        .plots_dir
        .clone()
        .unwrap_or_else(|| experiment.join("plots"));
    let plots = plot_runs(&runs, &plots_dir, &[Format::Png])?;
    let html = render(experiment, &summary, &runs, &plots, &opts.compare_dirs)?;
    crate::fsutil::write_atomic(out, html.as_bytes())
}

const STYLE: &str = "
body { font-family: 'DejaVu Sans', sans-serif; margin: 24px auto; max-width: 1400px; color: #222; padding: 0 16px; }
h1 { font-size: 28px; margin-bottom: 4px; }
h2 { border-bottom: 2px solid #ddd; padding-bottom: 4px; margin-top: 36px; }
.meta { color: #666; margin-top: 0; }
.rec { font-size: 18px; background: #fff3c4; padding: 10px 14px; border-left: 5px solid #e0a800; }
table { border-collapse: collapse; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 5px 9px; text-align: left; }
th { background: #f0f0f0; }
tr.recommended td { background: #fff3c4; font-weight: bold; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.label { padding: 2px 8px; border-radius: 4px; color: #fff; font-size: 13px; }
.converging { background: #2e7d32; } .plateaued { background: #757575; }
.overfitting { background: #e65100; } .deconverged { background: #6a1b9a; } .diverged { background: #b71c1c; }
img { max-width: 100%; border: 1px solid #ddd; }
.plots { display: grid; grid-template-columns: 1fr; gap: 12px; max-width: 1100px; }
figure { margin: 0 0 16px 0; } figcaption { color: #555; font-size: 13px; }
.sheets { display: flex; flex-wrap: wrap; gap: 12px; }
.sheets img { height: 224px; width: auto; image-rendering: pixelated; }
pre { background: #f7f7f7; border: 1px solid #ddd; padding: 10px; overflow-x: auto; font-size: 12px; }
";

fn opt_num(v: Option<f64>) -> String {
    v.map_or("-".into(), num)
}

fn opt_u64(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

fn label_span(label: &str) -> String {
    format!(
        "<span class=\"label {}\">{}</span>",
        escape(label),
        escape(label)
    )
}

fn img_tag(path: &Path, alt: &str) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(format!(
        "<img src=\"{}\" alt=\"{}\">",
        png_data_uri(&bytes),
        escape(alt)
    ))
}

/// Last finite training loss, last validation and prior loss of a run.
fn final_losses(data: Option<&RunData>) -> (Option<f64>, Option<f64>, Option<f64>) {
    let Some(d) = data else {
        return (None, None, None);
    };
    let train = d
        .metrics
        .iter()
        .rev()
        .map(|m| m.loss)
        .find(|l| l.is_finite());
    let last = d.validation.as_ref().and_then(|v| v.rows.last());
    (
        train,
        last.map(|r| r.val_loss),
        last.and_then(|r| r.prior_loss),
    )
}

fn summary_table(s: &ExperimentSummary, runs: &[RunData]) -> String {
    let mut h = String::from(
        "<table>\n<tr><th>run</th><th>learning rate</th><th>verdict</th><th>first event</th>\
         <th>best checkpoint</th><th>best val loss</th><th>final train loss</th>\
         <th>final val loss</th><th>final prior loss</th><th>last step</th><th>status</th></tr>\n",
    );
    for (i, r) in s.runs.iter().enumerate() {
        let rec = Some(i) == s.recommended && !one_learning_rate(s);
        let data = runs.iter().find(|d| d.dir == r.dir);
        let (train, val, prior) = final_losses(data);
        let event = r
            .analysis
            .events
            .first()
            .map_or("-".into(), |e| format!("{} at step {}", e.label, e.step));
        let lr = r.learning_rate.map_or("-".into(), |lr| format!("{lr:e}"));
        let _ = writeln!(
            h,
            "<tr{}><td>{}</td><td class=\"num\">{}{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            if rec { " class=\"recommended\"" } else { "" },
            escape(&r.id),
            escape(&lr),
            if rec { " ★ recommended" } else { "" },
            label_span(r.analysis.label.as_str()),
            escape(&event),
            match r.analysis.best_step {
                None => "-".into(),
                Some(0) => "base (step 0)".into(),
                Some(s) => format!("step-{s}"),
            },
            opt_num(r.analysis.best_val_loss),
            opt_num(train),
            opt_num(val),
            opt_num(prior),
            opt_u64(r.analysis.last_step),
            escape(&r.status.as_ref().map_or("-".into(), |s| s.short())),
        );
    }
    h.push_str("</table>\n");
    h
}

fn verdict(r: &RunSummary) -> String {
    let mut h = format!(
        "<h3>{} {}</h3>\n",
        escape(&r.id),
        label_span(r.analysis.label.as_str())
    );
    if r.analysis.events.is_empty() {
        h.push_str("<p>No events: the validation loss is still ");
        h.push_str(if r.analysis.label.as_str() == "plateaued" {
            "on a plateau.</p>\n"
        } else {
            "falling (or there is no validation).</p>\n"
        });
    } else {
        h.push_str("<ul>\n");
        for e in &r.analysis.events {
            let _ = writeln!(
                h,
                "<li>{} at step {}: {}</li>",
                label_span(e.label.as_str()),
                e.step,
                escape(&e.reason)
            );
        }
        h.push_str("</ul>\n");
    }
    if let Some(st) = &r.status {
        let _ = writeln!(
            h,
            "<p>Status: <b>{}</b>{}{}</p>",
            escape(&st.state),
            st.step.map_or(String::new(), |s| format!(" at step {s}")),
            st.reason
                .as_deref()
                .filter(|s| !s.is_empty())
                .map_or(String::new(), |s| format!(": {}", escape(s)))
        );
    }
    h
}

fn comparison(dir: &Path) -> Result<String> {
    let mut h = format!(
        "<figure>{}",
        img_tag(&dir.join("compare.png"), "comparison grid")?
    );
    let meta_path = dir.join("compare.json");
    let mut caption = dir.display().to_string();
    if meta_path.is_file() {
        let text = std::fs::read_to_string(&meta_path)
            .with_context(|| format!("cannot read {}", meta_path.display()))?;
        let m: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: invalid JSON", meta_path.display()))?;
        caption = format!(
            "{caption}: prompt {}, strength {}, {} steps, sampler {}, guidance {}, seed {}",
            m["prompt"], m["strength"], m["steps"], m["sampler"], m["guidance"], m["seed"]
        );
    }
    let _ = writeln!(h, "<figcaption>{}</figcaption></figure>", escape(&caption));
    h.push_str(&metrics::section(dir)?);
    Ok(h)
}

fn render(
    experiment: &Path,
    s: &ExperimentSummary,
    runs: &[RunData],
    plots: &[PathBuf],
    compare_dirs: &[PathBuf],
) -> Result<String> {
    let mut h = String::new();
    push_head(&mut h, experiment, s);
    push_recommendation(&mut h, s);
    h.push_str("<h2>Summary</h2>\n");
    h.push_str(&summary_table(s, runs));

    push_plots(&mut h, plots)?;

    h.push_str("<h2>Detector verdicts</h2>\n");
    for r in &s.runs {
        h.push_str(&verdict(r));
    }

    h.push_str(&samples::section(s, runs)?);

    h.push_str("<h2>Checkpoint comparisons</h2>\n");
    if compare_dirs.is_empty() {
        h.push_str("<p>None: run <code>studioize compare EXPERIMENT --out EXPERIMENT/compare ...</code> to add one.</p>\n");
    }
    for d in compare_dirs {
        h.push_str(&comparison(d)?);
    }

    push_configs(&mut h, s)?;
    h.push_str("</body>\n</html>\n");
    Ok(h)
}

/// Appends the document head and the title block (the experiment folder's name).
fn push_head(h: &mut String, experiment: &Path, s: &ExperimentSummary) {
    let name = experiment
        .canonicalize()
        .unwrap_or_else(|_| experiment.to_path_buf())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| experiment.display().to_string());
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>studioize report: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <h1>Experiment {}</h1>\n<p class=\"meta\">{} · {} run(s) · studioize {}</p>\n",
        escape(&name),
        escape(&name),
        escape(&experiment.display().to_string()),
        s.runs.len(),
        env!("CARGO_PKG_VERSION")
    );
}

/// True when several runs all share one learning rate (a catalogue: one run per product), so
/// that there is no learning rate to recommend.
fn one_learning_rate(s: &ExperimentSummary) -> bool {
    let first = s.runs.first().and_then(|r| r.learning_rate);
    s.runs.len() > 1 && s.runs.iter().all(|r| r.learning_rate == first)
}

/// Appends the recommended learning rate (or why there is none).
fn push_recommendation(h: &mut String, s: &ExperimentSummary) {
    let first = s.runs.first().and_then(|r| r.learning_rate);
    if one_learning_rate(s) {
        let _ = writeln!(
            h,
            "<p class=\"rec\">All {} runs share the learning rate {}: each is judged by its own verdict and samples below.</p>",
            s.runs.len(),
            first.map_or("unknown".into(), |lr| format!("{lr:e}"))
        );
        return;
    }
    match s.recommended_run() {
        Some(r) => {
            let _ = writeln!(
                h,
                "<p class=\"rec\">Recommended learning rate: <b>{}</b> (run {}, best validation loss {} at step {})</p>",
                r.learning_rate.map_or("unknown".into(), |lr| format!("{lr:e}")),
                escape(&r.id),
                opt_num(r.analysis.best_val_loss),
                opt_u64(r.analysis.best_step)
            );
        }
        None => h.push_str(
            "<p class=\"rec\">No recommendation: every run diverged, deconverged or has no validation.</p>\n",
        ),
    }
}

/// Appends the plots section: the overview, then the per-metric plots that exist.
fn push_plots(h: &mut String, plots: &[PathBuf]) -> Result<()> {
    h.push_str("<h2>Plots</h2>\n");
    let find = |stem: &str| {
        plots
            .iter()
            .find(|p| p.file_stem().is_some_and(|s| s == stem))
    };
    if let Some(p) = find("overview") {
        let _ = writeln!(h, "<figure>{}</figure>", img_tag(p, "training overview")?);
    }
    h.push_str("<div class=\"plots\">\n");
    for stem in ["train_loss", "val_loss", "lr", "grad_norm"] {
        if let Some(p) = find(stem) {
            let _ = writeln!(
                h,
                "<figure>{}<figcaption>{stem}.png</figcaption></figure>",
                img_tag(p, stem)?
            );
        }
    }
    h.push_str("</div>\n");
    Ok(())
}

/// Appends each run's `config.toml` (or a note that it has none).
fn push_configs(h: &mut String, s: &ExperimentSummary) -> Result<()> {
    h.push_str("<h2>Resolved configs</h2>\n");
    for r in &s.runs {
        let path = r.dir.join(CONFIG_TOML);
        let text = if path.is_file() {
            std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?
        } else {
            format!("(no {CONFIG_TOML} in this run folder)")
        };
        let _ = writeln!(
            h,
            "<h3>{}</h3>\n<pre>{}</pre>",
            escape(&r.id),
            escape(&text)
        );
    }
    Ok(())
}
