//! Loss-curve plots of one run or of a sweep (all runs overlaid, one colour per run).
//!
//! [`plot_runs`] writes one chart per metric (`train_loss`, `val_loss` when any run has
//! validations, `lr`, `grad_norm`) plus an `overview` with one panel per metric, as PNG and/or
//! SVG. Detector events are marked on the curves with their label, the best checkpoint with a
//! star, and a diverged run's last finite training loss with a cross. Non-finite values are
//! skipped. The y axis switches to a log scale when the plotted values span more than 10x.
//!
//! Text is rendered with the system's `sans-serif` font through fontconfig (Debian:
//! `fonts-dejavu-core`, `libfontconfig1`).
//!
//! One job a file: `load` (run folders -> [`RunData`]), `panels` (what each chart shows:
//! curves, markers, legend keys, smoothing), `axes` (ranges, log scale, tick labels), `draw`
//! (charts and the overview, PNG/SVG output), `marks` (markers and their labels), `legend`,
//! `style` (colours, font sizes), [`compare`] (the pictures of `studioize compare`) and
//! [`metrics`] (the studio-ize metrics per checkpoint, for the report).

mod axes;
pub mod compare;
mod draw;
mod legend;
mod load;
mod marks;
pub mod metrics;
mod panels;
mod style;

pub use load::{load_runs, RunData};

use anyhow::{anyhow, Context, Result};
use draw::{render, Overview, Single};
use std::path::{Path, PathBuf};

/// Output image format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Png,
    Svg,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Svg => "svg",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "png" => Ok(Format::Png),
            "svg" => Ok(Format::Svg),
            _ => Err(anyhow!("unknown plot format {s:?} (expected png or svg)")),
        }
    }
}

/// Pixel size of the per-metric charts and of the overview.
pub const CHART_SIZE: (u32, u32) = (1600, 1000);
pub const OVERVIEW_SIZE: (u32, u32) = (2400, 1500);

/// Writes the charts of `runs` into `out_dir` (created if needed) in each of `formats`, and
/// returns the paths written: `train_loss`, `val_loss` (if any run has validations), `lr`,
/// `grad_norm` and `overview`, each with the format's extension.
pub fn plot_runs(runs: &[RunData], out_dir: &Path, formats: &[Format]) -> Result<Vec<PathBuf>> {
    anyhow::ensure!(!runs.is_empty(), "nothing to plot: no runs");
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let panels = panels::build_panels(runs);
    let mut written = Vec::new();
    for &format in formats {
        for panel in &panels {
            let path = out_dir.join(format!("{}.{}", panel.name, format.extension()));
            render(&path, format, CHART_SIZE, &Single { panel, runs })
                .with_context(|| format!("cannot plot {}", path.display()))?;
            written.push(path);
        }
        let path = out_dir.join(format!("overview.{}", format.extension()));
        let overview = Overview {
            panels: &panels,
            runs,
        };
        render(&path, format, OVERVIEW_SIZE, &overview)
            .with_context(|| format!("cannot plot {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}
