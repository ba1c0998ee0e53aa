//! The pictures of `studioize compare`: a labelled grid of images (rows = checkpoints, columns =
//! inputs), a chart of the validation and prior losses at the same checkpoints, and both side
//! by side in one image.
//!
//! Grid layout (pixels): a label column of [`GridLayout::label_width`] on the left, a header
//! row of [`HEADER_HEIGHT`] on top, then one cell per image with a [`GAP`] gutter around each.
//! Images smaller than [`MIN_CELL`] are enlarged by a whole factor (nearest neighbour, so pixels
//! stay pixels) until their long side reaches it.
use super::axes::{draw_mesh, draw_series_key, Chart};
use super::style::{ellipsize, plot_err, run_color, FONT};
use anyhow::{Context, Result};
use image::RgbImage;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Serialize;

pub const HEADER_HEIGHT: u32 = 56;
pub const GAP: u32 = 6;
pub const MIN_CELL: u32 = 160;
const LABEL_FONT: f64 = 20.0;
/// The metric chart's width and its smallest / largest height.
pub const CHART_WIDTH: u32 = 960;
const CHART_MIN_H: u32 = 560;
const CHART_MAX_H: u32 = 900;

/// One row of the grid.
#[derive(Debug, Clone)]
pub struct GridRow {
    /// Text lines drawn in the label column (the first one larger).
    pub label: Vec<String>,
    /// One image per column (same order as the headers).
    pub images: Vec<RgbImage>,
}

/// Where things are in a grid image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GridLayout {
    pub label_width: u32,
    pub header_height: u32,
    pub cell_width: u32,
    pub cell_height: u32,
    pub gap: u32,
    /// The whole factor images were enlarged by.
    pub scale: u32,
    pub width: u32,
    pub height: u32,
}

/// The enlargement factor for images whose long side is `long`.
pub fn cell_scale(long: u32) -> u32 {
    if long == 0 {
        1
    } else {
        MIN_CELL.div_ceil(long).max(1)
    }
}

fn text_width(text: &str, size: f64) -> u32 {
    // DejaVu Sans averages a little under 0.6 em per character.
    (text.chars().count() as f64 * size * 0.6).ceil() as u32
}

/// Lays out and draws the grid.
pub fn draw_grid(headers: &[String], rows: &[GridRow]) -> Result<(RgbImage, GridLayout)> {
    anyhow::ensure!(
        !rows.is_empty() && !headers.is_empty(),
        "nothing to draw: no rows or no columns"
    );
    let layout = grid_layout(headers, rows);
    let (width, height) = (layout.width, layout.height);
    let mut canvas = RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
    paint_cells(&mut canvas, &layout, rows, headers.len() as u32);
    let mut buf = canvas.into_raw();
    {
        let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
        draw_headers(&root, &layout, headers)?;
        draw_row_labels(&root, &layout, rows)?;
        root.present().map_err(plot_err)?;
    }
    let img = RgbImage::from_raw(width, height, buf).context("grid buffer has the wrong size")?;
    Ok((img, layout))
}

/// The grid's sizes: cells as large as the largest (enlarged) image, the label column as wide
/// as the widest label.
fn grid_layout(headers: &[String], rows: &[GridRow]) -> GridLayout {
    let all = || rows.iter().flat_map(|r| r.images.iter());
    let long = all().map(|i| i.width().max(i.height())).max().unwrap_or(1);
    let scale = cell_scale(long);
    let cell_width = all().map(|i| i.width()).max().unwrap_or(1) * scale;
    let cell_height = all().map(|i| i.height()).max().unwrap_or(1) * scale;
    let label_width = rows
        .iter()
        .flat_map(|r| r.label.iter())
        .map(|l| text_width(l, LABEL_FONT) + 28)
        .max()
        .unwrap_or(0)
        .clamp(140, 420);
    let cols = headers.len() as u32;
    let width = label_width + cols * (cell_width + GAP) + GAP;
    let height = HEADER_HEIGHT + rows.len() as u32 * (cell_height + GAP) + GAP;
    GridLayout {
        label_width,
        header_height: HEADER_HEIGHT,
        cell_width,
        cell_height,
        gap: GAP,
        scale,
        width,
        height,
    }
}

/// Light grey cell backgrounds, then the images enlarged and centred in their cells.
fn paint_cells(canvas: &mut RgbImage, layout: &GridLayout, rows: &[GridRow], cols: u32) {
    let (cell_width, cell_height, scale) = (layout.cell_width, layout.cell_height, layout.scale);
    for (r, row) in rows.iter().enumerate() {
        for c in 0..cols {
            let (x0, y0) = cell_origin(layout, r as u32, c);
            for y in y0..y0 + cell_height {
                for x in x0..x0 + cell_width {
                    canvas.put_pixel(x, y, image::Rgb([242, 242, 242]));
                }
            }
            if let Some(img) = row.images.get(c as usize) {
                let big = image::imageops::resize(
                    img,
                    img.width() * scale,
                    img.height() * scale,
                    image::imageops::FilterType::Nearest,
                );
                let x = x0 + (cell_width - big.width()) / 2;
                let y = y0 + (cell_height - big.height()) / 2;
                image::imageops::overlay(canvas, &big, x as i64, y as i64);
            }
        }
    }
}

