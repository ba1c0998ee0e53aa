//! What the charts show: one [`Panel`] per metric (training loss, validation and prior loss,
//! learning rate, gradient norm) with its curves, its markers (detector events, the best
//! checkpoint, a diverged run's last finite loss) and the legend keys of its line styles.
//! Non-finite values are dropped and long curves thinned here, before any drawing.

use super::load::RunData;
use crate::monitor::detector::{Event, Label};
use crate::monitor::smooth::smooth;

/// The most points (about) kept of one curve; spikes survive the thinning.
const MAX_POINTS: usize = 4000;

/// How a curve is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Stroke {
    /// Thin, translucent: raw per-step values.
    Faint,
    /// The main line.
    Solid,
    Dashed,
}

/// One curve of one run: (step, value) points in step order.
#[derive(Debug, Clone)]
pub(super) struct Series {
    pub run: usize,
    pub stroke: Stroke,
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum MarkKind {
    Event(Label),
    Best,
    LastFinite,
}

/// A marker on a curve at (x, y), with its label text.
#[derive(Debug, Clone)]
pub(super) struct Mark {
    pub run: usize,
    pub kind: MarkKind,
    pub x: f64,
    pub y: f64,
    pub text: String,
}

/// One chart's content.
#[derive(Debug, Clone)]
pub(super) struct Panel {
    /// File stem of the chart.
    pub name: &'static str,
    pub title: &'static str,
    pub y_desc: &'static str,
    pub series: Vec<Series>,
    pub marks: Vec<Mark>,
    /// Style keys for the legend: (stroke, description).
    pub keys: Vec<(Stroke, String)>,
}

impl Panel {
    fn new(
        name: &'static str,
        title: &'static str,
        y_desc: &'static str,
        keys: Vec<(Stroke, String)>,
    ) -> Panel {
        Panel {
            name,
            title,
            y_desc,
            series: vec![],
            marks: vec![],
            keys,
        }
    }

    fn add_series(&mut self, run: usize, stroke: Stroke, points: Vec<(f64, f64)>) {
        self.series.push(Series {
            run,
            stroke,
            points,
        });
    }

    /// Marks `ev` on `curve` (at the curve's value at the event's step), if the curve has
    /// points.
    fn mark_event(&mut self, run: usize, ev: &Event, curve: &[(f64, f64)]) {
        let x = ev.step as f64;
        if let Some(y) = value_at(curve, x) {
            self.marks.push(Mark {
                run,
                kind: MarkKind::Event(ev.label),
                x,
                y,
                text: format!("{} (step {})", ev.label, ev.step),
            });
        }
    }

