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

use crate::monitor::data::{read_metrics, MetricsRow, Validation};
use crate::monitor::detector::{Analysis, DetectorConfig, Label};
use crate::monitor::run::{
    find_runs, read_run_validation, run_detector_config, run_id, run_learning_rate, ANALYSIS_JSON,
    METRICS_CSV,
};
use crate::monitor::smooth::smooth;
use anyhow::{anyhow, Context, Result};
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

pub mod compare;

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

/// Everything plotted for one run.
#[derive(Debug, Clone)]
pub struct RunData {
    /// Legend label: the sweep point id or the folder name.
    pub label: String,
    pub dir: PathBuf,
    pub metrics: Vec<MetricsRow>,
    pub validation: Option<Validation>,
    /// The detector's verdict (from `analysis.json`), for the event and best-checkpoint markers.
    pub analysis: Option<Analysis>,
    /// Window (steps) of the smoothed loss and gradient-norm curves: the detector's.
    pub smoothing_window: u64,
}

impl RunData {
    /// Reads a run folder: `metrics.csv` (required), `validation.csv` and `analysis.json` (when
    /// present; run [`crate::monitor::analyze_run`] first to get the markers).
    pub fn load(run_dir: &Path) -> Result<RunData> {
        let metrics = read_metrics(&run_dir.join(METRICS_CSV))?;
        let validation = read_run_validation(run_dir)?;
        let path = run_dir.join(ANALYSIS_JSON);
        let analysis = if path.exists() {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Some(
                serde_json::from_str(&text)
                    .with_context(|| format!("{}: invalid analysis", path.display()))?,
            )
        } else {
            None
        };
        let smoothing_window =
            run_detector_config(run_dir, &metrics, &DetectorConfig::default())?.smoothing_window;
        Ok(RunData {
            label: run_id(run_dir),
            dir: run_dir.to_path_buf(),
            metrics,
            validation,
            analysis,
            smoothing_window,
        })
    }
}

/// Loads every run of an experiment folder (or the single run of a run folder), ordered by
/// learning rate when every run has one, else by name.
pub fn load_runs(dir: &Path) -> Result<Vec<RunData>> {
    let mut runs = Vec::new();
    let mut lrs = Vec::new();
    for d in find_runs(dir)? {
        lrs.push(run_learning_rate(&d).ok().flatten());
        runs.push(RunData::load(&d)?);
    }
    if lrs.iter().all(Option::is_some) {
        let mut pairs: Vec<(f64, RunData)> = lrs.into_iter().flatten().zip(runs).collect();
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        runs = pairs.into_iter().map(|p| p.1).collect();
    }
    Ok(runs)
}

/// Draws `$body` on a PNG or SVG drawing area and writes the file `$path` whole (temp +
/// rename: a full disk leaves no half chart). A macro because the drawing code is generic over
/// the backend type.
macro_rules! render {
    ($path:expr, $format:expr, $size:expr, |$root:ident| $body:expr) => {{
        let run = || -> Result<()> {
            let path: &Path = $path;
            let (w, h): (u32, u32) = $size;
            match $format {
                Format::Png => {
                    let mut buf = vec![0u8; (w * h * 3) as usize];
                    {
                        let $root =
                            BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
                        $body?;
                        $root.present().map_err(plot_err)?;
                    }
                    let img =
                        image::RgbImage::from_raw(w, h, buf).expect("buffer of the chart's size");
                    crate::imageio::save_png(path, &img)?;
                }
                Format::Svg => {
                    let mut svg = String::new();
                    {
                        let $root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
                        $body?;
                        $root.present().map_err(plot_err)?;
                    }
                    crate::fsutil::write_atomic(path, svg.as_bytes())?;
                }
            }
            Ok(())
        };
        run()
    }};
}

