//! The studio-ize metrics per checkpoint (the means table `studioize evaluate` writes for a
//! `compare` folder, `metrics-summary.csv`): read back, and drawn as one small chart per
//! metric, the metric against the checkpoint's step, one line per run (the colours of the loss
//! plots). The input photos' mean background cleanliness is drawn as a grey dashed line in the
//! cleanliness panel: the outputs above it are the transform cleaning the background.
use super::axes::{draw_mesh, draw_series_key, Chart};
use super::style::{plot_err, run_color, FONT};
use anyhow::{bail, Context, Result};
use image::RgbImage;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use std::path::Path;

/// The file name `studioize evaluate --out <compare>/metrics.csv` gives its means table.
pub const SUMMARY_CSV: &str = "metrics-summary.csv";

/// The metrics drawn, with their panel titles (a column the table lacks is left out).
pub const DRAWN: [(&str, &str); 5] = [
    (
        "background_cleanliness_out",
        "background cleanliness (1 = clean)",
    ),
    ("delta_e2000", "product colour change, Delta E 2000"),
    ("ssim_product", "product SSIM to the input"),
    ("psnr_reference", "PSNR to the studio photo (dB)"),
    ("ssim_reference", "SSIM to the studio photo"),
];

/// One line per run: its id and its finite `(step, value)` points.
pub type Series = Vec<(String, Vec<(f64, f64)>)>;

/// One row of the means table: a checkpoint of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsRow {
    pub run: String,
    pub checkpoint: String,
    pub step: Option<u64>,
    pub images: usize,
    /// One value per [`MetricsTable::columns`] (empty cells are `None`).
    pub values: Vec<Option<f64>>,
}

/// The means table of a compare folder.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsTable {
    /// The metric columns, in file order.
    pub columns: Vec<String>,
    pub rows: Vec<MetricsRow>,
}

