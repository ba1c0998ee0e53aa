//! Drawing: a chart per panel and the overview of all panels, each with its legend, written as
//! PNG or SVG through temp + rename (a full disk leaves no half chart).
//!
//! The drawing code is generic over the plotters backend: a [`Picture`] draws itself on any
//! backend, and [`render`] picks the backend of the output format.

use super::axes::{draw_mesh, x_max, Chart, YAxis};
use super::legend::draw_legend;
use super::load::RunData;
use super::marks::draw_marks;
use super::panels::{smoothing_key, Panel, Series, Stroke};
use super::style::{plot_err, run_color, Sizes, CHART_SIZES, FONT};
use super::Format;
use anyhow::{Context, Result};
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use std::path::Path;

/// Solid and dashed curves with fewer points than this also get a dot or square per point.
const FEW_POINTS: usize = 60;

/// Something drawn the same way on every backend.
pub(super) trait Picture {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>;
}

/// Draws `picture` on a `size` canvas and writes it whole to `path` as `format`.
pub(super) fn render(
    path: &Path,
    format: Format,
    (w, h): (u32, u32),
    picture: &impl Picture,
) -> Result<()> {
    match format {
        Format::Png => {
            let mut buf = vec![0u8; (w * h * 3) as usize];
            {
                let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
                picture.draw(&root)?;
                root.present().map_err(plot_err)?;
            }
            let img =
                image::RgbImage::from_raw(w, h, buf).context("chart buffer has the wrong size")?;
            crate::imageio::save_png(path, &img)
        }
        Format::Svg => {
            let mut svg = String::new();
            {
                let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
                picture.draw(&root)?;
                root.present().map_err(plot_err)?;
            }
            crate::fsutil::write_atomic(path, svg.as_bytes())
        }
    }
}

/// What the charts are of: the run's label, or "sweep of N runs".
fn subject(runs: &[RunData]) -> String {
    if runs.len() == 1 {
        runs[0].label.clone()
    } else {
        format!("sweep of {} runs", runs.len())
    }
}

/// One panel's chart with the legend on the right.
pub(super) struct Single<'a> {
    pub panel: &'a Panel,
    pub runs: &'a [RunData],
}

impl Picture for Single<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        root.fill(&WHITE).map_err(plot_err)?;
        let (w, _) = root.dim_in_pixel();
        let (chart_area, legend_area) = root.split_horizontally(w as i32 - 330);
        let title = format!("{} - {}", self.panel.title, subject(self.runs));
        draw_panel(
            root,
            &chart_area,
            self.panel,
            self.runs,
            &title,
            CHART_SIZES,
        )?;
        draw_legend(&legend_area, self.runs, &self.panel.keys, CHART_SIZES, 80)
    }
}

/// Every panel in a 2 x 2 grid under one title, with one legend for all.
pub(super) struct Overview<'a> {
    pub panels: &'a [Panel],
    pub runs: &'a [RunData],
}

impl Picture for Overview<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        root.fill(&WHITE).map_err(plot_err)?;
        let sz = CHART_SIZES;
        let (w, _) = root.dim_in_pixel();
        let body = root
            .titled(
                &format!("Training overview - {}", subject(self.runs)),
                (FONT, sz.title * 1.2).into_font(),
            )
            .map_err(plot_err)?;
        let (grid, legend_area) = body.split_horizontally(w as i32 - 360);
        let cells = grid.split_evenly((2, 2));
        for (panel, cell) in self.panels.iter().zip(&cells) {
            draw_panel(root, cell, panel, self.runs, panel.title, sz)?;
        }
        draw_legend(&legend_area, self.runs, &self.keys(), sz, 40)
    }
}

impl Overview<'_> {
    /// Line styles: solid is the smoothed loss and gradient norm, the value itself for the
    /// others.
    fn keys(&self) -> Vec<(Stroke, String)> {
        let mut keys = vec![
            (Stroke::Faint, "per step (loss, grad norm)".to_string()),
            (
                Stroke::Solid,
                format!("{}, validation, lr", smoothing_key(self.runs)),
            ),
        ];
        if self.panels.iter().any(Panel::has_dashed) {
            keys.push((Stroke::Dashed, "prior (forgetting)".into()));
        }
        keys
    }
}

/// Draws one panel (chart with axes, curves and marks) into `area`; annotations go on `root`
/// in backend pixel coordinates.
fn draw_panel<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    runs: &[RunData],
    title: &str,
    sz: Sizes,
) -> Result<()> {
    let y = YAxis::fit(panel);
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, sz.title).into_font())
        .margin(18)
        .margin_right(30)
        .x_label_area_size((sz.axis * 2.6) as i32)
        .y_label_area_size((sz.axis * 4.6) as i32)
        .build_cartesian_2d(0.0..x_max(panel) * 1.01, y.lo..y.hi)
        .map_err(plot_err)?;
    draw_mesh(&mut chart, &y.desc(panel.y_desc), y.log, (sz.axis, sz.tick))?;
    // Faint lines first so that the solid ones stay on top.
    let mut order: Vec<&Series> = panel.series.iter().collect();
    order.sort_by_key(|s| s.stroke != Stroke::Faint);
    for s in order {
        draw_series(&mut chart, s, &y)?;
    }
    draw_marks(root, &chart, panel, runs, &y, sz)
}

/// One curve in its run's colour; points the y axis cannot show are left out.
fn draw_series<DB: DrawingBackend>(chart: &mut Chart<DB>, s: &Series, y: &YAxis) -> Result<()> {
    let color = run_color(s.run);
    let pts: Vec<(f64, f64)> = s
        .points
        .iter()
        .filter_map(|&(px, py)| y.map(py).map(|py| (px, py)))
        .collect();
    let few = pts.len() < FEW_POINTS;
    match s.stroke {
        Stroke::Faint => {
            chart
                .draw_series(LineSeries::new(pts, color.mix(0.22).stroke_width(1)))
                .map_err(plot_err)?;
        }
        Stroke::Solid => {
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(3)))
                .map_err(plot_err)?;
            if few {
                chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
                    .map_err(plot_err)?;
            }
        }
        Stroke::Dashed => {
            chart
                .draw_series(std::iter::once(DashedPathElement::new(
                    pts.clone(),
                    12,
                    8,
                    color.stroke_width(3),
                )))
                .map_err(plot_err)?;
            if few {
                chart
                    .draw_series(pts.iter().map(|&p| {
                        EmptyElement::at(p) + Rectangle::new([(-4, -4), (4, 4)], color.filled())
                    }))
                    .map_err(plot_err)?;
            }
        }
    }
    Ok(())
}