/// Writes the charts of `runs` into `out_dir` (created if needed) in each of `formats`, and
/// returns the paths written: `train_loss`, `val_loss` (if any run has validations), `lr`,
/// `grad_norm` and `overview`, each with the format's extension.
pub fn plot_runs(runs: &[RunData], out_dir: &Path, formats: &[Format]) -> Result<Vec<PathBuf>> {
    anyhow::ensure!(!runs.is_empty(), "nothing to plot: no runs");
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let panels = build_panels(runs);
    let mut written = Vec::new();
    for &format in formats {
        for panel in &panels {
            let path = out_dir.join(format!("{}.{}", panel.name, format.extension()));
            render!(&path, format, CHART_SIZE, |root| draw_single(
                &root, panel, runs
            ))
            .with_context(|| format!("cannot plot {}", path.display()))?;
            written.push(path);
        }
        let path = out_dir.join(format!("overview.{}", format.extension()));
        render!(&path, format, OVERVIEW_SIZE, |root| draw_overview(
            &root, &panels, runs
        ))
        .with_context(|| format!("cannot plot {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e:?}")
}

// ---------------------------------------------------------------------------------------------
// What to draw

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stroke {
    /// Thin, translucent: raw per-step values.
    Faint,
    /// The main line.
    Solid,
    Dashed,
}

#[derive(Debug, Clone)]
struct Series {
    run: usize,
    stroke: Stroke,
    points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum MarkKind {
    Event(Label),
    Best,
    LastFinite,
}

#[derive(Debug, Clone)]
struct Mark {
    run: usize,
    kind: MarkKind,
    x: f64,
    y: f64,
    text: String,
}

#[derive(Debug, Clone)]
struct Panel {
    name: &'static str,
    title: &'static str,
    y_desc: &'static str,
    series: Vec<Series>,
    marks: Vec<Mark>,
    /// Style keys for the legend: (stroke, description).
    keys: Vec<(Stroke, String)>,
}

/// How the smoothed curves are described in legends: "smoothed (debiased EMA, window 25
/// steps)", the windows of all runs when they differ.
fn smoothing_key(runs: &[RunData]) -> String {
    let mut w: Vec<u64> = runs.iter().map(|r| r.smoothing_window).collect();
    w.sort_unstable();
    w.dedup();
    let list: Vec<String> = w.iter().map(u64::to_string).collect();
    format!("smoothed (debiased EMA, window {} steps)", list.join("/"))
}

/// Keeps at most about `max` points, preserving each bucket's minimum and maximum (so spikes
/// stay visible).
fn downsample(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max {
        return points.to_vec();
    }
    let bucket = points.len().div_ceil(max / 2);
    let mut out = Vec::with_capacity(max + 2);
    for chunk in points.chunks(bucket) {
        let lo = chunk.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
        let hi = chunk.iter().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
        if lo.0 <= hi.0 {
            out.push(*lo);
            if hi != lo {
                out.push(*hi);
            }
        } else {
            out.push(*hi);
            out.push(*lo);
        }
    }
    out
}

fn finite(points: impl Iterator<Item = (f64, f64)>) -> Vec<(f64, f64)> {
    points
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .collect()
}

/// The y value of the curve at (or just before) `x`.
fn value_at(points: &[(f64, f64)], x: f64) -> Option<f64> {
    let i = points.partition_point(|p| p.0 <= x);
    if i > 0 {
        Some(points[i - 1].1)
    } else {
        points.first().map(|p| p.1)
    }
}

fn build_panels(runs: &[RunData]) -> Vec<Panel> {
    let key = smoothing_key(runs);
    let mut train = Panel {
        name: "train_loss",
        title: "Training loss",
        y_desc: "loss (MSE)",
        series: vec![],
        marks: vec![],
        keys: vec![
            (Stroke::Faint, "per step".into()),
            (Stroke::Solid, key.clone()),
        ],
    };
    let mut val = Panel {
        name: "val_loss",
        title: "Validation and prior loss",
        y_desc: "loss (MSE)",
        series: vec![],
        marks: vec![],
        keys: vec![(Stroke::Solid, "validation".into())],
    };
    let mut lr = Panel {
        name: "lr",
        title: "Learning rate",
        y_desc: "learning rate",
        series: vec![],
        marks: vec![],
        keys: vec![],
    };
    let mut grad = Panel {
        name: "grad_norm",
        title: "Gradient norm",
        y_desc: "gradient norm (L2)",
        series: vec![],
        marks: vec![],
        keys: vec![(Stroke::Faint, "per step".into()), (Stroke::Solid, key)],
    };
    let mut any_prior = false;
    for (ri, run) in runs.iter().enumerate() {
        let m = &run.metrics;
        let loss = finite(m.iter().map(|r| (r.step as f64, r.loss)));
        let loss_ema = smooth(&loss, run.smoothing_window);
        let gn = finite(m.iter().map(|r| (r.step as f64, r.grad_norm)));
        let gn_ema = smooth(&gn, run.smoothing_window);
        train.series.push(Series {
            run: ri,
            stroke: Stroke::Faint,
            points: downsample(&loss, 4000),
        });
        train.series.push(Series {
            run: ri,
            stroke: Stroke::Solid,
            points: downsample(&loss_ema, 4000),
        });
        grad.series.push(Series {
            run: ri,
            stroke: Stroke::Faint,
            points: downsample(&gn, 4000),
        });
        grad.series.push(Series {
            run: ri,
            stroke: Stroke::Solid,
            points: downsample(&gn_ema, 4000),
        });
        lr.series.push(Series {
            run: ri,
            stroke: Stroke::Solid,
            points: downsample(&finite(m.iter().map(|r| (r.step as f64, r.lr))), 4000),
        });
        // A diverged run: mark its last finite training loss.
        if let Some(bad) = m.iter().position(|r| !r.loss.is_finite()) {
            if let Some(last) = m[..bad].iter().rev().find(|r| r.loss.is_finite()) {
                train.marks.push(Mark {
                    run: ri,
                    kind: MarkKind::LastFinite,
                    x: last.step as f64,
                    y: last.loss,
                    text: format!("last finite loss (step {})", last.step),
                });
            }
        }
        let (vals, priors) = match &run.validation {
            Some(v) => (
                finite(v.rows.iter().map(|r| (r.step as f64, r.val_loss))),
                finite(
                    v.rows
                        .iter()
                        .filter_map(|r| r.prior_loss.map(|p| (r.step as f64, p))),
                ),
            ),
            None => (vec![], vec![]),
        };
        any_prior |= !priors.is_empty();
        if let Some(a) = &run.analysis {
            for ev in &a.events {
                let x = ev.step as f64;
                let text = format!("{} (step {})", ev.label, ev.step);
                let mark = |panel: &mut Panel, curve: &[(f64, f64)]| {
                    if let Some(y) = value_at(curve, x) {
                        panel.marks.push(Mark {
                            run: ri,
                            kind: MarkKind::Event(ev.label),
                            x,
                            y,
                            text: text.clone(),
                        });
                    }
                };
                match ev.label {
                    Label::Diverged => {
                        mark(&mut train, &loss_ema);
                        if ev.reason.contains("gradient") {
                            mark(&mut grad, &gn_ema);
                        }
                    }
                    Label::Deconverged => mark(&mut val, &priors),
                    Label::Overfitting | Label::Plateaued => mark(&mut val, &vals),
                    Label::Converging => {}
                }
            }
            if let (Some(s), Some(v)) = (a.best_step, a.best_val_loss) {
                if v.is_finite() {
                    val.marks.push(Mark {
                        run: ri,
                        kind: MarkKind::Best,
                        x: s as f64,
                        y: v,
                        text: format!("best (step {s})"),
                    });
                }
            }
        }
        if !vals.is_empty() {
            val.series.push(Series {
                run: ri,
                stroke: Stroke::Solid,
                points: vals,
            });
        }
        if !priors.is_empty() {
            val.series.push(Series {
                run: ri,
                stroke: Stroke::Dashed,
                points: priors,
            });
        }
    }
    if any_prior {
        val.keys.push((Stroke::Dashed, "prior (forgetting)".into()));
    } else {
        val.title = "Validation loss";
    }
    let mut panels = vec![train];
    if !val.series.is_empty() {
        panels.push(val);
    }
    panels.push(lr);
    panels.push(grad);
    panels
}

// ---------------------------------------------------------------------------------------------
// Drawing

const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn run_color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

fn mark_color(kind: MarkKind) -> RGBColor {
    match kind {
        MarkKind::Event(Label::Diverged) | MarkKind::LastFinite => RGBColor(178, 0, 0),
        MarkKind::Event(Label::Deconverged) => RGBColor(128, 0, 128),
        MarkKind::Event(Label::Overfitting) => RGBColor(190, 90, 0),
        MarkKind::Event(_) => RGBColor(80, 80, 80),
        MarkKind::Best => RGBColor(0, 110, 0),
    }
}

const FONT: &str = "sans-serif";

/// Sizes (in pixels) that scale with the image.
#[derive(Clone, Copy)]
struct Sizes {
    title: f64,
    axis: f64,
    tick: f64,
    note: f64,
}

const CHART_SIZES: Sizes = Sizes {
    title: 34.0,
    axis: 24.0,
    tick: 19.0,
    note: 18.0,
};

/// Y axis: linear, or log10 of the values.
#[derive(Clone, Copy)]
struct YAxis {
    log: bool,
    lo: f64,
    hi: f64,
}

impl YAxis {
    fn fit(panel: &Panel) -> YAxis {
        let ys = || {
            panel
                .series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.1))
        };
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        let mut min_pos = f64::INFINITY;
        for y in ys() {
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

    fn map(&self, y: f64) -> Option<f64> {
        if self.log {
            (y > 0.0).then(|| y.log10())
        } else {
            Some(y)
        }
    }

    fn desc(&self, base: &str) -> String {
        if self.log {
            format!("{base}, log scale")
        } else {
            base.to_string()
        }
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

fn step_tick(v: f64) -> String {
    if v.abs() >= 10000.0 && (v / 1000.0).fract().abs() < 1e-9 {
        format!("{}k", (v / 1000.0).round() as i64)
    } else {
        format!("{}", v.round() as i64)
    }
}

/// Keeps annotation boxes apart.
struct Placer {
    taken: Vec<(i32, i32, i32, i32)>,
    bounds: (i32, i32, i32, i32),
}

impl Placer {
    fn free(&self, r: (i32, i32, i32, i32)) -> bool {
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
    let x_max = panel
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(0.0f64, f64::max)
        .max(1.0);
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, sz.title).into_font())
        .margin(18)
        .margin_right(30)
        .x_label_area_size((sz.axis * 2.6) as i32)
        .y_label_area_size((sz.axis * 4.6) as i32)
        .build_cartesian_2d(0.0..x_max * 1.01, y.lo..y.hi)
        .map_err(plot_err)?;
    let log = y.log;
    let y_fmt = move |v: &f64| {
        if log {
            tick(10f64.powf(*v), 2)
        } else {
            tick(*v, 4)
        }
    };
    let x_fmt = |v: &f64| step_tick(*v);
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc(y.desc(panel.y_desc))
        .axis_desc_style((FONT, sz.axis))
        .label_style((FONT, sz.tick))
        .x_labels(8)
        .y_labels(8)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(205, 205, 205))
        .draw()
        .map_err(plot_err)?;

    // Faint lines first so that the solid ones stay on top.
    let mut order: Vec<&Series> = panel.series.iter().collect();
    order.sort_by_key(|s| s.stroke != Stroke::Faint);
    for s in order {
        let color = run_color(s.run);
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter_map(|&(px, py)| y.map(py).map(|py| (px, py)))
            .collect();
        match s.stroke {
            Stroke::Faint => {
                chart
                    .draw_series(LineSeries::new(pts, color.mix(0.22).stroke_width(1)))
                    .map_err(plot_err)?;
            }
            Stroke::Solid => {
                let single = pts.len() < 60;
                chart
                    .draw_series(LineSeries::new(pts.clone(), color.stroke_width(3)))
                    .map_err(plot_err)?;
                if single {
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
                if pts.len() < 60 {
                    chart
                        .draw_series(pts.iter().map(|&p| {
                            EmptyElement::at(p) + Rectangle::new([(-4, -4), (4, 4)], color.filled())
                        }))
                        .map_err(plot_err)?;
                }
            }
        }
    }

    // Marks: event markers, best checkpoint, last finite point; labels placed without overlap.
    let (xr, yr) = chart.plotting_area().get_pixel_range();
    let mut placer = Placer {
        taken: vec![],
        bounds: (xr.start + 4, yr.start + 4, xr.end - 4, yr.end - 4),
    };
    let style = TextStyle::from((FONT, sz.note).into_font());
    let mut marks: Vec<&Mark> = panel.marks.iter().collect();
    // Most important first, so that they get the best spots.
    marks.sort_by_key(|m| match m.kind {
        MarkKind::Event(l) => std::cmp::Reverse(l as i32 + 2),
        MarkKind::LastFinite => std::cmp::Reverse(7),
        MarkKind::Best => std::cmp::Reverse(1),
    });
    let mut anchors = Vec::new();
    for m in &marks {
        let Some(my) = y.map(m.y) else { continue };
        let (px, py) = chart.backend_coord(&(m.x, my));
        anchors.push((px, py));
        placer.taken.push((px - 9, py - 9, px + 9, py + 9));
    }
    for (m, &(px, py)) in marks.iter().zip(&anchors) {
        let color = mark_color(m.kind);
        // The vertical guide at the event's step.
        if let MarkKind::Event(_) = m.kind {
            root.draw(&DashedPathElement::new(
                vec![(px, yr.start), (px, yr.end)],
                6,
                6,
                color.mix(0.45).stroke_width(1),
            ))
            .map_err(plot_err)?;
        }
        match m.kind {
            MarkKind::Best => star(root, (px, py), 14.0, RGBColor(255, 200, 0))?,
            MarkKind::LastFinite => {
                root.draw(&Cross::new((px, py), 10, color.stroke_width(3)))
                    .map_err(plot_err)?;
            }
            MarkKind::Event(_) => {
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
        let text = if runs.len() > 1 {
            format!("{}: {}", runs[m.run].label, m.text)
        } else {
            m.text.clone()
        };
        let (tw, th) = root.estimate_text_size(&text, &style).map_err(plot_err)?;
        let (w, h) = (tw as i32 + 10, th as i32 + 6);
        if let Some((x0, y0)) = placer.place(px, py, w, h) {
            root.draw(&Rectangle::new(
                [(x0, y0), (x0 + w, y0 + h)],
                WHITE.mix(0.85).filled(),
            ))
            .map_err(plot_err)?;
            root.draw(&Rectangle::new(
                [(x0, y0), (x0 + w, y0 + h)],
                color.stroke_width(1),
            ))
            .map_err(plot_err)?;
            root.draw(&Text::new(text, (x0 + 5, y0 + 3), style.color(&color)))
                .map_err(plot_err)?;
        }
    }
    Ok(())
}

/// Draws the legend (one colour per run, then the panel's line styles) into `area`.
fn draw_legend<DB: DrawingBackend>(
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
    area.draw(&Text::new(
        if runs.len() > 1 { "runs" } else { "run" },
        (10, y),
        head.clone(),
    ))
    .map_err(plot_err)?;
    y += line_h;
    let swatch = |y: i32, stroke: Stroke, color: RGBColor| -> Result<()> {
        let mid = y + (sz.note * 0.6) as i32;
        match stroke {
            Stroke::Faint => area.draw(&PathElement::new(
                vec![(12, mid), (58, mid)],
                color.mix(0.35).stroke_width(2),
            )),
            Stroke::Solid => area.draw(&PathElement::new(
                vec![(12, mid), (58, mid)],
                color.stroke_width(4),
            )),
            Stroke::Dashed => area.draw(&DashedPathElement::new(
                vec![(12, mid), (58, mid)],
                10,
                6,
                color.stroke_width(4),
            )),
        }
        .map_err(plot_err)
    };
    for (i, r) in runs.iter().enumerate() {
        swatch(y, Stroke::Solid, run_color(i))?;
        let mut label = r.label.clone();
        if label.chars().count() > max_chars {
            label = label
                .chars()
                .take(max_chars.saturating_sub(1))
                .collect::<String>()
                + "…";
        }
        if let Some(a) = &r.analysis {
            if a.label != Label::Converging {
                label = format!("{label} ({})", a.label);
            }
        }
        area.draw(&Text::new(label, (68, y), style.clone()))
            .map_err(plot_err)?;
        y += line_h;
    }
    if !keys.is_empty() {
        y += line_h / 2;
        area.draw(&Text::new("lines", (10, y), head.clone()))
            .map_err(plot_err)?;
        y += line_h;
        for (stroke, text) in keys {
            swatch(y, *stroke, RGBColor(60, 60, 60))?;
            area.draw(&Text::new(text.as_str(), (68, y), style.clone()))
                .map_err(plot_err)?;
            y += line_h;
        }
    }
    Ok(())
}

fn subject(runs: &[RunData]) -> String {
    if runs.len() == 1 {
        runs[0].label.clone()
    } else {
        format!("sweep of {} runs", runs.len())
    }
}

fn draw_single<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    panel: &Panel,
    runs: &[RunData],
) -> Result<()> {
    root.fill(&WHITE).map_err(plot_err)?;
    let (w, _) = root.dim_in_pixel();
    let (chart_area, legend_area) = root.split_horizontally(w as i32 - 330);
    let title = format!("{} - {}", panel.title, subject(runs));
    draw_panel(root, &chart_area, panel, runs, &title, CHART_SIZES)?;
    draw_legend(&legend_area, runs, &panel.keys, CHART_SIZES, 80)?;
    Ok(())
}

fn draw_overview<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    panels: &[Panel],
    runs: &[RunData],
) -> Result<()> {
    root.fill(&WHITE).map_err(plot_err)?;
    let sz = CHART_SIZES;
    let (w, _) = root.dim_in_pixel();
    let body = root
        .titled(
            &format!("Training overview - {}", subject(runs)),
            (FONT, sz.title * 1.2).into_font(),
        )
        .map_err(plot_err)?;
    let (grid, legend_area) = body.split_horizontally(w as i32 - 360);
    let cells = grid.split_evenly((2, 2));
    for (panel, cell) in panels.iter().zip(&cells) {
        draw_panel(root, cell, panel, runs, panel.title, sz)?;
    }
    // Line styles: solid is the smoothed loss and gradient norm, the value itself for the others.
    let mut keys = vec![
        (Stroke::Faint, "per step (loss, grad norm)".to_string()),
        (
            Stroke::Solid,
            format!("{}, validation, lr", smoothing_key(runs)),
        ),
    ];
    if panels
        .iter()
        .any(|p| p.series.iter().any(|s| s.stroke == Stroke::Dashed))
    {
        keys.push((Stroke::Dashed, "prior (forgetting)".into()));
    }
    draw_legend(&legend_area, runs, &keys, sz, 40)?;
    Ok(())
}