/// The column headers, bold and centred over their cells (shortened to fit).
fn draw_headers(
    root: &DrawingArea<BitMapBackend<'_>, Shift>,
    layout: &GridLayout,
    headers: &[String],
) -> Result<()> {
    let cell_width = layout.cell_width;
    let head = TextStyle::from((FONT, LABEL_FONT).into_font().style(FontStyle::Bold))
        .pos(Pos::new(HPos::Center, VPos::Center));
    for (c, h) in headers.iter().enumerate() {
        let (x0, _) = cell_origin(layout, 0, c as u32);
        let text = fit(h, cell_width.saturating_sub(8), LABEL_FONT);
        let at = (
            (x0 + cell_width / 2) as i32,
            (HEADER_HEIGHT / 2 + GAP / 2) as i32,
        );
        root.draw(&Text::new(text, at, head.clone()))
            .map_err(plot_err)?;
    }
    Ok(())
}

/// Each row's label lines in the label column, centred on the row's height: the first line
/// (run or checkpoint) larger and black, the losses smaller in grey (fontconfig does not always
/// hand plotters a bold face).
fn draw_row_labels(
    root: &DrawingArea<BitMapBackend<'_>, Shift>,
    layout: &GridLayout,
    rows: &[GridRow],
) -> Result<()> {
    let bold = TextStyle::from((FONT, LABEL_FONT + 2.0).into_font().style(FontStyle::Bold));
    let plain = TextStyle::from((FONT, LABEL_FONT - 2.0).into_font()).color(&RGBColor(70, 70, 70));
    let line_h = (LABEL_FONT * 1.45) as u32;
    for (r, row) in rows.iter().enumerate() {
        let (_, y0) = cell_origin(layout, r as u32, 0);
        let lines = row.label.len() as u32;
        let top = y0 + layout.cell_height.saturating_sub(lines * line_h) / 2;
        for (i, line) in row.label.iter().enumerate() {
            let style = if i == 0 { &bold } else { &plain };
            let text = fit(line, layout.label_width - 20, LABEL_FONT);
            let at = (12, (top + i as u32 * line_h) as i32);
            root.draw(&Text::new(text, at, style.clone()))
                .map_err(plot_err)?;
        }
    }
    Ok(())
}

fn cell_origin(l: &GridLayout, row: u32, col: u32) -> (u32, u32) {
    (
        l.label_width + GAP + col * (l.cell_width + GAP),
        l.header_height + GAP + row * (l.cell_height + GAP),
    )
}

/// `text`, cut with an ellipsis to fit `width` pixels.
fn fit(text: &str, width: u32, size: f64) -> String {
    let max = ((width as f64) / (size * 0.6)).floor().max(2.0) as usize;
    ellipsize(text, max)
}

/// The losses of one run at its compared checkpoints: `(step, val_loss, prior_loss)`.
#[derive(Debug, Clone)]
pub struct LossSeries {
    pub label: String,
    pub points: Vec<(u64, Option<f64>, Option<f64>)>,
}

/// The chart height that sits well next to a grid `grid_height` pixels high.
pub fn chart_height(grid_height: u32) -> u32 {
    grid_height.clamp(CHART_MIN_H, CHART_MAX_H)
}

