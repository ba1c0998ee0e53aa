//! Markers on a drawn panel: a triangle and a dashed vertical guide per detector event, a star
//! on the best checkpoint, a cross on a diverged run's last finite loss, each with a boxed
//! label placed next to it without overlapping the other markers and labels.

use super::axes::{Chart, YAxis};
use super::load::RunData;
use super::panels::{Mark, MarkKind, Panel};
use super::style::{mark_color, plot_err, run_color, Sizes, FONT};
use anyhow::Result;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;

/// A box in backend pixels: (x0, y0, x1, y1).
type Rect = (i32, i32, i32, i32);

/// Keeps annotation boxes apart.
struct Placer {
    taken: Vec<Rect>,
    bounds: Rect,
}

impl Placer {
    fn free(&self, r: Rect) -> bool {
        let (bx0, by0, bx1, by1) = self.bounds;
        r.0 >= bx0
            && r.1 >= by0
            && r.2 <= bx1
            && r.3 <= by1
            && self
                .taken
                .iter()
                .all(|t| r.2 <= t.0 || r.0 >= t.2 || r.3 <= t.1 || r.1 >= t.3)
    }

    /// Finds a spot for a `w` x `h` box near the anchor point (px, py), trying the four
    /// diagonal corners first and then moving away vertically; `None` when nothing fits.
    fn place(&mut self, px: i32, py: i32, w: i32, h: i32) -> Option<(i32, i32)> {
        let gap = 10;
        for k in 0..40 {
            let dy = k * (h + 4);
            for (sx, sy) in [(1, -1), (-1, -1), (1, 1), (-1, 1)] {
                let x0 = if sx > 0 { px + gap } else { px - gap - w };
                let y0 = if sy < 0 {
                    py - gap - h - dy
                } else {
                    py + gap + dy
                };
                let r = (x0, y0, x0 + w, y0 + h);
                if self.free(r) {
                    self.taken.push(r);
                    return Some((x0, y0));
                }
            }
        }
        None
    }
}

/// Draws a five-pointed star centred on (cx, cy).
fn star<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    (cx, cy): (i32, i32),
    r: f64,
    color: RGBColor,
) -> Result<()> {
    let pts: Vec<(i32, i32)> = (0..10)
        .map(|i| {
            let rad = if i % 2 == 0 { r } else { r * 0.45 };
            let a = -std::f64::consts::FRAC_PI_2 + i as f64 * std::f64::consts::PI / 5.0;
            (
                cx + (rad * a.cos()).round() as i32,
                cy + (rad * a.sin()).round() as i32,
            )
        })
        .collect();
    root.draw(&Polygon::new(pts.clone(), color.filled()))
        .map_err(plot_err)?;
    let mut outline = pts;
    outline.push(outline[0]);
    root.draw(&PathElement::new(outline, BLACK.stroke_width(1)))
        .map_err(plot_err)?;
    Ok(())
}

/// Draws the marks of `panel` on `root` (backend pixels) at their places in `chart`: the most
/// important first, so that their labels get the best spots. Marks whose value the y axis
/// cannot show (non-positive on a log scale) are left out.
pub(super) fn draw_marks<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &Chart<DB>,
    panel: &Panel,
    runs: &[RunData],
    y: &YAxis,
    sz: Sizes,
) -> Result<()> {
    let (xr, yr) = chart.plotting_area().get_pixel_range();
    let mut placer = Placer {
        taken: vec![],
        bounds: (xr.start + 4, yr.start + 4, xr.end - 4, yr.end - 4),
    };
    let style = TextStyle::from((FONT, sz.note).into_font());
    let mut marks: Vec<&Mark> = panel.marks.iter().collect();
    marks.sort_by_key(|m| match m.kind {
        MarkKind::Event(l) => std::cmp::Reverse(l as i32 + 2),
        MarkKind::LastFinite => std::cmp::Reverse(7),
        MarkKind::Best => std::cmp::Reverse(1),
    });
    // Every symbol's spot is taken before any label is placed.
    let mut anchors = Vec::new();
    for m in &marks {
        let Some(my) = y.map(m.y) else { continue };
        let (px, py) = chart.backend_coord(&(m.x, my));
        anchors.push((px, py));
        placer.taken.push((px - 9, py - 9, px + 9, py + 9));
    }
    for (m, &at) in marks.iter().zip(&anchors) {
        draw_symbol(root, m, at, (yr.start, yr.end))?;
        let text = if runs.len() > 1 {
            format!("{}: {}", runs[m.run].label, m.text)
        } else {
            m.text.clone()
        };
        draw_label(root, &mut placer, at, &text, &style, mark_color(m.kind))?;
    }
    Ok(())
}