impl MetricsTable {
    /// Reads a means table with `run, checkpoint, step, images` and metric columns.
    pub fn read(path: &Path) -> Result<Self> {
        let mut r = csv::Reader::from_path(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let header: Vec<String> = r
            .headers()
            .with_context(|| format!("{}: cannot read the header", path.display()))?
            .iter()
            .map(String::from)
            .collect();
        let lead = ["run", "checkpoint", "step", "images"];
        if header.len() < lead.len() || header[..lead.len()] != lead {
            bail!(
                "{}: not a per-checkpoint metrics table (expected the columns {} first; write it with `studioize evaluate --outputs COMPARE_DIR`)",
                path.display(),
                lead.join(", ")
            );
        }
        let columns = header[lead.len()..].to_vec();
        let mut rows = Vec::new();
        for (i, rec) in r.records().enumerate() {
            let rec = rec.with_context(|| format!("{}: row {}", path.display(), i + 2))?;
            let bad = |what: &str| format!("{}: row {}: bad {what}", path.display(), i + 2);
            let step = match &rec[2] {
                "" => None,
                s => Some(s.parse().with_context(|| bad("step"))?),
            };
            let images = rec[3].parse().with_context(|| bad("images"))?;
            let mut values = Vec::with_capacity(columns.len());
            for (c, name) in columns.iter().enumerate() {
                values.push(match rec.get(lead.len() + c).unwrap_or("") {
                    "" => None,
                    "inf" => Some(f64::INFINITY),
                    s => Some(s.parse().with_context(|| bad(name))?),
                });
            }
            rows.push(MetricsRow {
                run: rec[0].to_string(),
                checkpoint: rec[1].to_string(),
                step,
                images,
                values,
            });
        }
        Ok(Self { columns, rows })
    }

    /// The finite `(step, value)` points of `column` for each run, in first-seen run order.
    pub fn series(&self, column: &str) -> Series {
        let Some(c) = self.columns.iter().position(|n| n == column) else {
            return Vec::new();
        };
        let mut out: Series = Vec::new();
        for r in &self.rows {
            let Some(v) = r.values[c].filter(|v| v.is_finite()) else {
                continue;
            };
            let k = match out.iter().position(|(run, _)| *run == r.run) {
                Some(k) => k,
                None => {
                    out.push((r.run.clone(), Vec::new()));
                    out.len() - 1
                }
            };
            out[k].1.push((r.step.unwrap_or(0) as f64, v));
        }
        for (_, pts) in &mut out {
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        out
    }
}

const PANEL_W: u32 = 640;
const PANEL_H: u32 = 420;

/// One panel per drawn metric the table has, two per row.
pub fn draw_metrics(table: &MetricsTable) -> Result<RgbImage> {
    let panels: Vec<(&str, &str, Series)> = DRAWN
        .iter()
        .map(|&(c, title)| (c, title, table.series(c)))
        .filter(|(_, _, series)| !series.is_empty())
        .collect();
    let cols = panels.len().min(2) as u32;
    let rows = (panels.len() as u32).div_ceil(cols);
    let (w, h) = (PANEL_W * cols, PANEL_H * rows);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let areas = root.split_evenly((rows as usize, cols as usize));
        for ((column, title, series), area) in panels.iter().zip(areas) {
            // The inputs are the same for every row: one line at their mean cleanliness.
            let inputs: Vec<f64> = if *column == "background_cleanliness_out" {
                table
                    .series("background_cleanliness_in")
                    .iter()
                    .flat_map(|(_, p)| p.iter().map(|q| q.1))
                    .collect()
            } else {
                Vec::new()
            };
            let baseline =
                (!inputs.is_empty()).then(|| inputs.iter().sum::<f64>() / inputs.len() as f64);
            let all: Vec<(f64, f64)> = series
                .iter()
                .flat_map(|(_, p)| p.iter().copied())
                .chain(baseline.map(|b| (0.0, b)))
                .collect();
            let (lo, hi) = all
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), p| {
                    (l.min(p.1), h.max(p.1))
                });
            let pad = if hi > lo {
                (hi - lo) * 0.1
            } else {
                hi.abs() * 0.1 + 1e-3
            };
            let x_max = all.iter().map(|p| p.0).fold(1.0, f64::max);
            let mut chart = ChartBuilder::on(&area)
                .caption(*title, (FONT, 22.0).into_font())
                .margin(14)
                .margin_right(24)
                .x_label_area_size(44)
                .y_label_area_size(70)
                .build_cartesian_2d(-x_max * 0.04..x_max * 1.06, (lo - pad)..(hi + pad))
                .map_err(plot_err)?;
            draw_mesh(&mut chart, "mean over the inputs", false, (16.0, 14.0))?;
            if let Some(b) = baseline {
                let pts = [(0.0, b), (x_max, b)];
                draw_line(
                    &mut chart,
                    &pts,
                    RGBColor(150, 150, 150),
                    "inputs".into(),
                    true,
                )?;
            }
            for (i, (run, pts)) in series.iter().enumerate() {
                draw_line(&mut chart, pts, run_color(i), run.clone(), false)?;
            }
            draw_series_key(&mut chart, SeriesLabelPosition::LowerRight, 14, None)?;
        }
        root.present().map_err(plot_err)?;
    }
    RgbImage::from_raw(w, h, buf).context("chart buffer has the wrong size")
}

/// A line with dots (or a dashed line) and its legend entry.
fn draw_line<DB: DrawingBackend>(
    chart: &mut Chart<DB>,
    pts: &[(f64, f64)],
    color: RGBColor,
    label: String,
    dashed: bool,
) -> Result<()> {
    let style = color.stroke_width(3);
    if dashed {
        chart
            .draw_series(std::iter::once(DashedPathElement::new(
                pts.to_vec(),
                10,
                6,
                style,
            )))
            .map_err(plot_err)?
            .label(label)
            .legend(move |(x, y)| DashedPathElement::new(vec![(x, y), (x + 24, y)], 6, 4, style));
    } else {
        chart
            .draw_series(LineSeries::new(pts.to_vec(), style))
            .map_err(plot_err)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 5, color.filled())))
            .map_err(plot_err)?;
    }
    Ok(())
}
