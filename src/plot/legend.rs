//! The legend beside a chart: one colour swatch per run (its label cut to fit, with the
//! detector's verdict unless the run converged), then the line styles of the panel.

use super::load::RunData;
use super::panels::Stroke;
use super::style::{ellipsize, plot_err, run_color, Sizes, FONT};
use crate::monitor::detector::Label;
use anyhow::Result;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;

/// Draws the legend (one colour per run, then the line styles `keys`) into `area`, starting
/// `top` pixels down.
pub(super) fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    runs: &[RunData],
    keys: &[(Stroke, String)],
    sz: Sizes,
    top: i32,
) -> Result<()> {
    let style = TextStyle::from((FONT, sz.note + 1.0).into_font());
    let head = TextStyle::from((FONT, sz.note + 2.0).into_font().style(FontStyle::Bold));
    let (w, _) = area.dim_in_pixel();
    let max_chars = ((w as f64 - 80.0) / ((sz.note + 1.0) * 0.6)).max(8.0) as usize;
    let line_h = (sz.note * 1.9) as i32;
    let mut y = top;
    let title = if runs.len() > 1 { "runs" } else { "run" };
    area.draw(&Text::new(title, (10, y), head.clone()))
        .map_err(plot_err)?;
    y += line_h;
    for (i, r) in runs.iter().enumerate() {
        swatch(area, y, Stroke::Solid, run_color(i), sz)?;
        area.draw(&Text::new(run_label(r, max_chars), (68, y), style.clone()))
            .map_err(plot_err)?;
        y += line_h;
    }
    if !keys.is_empty() {
        y += line_h / 2;
        area.draw(&Text::new("lines", (10, y), head.clone()))
            .map_err(plot_err)?;
        y += line_h;
        for (stroke, text) in keys {
            swatch(area, y, *stroke, RGBColor(60, 60, 60), sz)?;
            area.draw(&Text::new(text.as_str(), (68, y), style.clone()))
                .map_err(plot_err)?;
            y += line_h;
        }
    }
    Ok(())
}

/// A run's legend text: its label cut to `max_chars`, then the detector's verdict in brackets
/// unless it is "converging".
fn run_label(r: &RunData, max_chars: usize) -> String {
    let label = ellipsize(&r.label, max_chars);
    match &r.analysis {
        Some(a) if a.label != Label::Converging => format!("{label} ({})", a.label),
        _ => label,
    }
}

/// A short sample of a line drawn with `stroke` in `color`, on the text line at `y`.
fn swatch<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    y: i32,
    stroke: Stroke,
    color: RGBColor,
    sz: Sizes,
) -> Result<()> {
    let mid = y + (sz.note * 0.6) as i32;
    let line = vec![(12, mid), (58, mid)];
    match stroke {
        Stroke::Faint => area.draw(&PathElement::new(line, color.mix(0.35).stroke_width(2))),
        Stroke::Solid => area.draw(&PathElement::new(line, color.stroke_width(4))),
        Stroke::Dashed => area.draw(&DashedPathElement::new(line, 10, 6, color.stroke_width(4))),
    }
    .map_err(plot_err)
}
