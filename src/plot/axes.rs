//! Axes: the value range of a panel (the y axis on a log scale when the values span more than
//! 10x), and the tick labels of both axes (also used by the compare chart).

use super::panels::Panel;
use super::style::{plot_err, FONT};
use anyhow::Result;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

/// A chart of step against value (the value's log10 on a log axis).
pub(super) type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Draws the grid and both axes of `chart` as every chart here has them: "step" on x, eight
/// labels a side, light grey grid lines; `log` when the y positions are log10 of the values.
/// `sizes` are the pixel sizes of the axis descriptions and of the tick labels.
pub(super) fn draw_mesh<DB: DrawingBackend>(
    chart: &mut Chart<DB>,
    y_desc: &str,
    log: bool,
    (desc_size, tick_size): (f64, f64),
) -> Result<()> {
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc(y_desc)
        .axis_desc_style((FONT, desc_size))
        .label_style((FONT, tick_size))
        .x_labels(8)
        .y_labels(8)
        .x_label_formatter(&|v| step_tick(*v))
        .y_label_formatter(&|v| y_tick(*v, log))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(205, 205, 205))
        .draw()
        .map_err(plot_err)
}

/// Y axis: linear, or log10 of the values.
#[derive(Clone, Copy)]
pub(super) struct YAxis {
    pub log: bool,
    pub lo: f64,
    pub hi: f64,
}

impl YAxis {
    /// The axis that shows every point of `panel` with a little room: log10 when the largest
    /// value is more than 10x the smallest positive one, else linear (from 0 when nothing is
    /// negative and the padding would cross it); 0..1 for an empty panel.
    pub fn fit(panel: &Panel) -> YAxis {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        let mut min_pos = f64::INFINITY;
        for y in panel
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
        {
            lo = lo.min(y);
            hi = hi.max(y);
            if y > 0.0 {
                min_pos = min_pos.min(y);
            }
        }
        if !lo.is_finite() {
            return YAxis {
                log: false,
                lo: 0.0,
                hi: 1.0,
            };
        }
        if min_pos.is_finite() && hi / min_pos > 10.0 {
            let (l, h) = (min_pos.log10(), hi.log10());
            let pad = ((h - l) * 0.04).max(0.05);
            return YAxis {
                log: true,
                lo: l - pad,
                hi: h + pad,
            };
        }
        let span = hi - lo;
        let pad = if span > 0.0 {
            span * 0.06
        } else if hi != 0.0 {
            hi.abs() * 0.1
        } else {
            1.0
        };
        let lo = if lo >= 0.0 {
            (lo - pad).max(0.0)
        } else {
            lo - pad
        };
        YAxis {
            log: false,
            lo,
            hi: hi + pad,
        }
    }

    /// Where value `y` sits on the axis; `None` for a non-positive value on a log axis.
    pub fn map(&self, y: f64) -> Option<f64> {
        if self.log {
            (y > 0.0).then(|| y.log10())
        } else {
            Some(y)
        }
    }

    /// The axis description: `base`, with ", log scale" on a log axis.
    pub fn desc(&self, base: &str) -> String {
        if self.log {
            format!("{base}, log scale")
        } else {
            base.to_string()
        }
    }
}

/// The x axis's upper end: the last step of any curve of `panel`, at least 1.
pub(super) fn x_max(panel: &Panel) -> f64 {
    panel
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(0.0f64, f64::max)
        .max(1.0)
}

/// The tick label of position `v` on a y axis that is log10 of the values when `log`.
fn y_tick(v: f64, log: bool) -> String {
    if log {
        tick(10f64.powf(v), 2)
    } else {
        tick(v, 4)
    }
}

/// A tick label for a value on the y axis, with at most `sig` significant digits.
fn tick(v: f64, sig: i32) -> String {
    let a = v.abs();
    if a < 1e-12 {
        return "0".into();
    }
    if !(1e-3..1e5).contains(&a) {
        let s = format!("{v:.*e}", (sig - 1).max(0) as usize);
        // "3.0e-6" -> "3e-6"
        let (m, e) = s.split_once('e').unwrap_or((&s, ""));
        let m = if m.contains('.') {
            m.trim_end_matches('0').trim_end_matches('.')
        } else {
            m
        };
        return format!("{m}e{e}");
    }
    let decimals = (sig - 1 - a.log10().floor() as i32).clamp(0, 8) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A tick label for a step: whole thousands from 10000 on as "12k".
fn step_tick(v: f64) -> String {
    if v.abs() >= 10000.0 && (v / 1000.0).fract().abs() < 1e-9 {
        format!("{}k", (v / 1000.0).round() as i64)
    } else {
        format!("{}", v.round() as i64)
    }
}

/// Draws the key of `chart`'s labelled series at `position` in the shared style (white, mostly
/// opaque box, grey border); `symbol_width` is the room left for each entry's line sample.
pub(super) fn draw_series_key<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    position: SeriesLabelPosition,
    font_size: u32,
    symbol_width: Option<u32>,
) -> Result<()> {
    let mut key = chart.configure_series_labels();
    key.position(position)
        .label_font((FONT, font_size))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180));
    if let Some(w) = symbol_width {
        key.legend_area_size(w);
    }
    key.draw().map_err(plot_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::panels::{Series, Stroke};

    fn panel(ys: &[f64]) -> Panel {
        Panel {
            name: "p",
            title: "p",
            y_desc: "v",
            series: vec![Series {
                run: 0,
                stroke: Stroke::Solid,
                points: ys.iter().enumerate().map(|(i, &y)| (i as f64, y)).collect(),
            }],
            marks: vec![],
            keys: vec![],
        }
    }

    #[test]
    fn log_scale_only_past_a_tenfold_span() {
        let lin = YAxis::fit(&panel(&[0.0, 0.5, 1.0]));
        assert!(!lin.log);
        assert_eq!(lin.lo, 0.0, "padding does not cross zero");
        assert!((lin.hi - 1.06).abs() < 1e-12, "{}", lin.hi);
        let neg = YAxis::fit(&panel(&[-1.0, 1.0]));
        assert!((neg.lo - -1.12).abs() < 1e-12 && (neg.hi - 1.12).abs() < 1e-12);
        let log = YAxis::fit(&panel(&[0.0, 0.01, 1.0]));
        assert!(log.log);
        assert!((log.lo - -2.08).abs() < 1e-12 && (log.hi - 0.08).abs() < 1e-12);
        assert_eq!(log.map(0.0), None);
        assert_eq!(log.map(100.0), Some(2.0));
        assert_eq!(log.desc("loss"), "loss, log scale");
        let empty = YAxis::fit(&panel(&[]));
        assert_eq!((empty.log, empty.lo, empty.hi), (false, 0.0, 1.0));
        assert_eq!(x_max(&panel(&[])), 1.0);
    }

    #[test]
    fn tick_labels() {
        assert_eq!(tick(0.0, 4), "0");
        assert_eq!(tick(0.123456, 4), "0.1235");
        assert_eq!(tick(2.5, 4), "2.5");
        assert_eq!(tick(3e-6, 2), "3e-6");
        assert_eq!(tick(1.5e-5, 2), "1.5e-5");
        assert_eq!(y_tick(-5.0, true), "1e-5");
        assert_eq!(y_tick(0.25, false), "0.25");
        assert_eq!(step_tick(12000.0), "12k");
        assert_eq!(step_tick(12500.0), "12500");
        assert_eq!(step_tick(5000.0), "5000");
    }
}
