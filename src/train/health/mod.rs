//! Run health: the detector that watches a run for divergence, deconvergence (forgetting),
//! overfitting and plateaus. The training loop feeds it online, step by step; `monitor`
//! replays a finished run's CSVs through the same code ([`replay`]), so the offline verdict
//! is the one the run saw.
//!
//! One file per signal, each with its own state and one `observe` function:
//! [`divergence`] (non-finite values, loss spikes), [`grad_explosion`], [`deconvergence`],
//! [`overfitting`], [`plateau`]. [`Detector`] holds what they share (the smoothed training
//! loss, the validations seen, the events) and fires each event once.
mod config;
mod deconvergence;
mod divergence;
mod event;
mod grad_explosion;
mod overfitting;
mod plateau;
pub mod smooth;

pub use config::DetectorConfig;
pub(crate) use event::num;
pub use event::{Analysis, Event, Label};

use super::run_dir::{MetricsRow, Validation};
use event::ValPoint;
use smooth::Smoother;

/// Online run-health detector. Feed it every training step with [`Detector::observe_train`] and
/// every validation with [`Detector::observe_validation`], in step order; offline analysis
/// (`monitor::analyze_run`) replays the CSVs through the same code.
#[derive(Debug, Clone)]
pub struct Detector {
    cfg: DetectorConfig,
    events: Vec<Event>,
    /// A run diverges once: the first of the divergence signals is its event.
    fired_diverged: bool,
    train_steps: u64,
    last_step: Option<u64>,
    smoother: Smoother,
    /// The smoothed training loss.
    ema: Option<f64>,
    last_finite: Option<(u64, f64)>,
    /// Every validation seen.
    vals: Vec<ValPoint>,
    loss_spike: divergence::LossSpike,
    grads: grad_explosion::GradExplosion,
    deconvergence: deconvergence::Deconvergence,
    overfitting: overfitting::Overfitting,
    plateau: plateau::Plateau,
}

impl Detector {
    /// A detector for a run of `total_steps` steps (which sets the smoothing window when the
    /// config leaves it to the run's length).
    pub fn for_run(cfg: DetectorConfig, total_steps: u64) -> Self {
        let mut d = Self::new(cfg);
        d.smoother = Smoother::new(smooth::window(d.cfg.smoothing_window, total_steps));
        d
    }

    /// A detector whose smoothing window is the configured one (or, when that is 0, the
    /// automatic window of a 10,000-step run); prefer [`Detector::for_run`].
    pub fn new(cfg: DetectorConfig) -> Self {
        Detector {
            smoother: Smoother::new(smooth::window(cfg.smoothing_window, 10_000)),
            cfg,
            events: Vec::new(),
            fired_diverged: false,
            train_steps: 0,
            last_step: None,
            ema: None,
            last_finite: None,
            vals: Vec::new(),
            loss_spike: Default::default(),
            grads: Default::default(),
            deconvergence: Default::default(),
            overfitting: Default::default(),
            plateau: Default::default(),
        }
    }

    pub fn config(&self) -> &DetectorConfig {
        &self.cfg
    }

    /// The events fired so far.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The current smoothed training loss.
    pub fn smoothed_loss(&self) -> Option<f64> {
        self.ema
    }

    fn fire(&mut self, label: Label, step: u64, reason: String) -> Option<Event> {
        let ev = Event {
            label,
            step,
            reason,
        };
        self.events.push(ev.clone());
        Some(ev)
    }

    fn diverged(&mut self, step: u64, reason: String) -> Option<Event> {
        if self.fired_diverged {
            return None;
        }
        self.fired_diverged = true;
        self.fire(Label::Diverged, step, reason)
    }

    fn note_step(&mut self, step: u64) {
        self.last_step = Some(self.last_step.map_or(step, |s| s.max(step)));
    }