    /// Whether any curve of the panel is dashed (a prior loss).
    pub fn has_dashed(&self) -> bool {
        self.series.iter().any(|s| s.stroke == Stroke::Dashed)
    }
}

/// How the smoothed curves are described in legends: "smoothed (debiased EMA, window 25
/// steps)", the windows of all runs when they differ.
pub(super) fn smoothing_key(runs: &[RunData]) -> String {
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

/// One run's curves (finite points only, not thinned yet).
struct Curves {
    loss: Vec<(f64, f64)>,
    loss_ema: Vec<(f64, f64)>,
    grad: Vec<(f64, f64)>,
    grad_ema: Vec<(f64, f64)>,
    lr: Vec<(f64, f64)>,
    vals: Vec<(f64, f64)>,
    priors: Vec<(f64, f64)>,
}

impl Curves {
    fn of(run: &RunData) -> Curves {
        let m = &run.metrics;
        let loss = finite(m.iter().map(|r| (r.step as f64, r.loss)));
        let grad = finite(m.iter().map(|r| (r.step as f64, r.grad_norm)));
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
        Curves {
            loss_ema: smooth(&loss, run.smoothing_window),
            grad_ema: smooth(&grad, run.smoothing_window),
            loss,
            grad,
            lr: finite(m.iter().map(|r| (r.step as f64, r.lr))),
            vals,
            priors,
        }
    }
}

/// The four panels while runs are added to them.
struct Builder {
    train: Panel,
    val: Panel,
    lr: Panel,
    grad: Panel,
    any_prior: bool,
}

impl Builder {
    fn new(smoothed: String) -> Builder {
        let per_step = || (Stroke::Faint, "per step".to_string());
        Builder {
            train: Panel::new(
                "train_loss",
                "Training loss",
                "loss (MSE)",
                vec![per_step(), (Stroke::Solid, smoothed.clone())],
            ),
            val: Panel::new(
                "val_loss",
                "Validation and prior loss",
                "loss (MSE)",
                vec![(Stroke::Solid, "validation".into())],
            ),
            lr: Panel::new("lr", "Learning rate", "learning rate", vec![]),
            grad: Panel::new(
                "grad_norm",
                "Gradient norm",
                "gradient norm (L2)",
                vec![per_step(), (Stroke::Solid, smoothed)],
            ),
            any_prior: false,
        }
    }

    /// Adds run number `ri`: its curves, then its markers.
    fn add_run(&mut self, ri: usize, run: &RunData) {
        let c = Curves::of(run);
        self.train
            .add_series(ri, Stroke::Faint, downsample(&c.loss, MAX_POINTS));
        self.train
            .add_series(ri, Stroke::Solid, downsample(&c.loss_ema, MAX_POINTS));
        self.grad
            .add_series(ri, Stroke::Faint, downsample(&c.grad, MAX_POINTS));
        self.grad
            .add_series(ri, Stroke::Solid, downsample(&c.grad_ema, MAX_POINTS));
        self.lr
            .add_series(ri, Stroke::Solid, downsample(&c.lr, MAX_POINTS));
        self.mark_last_finite(ri, run);
        self.any_prior |= !c.priors.is_empty();
        self.mark_analysis(ri, run, &c);
        if !c.vals.is_empty() {
            self.val.add_series(ri, Stroke::Solid, c.vals);
        }
        if !c.priors.is_empty() {
            self.val.add_series(ri, Stroke::Dashed, c.priors);
        }
    }

    /// A diverged run: marks its last finite training loss.
    fn mark_last_finite(&mut self, ri: usize, run: &RunData) {
        let m = &run.metrics;
        let Some(bad) = m.iter().position(|r| !r.loss.is_finite()) else {
            return;
        };
        if let Some(last) = m[..bad].iter().rev().find(|r| r.loss.is_finite()) {
            self.train.marks.push(Mark {
                run: ri,
                kind: MarkKind::LastFinite,
                x: last.step as f64,
                y: last.loss,
                text: format!("last finite loss (step {})", last.step),
            });
        }
    }

    /// The detector's events, each on the curve that shows it, and the best checkpoint.
    fn mark_analysis(&mut self, ri: usize, run: &RunData, c: &Curves) {
        let Some(a) = &run.analysis else { return };
        for ev in &a.events {
            match ev.label {
                Label::Diverged => {
                    self.train.mark_event(ri, ev, &c.loss_ema);
                    if ev.reason.contains("gradient") {
                        self.grad.mark_event(ri, ev, &c.grad_ema);
                    }
                }
                Label::Deconverged => self.val.mark_event(ri, ev, &c.priors),
                Label::Overfitting | Label::Plateaued => self.val.mark_event(ri, ev, &c.vals),
                Label::Converging => {}
            }
        }
        if let (Some(s), Some(v)) = (a.best_step, a.best_val_loss) {
            if v.is_finite() {
                self.val.marks.push(Mark {
                    run: ri,
                    kind: MarkKind::Best,
                    x: s as f64,
                    y: v,
                    text: format!("best (step {s})"),
                });
            }
        }
    }

    /// The panels in chart order; the validation panel only when some run has validations.
    fn finish(self) -> Vec<Panel> {
        let Builder {
            train,
            mut val,
            lr,
            grad,
            any_prior,
        } = self;
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
}

/// The panels of `runs`: `train_loss`, `val_loss` (when any run has validations), `lr` and
/// `grad_norm`, each run's curves in run order.
pub(super) fn build_panels(runs: &[RunData]) -> Vec<Panel> {
    let mut b = Builder::new(smoothing_key(runs));
    for (ri, run) in runs.iter().enumerate() {
        b.add_run(ri, run);
    }
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downsample_keeps_spikes_in_step_order() {
        let mut pts: Vec<(f64, f64)> = (0..1000).map(|i| (i as f64, 1.0)).collect();
        pts[501].1 = 50.0;
        pts[502].1 = -3.0;
        let out = downsample(&pts, 100);
        assert!(out.len() <= 102, "{} points", out.len());
        assert!(out.contains(&(501.0, 50.0)) && out.contains(&(502.0, -3.0)));
        assert!(out.windows(2).all(|w| w[0].0 < w[1].0), "not in step order");
        assert_eq!(downsample(&pts[..10], 100), pts[..10].to_vec());
    }

    #[test]
    fn value_at_takes_the_point_at_or_before() {
        let pts = [(10.0, 1.0), (20.0, 2.0), (30.0, 3.0)];
        assert_eq!(value_at(&pts, 25.0), Some(2.0));
        assert_eq!(value_at(&pts, 30.0), Some(3.0));
        assert_eq!(value_at(&pts, 5.0), Some(1.0));
        assert_eq!(value_at(&[], 5.0), None);
        let f = finite([(1.0, f64::NAN), (2.0, 1.0), (f64::INFINITY, 1.0)].into_iter());
        assert_eq!(f, [(2.0, 1.0)]);
    }
}