/// Validation loss (solid, dots) and prior loss (dashed, squares) against step, one colour per
/// run.
pub fn draw_losses(series: &[LossSeries], height: u32) -> Result<RgbImage> {
    let (w, h) = (CHART_WIDTH, height);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let values: Vec<f64> = series
            .iter()
            .flat_map(|s| s.points.iter().flat_map(|p| [p.1, p.2]))
            .flatten()
            .filter(|v| v.is_finite())
            .collect();
        let steps: Vec<u64> = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .collect();
        let title = "Losses at the compared checkpoints";
        if values.is_empty() {
            root.draw(&Text::new(title, (30, 30), (FONT, 30.0).into_font()))
                .map_err(plot_err)?;
            root.draw(&Text::new(
                "no validation losses recorded at these steps",
                (30, 90),
                (FONT, 22.0).into_font(),
            ))
            .map_err(plot_err)?;
        } else {
            // A log scale (as in the loss plots) when the values span more than 10x.
            let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let log = lo > 0.0 && hi / lo > 10.0;
            let map = move |v: f64| if log { v.log10() } else { v };
            let (lo, hi) = (map(lo), map(hi));
            let pad = if hi > lo {
                (hi - lo) * 0.08
            } else {
                hi.abs() * 0.1 + 1e-3
            };
            let x_max = steps.iter().copied().max().unwrap_or(1).max(1) as f64;
            let mut chart = ChartBuilder::on(&root)
                .caption(title, (FONT, 30.0).into_font())
                .margin(20)
                .margin_right(40)
                .x_label_area_size(60)
                .y_label_area_size(100)
                .build_cartesian_2d(-x_max * 0.03..x_max * 1.05, (lo - pad)..(hi + pad))
                .map_err(plot_err)?;
            let y_desc = if log { "loss, log scale" } else { "loss" };
            draw_mesh(&mut chart, y_desc, log, (22.0, 18.0))?;
            for (i, s) in series.iter().enumerate() {
                draw_run_losses(&mut chart, s, run_color(i), map)?;
            }
            draw_series_key(&mut chart, SeriesLabelPosition::UpperRight, 18, Some(44))?;
        }
        root.present().map_err(plot_err)?;
    }
    RgbImage::from_raw(w, h, buf).context("chart buffer has the wrong size")
}

/// One run's validation losses (solid line, dots) and prior losses (dashed line, squares) in
/// `color`, each with its legend entry; `map` places a loss on the y axis.
fn draw_run_losses<DB: DrawingBackend>(
    chart: &mut Chart<DB>,
    s: &LossSeries,
    color: RGBColor,
    map: impl Fn(f64) -> f64,
) -> Result<()> {
    let val: Vec<(f64, f64)> = s
        .points
        .iter()
        .filter_map(|p| p.1.filter(|v| v.is_finite()).map(|v| (p.0 as f64, map(v))))
        .collect();
    let prior: Vec<(f64, f64)> = s
        .points
        .iter()
        .filter_map(|p| p.2.filter(|v| v.is_finite()).map(|v| (p.0 as f64, map(v))))
        .collect();
    chart
        .draw_series(LineSeries::new(val.clone(), color.stroke_width(3)))
        .map_err(plot_err)?
        .label(format!("{} validation", s.label))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 28, y)], color.stroke_width(3)));
    chart
        .draw_series(val.iter().map(|&p| Circle::new(p, 6, color.filled())))
        .map_err(plot_err)?;
    if !prior.is_empty() {
        chart
            .draw_series(std::iter::once(DashedPathElement::new(
                prior.clone(),
                12,
                8,
                color.stroke_width(3),
            )))
            .map_err(plot_err)?
            .label(format!("{} prior", s.label))
            .legend(move |(x, y)| {
                DashedPathElement::new(vec![(x, y), (x + 28, y)], 8, 5, color.stroke_width(3))
            });
        chart
            .draw_series(
                prior.iter().map(|&p| {
                    EmptyElement::at(p) + Rectangle::new([(-5, -5), (5, 5)], color.filled())
                }),
            )
            .map_err(plot_err)?;
    }
    Ok(())
}

/// `left` and `right` side by side (tops aligned), with a white gutter.
pub fn side_by_side(left: &RgbImage, right: &RgbImage) -> RgbImage {
    let gutter = 16;
    let w = left.width() + gutter + right.width();
    let h = left.height().max(right.height());
    let mut out = RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    image::imageops::overlay(&mut out, left, 0, 0);
    image::imageops::overlay(&mut out, right, (left.width() + gutter) as i64, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_has_the_documented_size() {
        let img = RgbImage::from_pixel(32, 24, image::Rgb([200, 0, 0]));
        let rows = vec![
            GridRow {
                label: vec!["lr=0.0003".into(), "step-20".into()],
                images: vec![img.clone(), img.clone()],
            },
            GridRow {
                label: vec!["step-40".into()],
                images: vec![img.clone(), img],
            },
        ];
        let (g, l) = draw_grid(&["a".into(), "b".into()], &rows).unwrap();
        assert_eq!(l.scale, 5);
        assert_eq!((l.cell_width, l.cell_height), (160, 120));
        assert_eq!(g.width(), l.label_width + 2 * (160 + GAP) + GAP);
        assert_eq!(g.height(), HEADER_HEIGHT + 2 * (120 + GAP) + GAP);
        // The enlarged image sits in the first cell.
        let (x, y) = cell_origin(&l, 0, 0);
        assert_eq!(g.get_pixel(x + 80, y + 60).0, [200, 0, 0]);
        assert_eq!(fit("abcdefghijkl", 60, 10.0), "abcdefghi…");
        assert_eq!(fit("abcdefghijkl", 30, 10.0), "abcd…");
    }
}