/// The symbol of `m` at pixel `(px, py)`; an event also gets a vertical guide from `top` to
/// `bottom`.
fn draw_symbol<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    m: &Mark,
    (px, py): (i32, i32),
    (top, bottom): (i32, i32),
) -> Result<()> {
    let color = mark_color(m.kind);
    match m.kind {
        MarkKind::Best => star(root, (px, py), 14.0, RGBColor(255, 200, 0))?,
        MarkKind::LastFinite => {
            root.draw(&Cross::new((px, py), 10, color.stroke_width(3)))
                .map_err(plot_err)?;
        }
        MarkKind::Event(_) => {
            root.draw(&DashedPathElement::new(
                vec![(px, top), (px, bottom)],
                6,
                6,
                color.mix(0.45).stroke_width(1),
            ))
            .map_err(plot_err)?;
            root.draw(&TriangleMarker::new(
                (px, py),
                11,
                run_color(m.run).filled(),
            ))
            .map_err(plot_err)?;
            root.draw(&TriangleMarker::new((px, py), 11, BLACK.stroke_width(1)))
                .map_err(plot_err)?;
        }
    }
    Ok(())
}

/// `text` in a white box outlined in `color`, placed by `placer` near pixel `(px, py)`; left out
/// when no free spot is found.
fn draw_label<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    placer: &mut Placer,
    (px, py): (i32, i32),
    text: &str,
    style: &TextStyle,
    color: RGBColor,
) -> Result<()> {
    let (tw, th) = root.estimate_text_size(text, style).map_err(plot_err)?;
    let (w, h) = (tw as i32 + 10, th as i32 + 6);
    let Some((x0, y0)) = placer.place(px, py, w, h) else {
        return Ok(());
    };
    let corners = [(x0, y0), (x0 + w, y0 + h)];
    root.draw(&Rectangle::new(corners, WHITE.mix(0.85).filled()))
        .map_err(plot_err)?;
    root.draw(&Rectangle::new(corners, color.stroke_width(1)))
        .map_err(plot_err)?;
    root.draw(&Text::new(text, (x0 + 5, y0 + 3), style.color(&color)))
        .map_err(plot_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placer_keeps_boxes_apart_and_inside() {
        let mut p = Placer {
            taken: vec![],
            bounds: (0, 0, 200, 200),
        };
        // Top right of the anchor first, then top left, then below.
        assert_eq!(p.place(100, 100, 40, 20), Some((110, 70)));
        assert_eq!(p.place(100, 100, 40, 20), Some((50, 70)));
        assert_eq!(p.place(100, 100, 40, 20), Some((110, 110)));
        assert_eq!(p.place(100, 100, 40, 20), Some((50, 110)));
        assert_eq!(p.place(100, 100, 40, 20), Some((110, 46)));
        // Too big for the bounds.
        assert_eq!(p.place(100, 100, 300, 20), None);
        for (i, a) in p.taken.iter().enumerate() {
            for b in &p.taken[i + 1..] {
                assert!(a.2 <= b.0 || a.0 >= b.2 || a.3 <= b.1 || a.1 >= b.3);
            }
        }
    }
}