    /// Feeds one optimisation step. Returns an event only when a new one fires.
    pub fn observe_train(&mut self, step: u64, loss: f64, grad_norm: f64) -> Option<Event> {
        self.train_steps += 1;
        self.note_step(step);
        if !loss.is_finite() {
            let reason = divergence::non_finite_loss(step, loss, self.last_finite);
            return self.diverged(step, reason);
        }
        self.last_finite = Some((step, loss));
        let ema = self.smoother.push(loss);
        self.ema = Some(ema);
        if !grad_norm.is_finite() {
            return self.diverged(step, divergence::non_finite_gradient(step, grad_norm));
        }
        let warm = step >= self.cfg.warmup_steps;
        if warm {
            self.overfitting.settle(ema);
        }
        let mut event = None;
        if let Some((start, reason)) = self.grads.observe(&self.cfg, step, grad_norm, warm) {
            event = self.diverged(start, reason);
        }
        if warm {
            let spike = self.loss_spike.observe(&self.cfg, step, ema);
            if let (Some(reason), None) = (spike, &event) {
                event = self.diverged(step, reason);
            }
        }
        event
    }

    /// Feeds one validation (after the training step `step`). `prior_loss` is `None` when the run
    /// has no prior set. Returns an event only when a new one fires (if several would fire at
    /// once, the most severe is returned; all are recorded).
    pub fn observe_validation(
        &mut self,
        step: u64,
        val_loss: f64,
        prior_loss: Option<f64>,
    ) -> Option<Event> {
        self.note_step(step);
        if let Some(reason) = divergence::non_finite_validation(step, val_loss, prior_loss) {
            return self.diverged(step, reason);
        }
        let warm = step >= self.cfg.warmup_steps;
        let mut fired: Vec<Event> = Vec::new();
        if let Some(p) = prior_loss {
            if let Some((start, reason)) = self.deconvergence.observe(&self.cfg, step, p, warm) {
                fired.extend(self.fire(Label::Deconverged, start, reason));
            }
        }
        let overfit = self
            .overfitting
            .observe(&self.cfg, step, val_loss, self.ema, warm);
        if let Some((start, reason)) = overfit {
            fired.extend(self.fire(Label::Overfitting, start, reason));
        }
        self.vals.push(ValPoint {
            step,
            val: val_loss,
        });
        if let Some(reason) = self.plateau.observe(&self.cfg, &self.vals, step, warm) {
            fired.extend(self.fire(Label::Plateaued, step, reason));
        }
        fired.into_iter().max_by_key(|e| e.label)
    }

    /// The verdict so far (see [`Analysis`]).
    pub fn analysis(&self) -> Analysis {
        let bad = || self.events.iter().filter(|e| e.label.is_bad());
        let severe = bad().map(|e| e.label).max();
        let label = severe.unwrap_or(if self.plateau.on {
            Label::Plateaued
        } else {
            Label::Converging
        });
        let first_bad = bad().map(|e| e.step).min();
        let best = self
            .vals
            .iter()
            .filter(|v| first_bad.is_none_or(|b| v.step < b))
            .min_by(|a, b| a.val.total_cmp(&b.val));
        Analysis {
            label,
            events: self.events.clone(),
            best_step: best.map(|v| v.step),
            best_val_loss: best.map(|v| v.val),
            last_step: self.last_step,
            train_steps: self.train_steps,
            validations: self.vals.len() as u64,
            final_smoothed_loss: self.ema,
            min_prior_loss: self.deconvergence.min.map(|p| p.0),
            min_prior_step: self.deconvergence.min.map(|p| p.1),
            last_finite_step: self.last_finite.map(|l| l.0),
        }
    }
}

/// Feeds `det` a run's metrics and validations in the order the training loop produced them
/// (a validation logged at step `s` follows training step `s`).
pub fn replay(det: &mut Detector, metrics: &[MetricsRow], validation: Option<&Validation>) {
    let vals = validation.map_or(&[][..], |v| &v.rows);
    let mut vi = 0;
    // A step skipped by fp16 loss scaling is neither an update nor a divergence.
    for m in metrics.iter().filter(|m| !m.skipped) {
        while vi < vals.len() && vals[vi].step < m.step {
            det.observe_validation(vals[vi].step, vals[vi].val_loss, vals[vi].prior_loss);
            vi += 1;
        }
        det.observe_train(m.step, m.loss, m.grad_norm);
    }
    for v in &vals[vi..] {
        det.observe_validation(v.step, v.val_loss, v.prior_loss);
    }
}
