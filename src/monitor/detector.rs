//! The online run-health detector: fed one training step / one validation at a time, it fires
//! [`Event`]s when a run diverges, deconverges (forgets its prior), overfits or plateaus.

use super::smooth::{self, Smoother};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::fmt;

/// Thresholds of the detector. This is the `[monitor]` table of the experiment TOML; every field
/// is optional there and falls back to the default documented on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectorConfig {
    /// Window (time constant, in steps) of the debiased moving average that smooths the
    /// training loss (diffusion losses are very noisy because each step draws random
    /// timesteps); see [`crate::monitor::smooth`]. Default 0: tied to the run's length
    /// (`train.steps / 100`, between 5 and 100 steps).
    pub smoothing_window: u64,
    /// Steps before the training-loss and gradient-norm checks start and before any event can fire
    /// (the EMA and the running statistics settle meanwhile). Non-finite losses are reported even
    /// during warm-up. Default 200.
    pub warmup_steps: u64,
    /// Diverged when the smoothed training loss exceeds this factor times its running minimum
    /// (the minimum is taken from the end of the warm-up on). Default 3.0.
    pub divergence_factor: f64,
    /// Diverged when the gradient norm exceeds this factor times its running median... Default 10.0.
    pub grad_explosion_factor: f64,
    /// ...for this many consecutive steps. Default 3.
    pub grad_explosion_patience: u32,
    /// Number of recent (non-exploded) gradient norms the running median is taken over. Default 200.
    pub grad_median_window: usize,
    /// Deconverged when the prior loss rises more than this fraction above its running minimum...
    /// Default 0.05 (5%).
    pub deconvergence_margin: f64,
    /// ...for this many consecutive validations. Default 3.
    pub deconvergence_patience: u32,
    /// Overfitting when the validation loss rises more than this fraction above its running
    /// minimum while the smoothed training loss has not risen by this fraction since that
    /// minimum (training still improving or flat)... Default 0.05.
    pub overfitting_margin: f64,
    /// ...for this many consecutive validations. Default 3.
    pub overfitting_patience: u32,
    /// Plateaued when the best validation loss of the last `plateau_window_steps` steps is not
    /// at least `plateau_min_improvement` (relative) below the best one before them.
    /// Default 2000 steps.
    pub plateau_window_steps: u64,
    /// See `plateau_window_steps`. Default 0.01 (1%).
    pub plateau_min_improvement: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            smoothing_window: 0,
            warmup_steps: 200,
            divergence_factor: 3.0,
            grad_explosion_factor: 10.0,
            grad_explosion_patience: 3,
            grad_median_window: 200,
            deconvergence_margin: 0.05,
            deconvergence_patience: 3,
            overfitting_margin: 0.05,
            overfitting_patience: 3,
            plateau_window_steps: 2000,
            plateau_min_improvement: 0.01,
        }
    }
}

impl DetectorConfig {
    /// Checks that the thresholds make sense (factors above 1, margins positive, ...).
    pub fn validate(&self) -> anyhow::Result<()> {
        use anyhow::ensure;
        ensure!(
            self.divergence_factor > 1.0,
            "monitor.divergence_factor must be > 1, got {}",
            self.divergence_factor
        );
        ensure!(
            self.grad_explosion_factor > 1.0,
            "monitor.grad_explosion_factor must be > 1, got {}",
            self.grad_explosion_factor
        );
        ensure!(
            self.deconvergence_margin > 0.0 && self.overfitting_margin > 0.0,
            "monitor margins must be > 0"
        );
        ensure!(
            self.grad_explosion_patience >= 1
                && self.deconvergence_patience >= 1
                && self.overfitting_patience >= 1,
            "monitor patiences must be >= 1"
        );
        ensure!(
            self.grad_median_window >= 1,
            "monitor.grad_median_window must be >= 1"
        );
        ensure!(
            self.plateau_min_improvement >= 0.0,
            "monitor.plateau_min_improvement must be >= 0"
        );
        Ok(())
    }
}

/// The health of a run, from least to most severe (the derived order is the severity order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    Converging,
    Plateaued,
    Overfitting,
    Deconverged,
    Diverged,
}

impl Label {
    /// The lowercase name, as in JSON and CSV output.
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Converging => "converging",
            Label::Plateaued => "plateaued",
            Label::Overfitting => "overfitting",
            Label::Deconverged => "deconverged",
            Label::Diverged => "diverged",
        }
    }

    /// True for the labels after which checkpoints should not be trusted
    /// (overfitting, deconverged, diverged).
    pub fn is_bad(self) -> bool {
        self >= Label::Overfitting
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something the detector noticed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub label: Label,
    /// Where the problem began: the first step / validation of the streak that confirmed it
    /// (the event itself fires when the patience is reached, which may be later; the reason
    /// sentence says when).
    pub step: u64,
    /// A sentence with the numbers behind the event.
    pub reason: String,
}

/// The detector's verdict on a run so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    /// The most severe of the diverged / deconverged / overfitting events; otherwise `plateaued`
    /// if the validation loss is on a plateau now, else `converging`.
    pub label: Label,
    /// All events, in the order they fired.
    pub events: Vec<Event>,
    /// Step of the lowest validation loss before the first diverged / deconverged / overfitting
    /// event: the checkpoint to keep.
    pub best_step: Option<u64>,
    pub best_val_loss: Option<f64>,
    /// Last step seen (training or validation).
    pub last_step: Option<u64>,
    /// Number of training steps and validations seen.
    pub train_steps: u64,
    pub validations: u64,
    /// Smoothed training loss at the last finite step.
    pub final_smoothed_loss: Option<f64>,
    /// Lowest prior loss and its step (None without a prior set).
    pub min_prior_loss: Option<f64>,
    pub min_prior_step: Option<u64>,
    /// Last step with a finite training loss (marks where a diverged run broke).
    pub last_finite_step: Option<u64>,
}

#[derive(Debug, Clone)]
struct ValPoint {
    step: u64,
    val: f64,
}

/// A streak of consecutive bad observations.
#[derive(Debug, Clone, Copy, Default)]
struct Streak {
    count: u32,
    start: u64,
}

impl Streak {
    fn hit(&mut self, step: u64) {
        if self.count == 0 {
            self.start = step;
        }
        self.count += 1;
    }
    fn reset(&mut self) {
        self.count = 0;
    }
}

/// Online run-health detector. Feed it every training step with [`Detector::observe_train`] and
/// every validation with [`Detector::observe_validation`], in step order; offline analysis
/// ([`crate::monitor::analyze_run`]) replays the CSVs through the same code.
#[derive(Debug, Clone)]
pub struct Detector {
    cfg: DetectorConfig,
    events: Vec<Event>,
    fired_diverged: bool,
    fired_deconverged: bool,
    fired_overfitting: bool,
    plateaued: bool,
    // training
    train_steps: u64,
    last_step: Option<u64>,
    smoother: Smoother,
    ema: Option<f64>,
    ema_min: Option<(f64, u64)>,
    last_finite: Option<(u64, f64)>,
    grad_window: VecDeque<f64>,
    grad_streak: Streak,
    grad_peak: f64,
    // validation
    vals: Vec<ValPoint>,
    val_min: Option<(f64, u64)>,
    ema_at_val_min: Option<f64>,
    prior_min: Option<(f64, u64)>,
    deconv_streak: Streak,
    overfit_streak: Streak,
}

/// Formats a loss-like value with 4 significant digits, switching to scientific notation for
/// very small or large magnitudes.
pub(crate) fn num(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        format!("{v:.3e}")
    } else {
        let digits = if a == 0.0 {
            3
        } else {
            (3 - a.log10().floor() as i32).clamp(0, 6) as usize
        };
        format!("{v:.digits$}")
    }
}

fn pct(ratio: f64) -> String {
    format!("{:.0}%", ratio * 100.0)
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
        let smoother = Smoother::new(smooth::window(cfg.smoothing_window, 10_000));
        Detector {
            smoother,
            cfg,
            events: Vec::new(),
            fired_diverged: false,
            fired_deconverged: false,
            fired_overfitting: false,
            plateaued: false,
            train_steps: 0,
            last_step: None,
            ema: None,
            ema_min: None,
            last_finite: None,
            grad_window: VecDeque::new(),
            grad_streak: Streak::default(),
            grad_peak: 0.0,
            vals: Vec::new(),
            val_min: None,
            ema_at_val_min: None,
            prior_min: None,
            deconv_streak: Streak::default(),
            overfit_streak: Streak::default(),
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

    fn grad_median(&self) -> Option<f64> {
        if self.grad_window.is_empty() {
            return None;
        }
        let mut v: Vec<f64> = self.grad_window.iter().copied().collect();
        let mid = v.len() / 2;
        let (_, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
        Some(*m)
    }

    /// Feeds one optimisation step. Returns an event only when a new one fires.
    pub fn observe_train(&mut self, step: u64, loss: f64, grad_norm: f64) -> Option<Event> {
        self.train_steps += 1;
        self.note_step(step);
        if !loss.is_finite() {
            let last = match self.last_finite {
                Some((s, l)) => format!(" (last finite loss {} at step {s})", num(l)),
                None => String::new(),
            };
            return self.diverged(
                step,
                format!("training loss is {loss} at step {step}{last}"),
            );
        }
        self.last_finite = Some((step, loss));
        let ema = self.smoother.push(loss);
        self.ema = Some(ema);
        if !grad_norm.is_finite() {
            return self.diverged(step, format!("gradient norm is {grad_norm} at step {step}"));
        }
        let warm = step >= self.cfg.warmup_steps;
        if warm && self.val_min.is_some() && self.ema_at_val_min.is_none() {
            // The best validation so far came before any settled training loss (e.g. the
            // validation at step 0): compare later training losses with the first settled one.
            self.ema_at_val_min = Some(ema);
        }

        // Gradient explosion: far above the running median of recent normal gradient norms.
        let mut event = None;
        let median = self.grad_median();
        let exploded = match median {
            Some(m) if warm && self.grad_window.len() >= self.cfg.grad_median_window.min(20) => {
                grad_norm > self.cfg.grad_explosion_factor * m
            }
            _ => false,
        };
        if exploded {
            if self.grad_streak.count == 0 {
                self.grad_peak = 0.0;
            }
            self.grad_streak.hit(step);
            self.grad_peak = self.grad_peak.max(grad_norm);
            if self.grad_streak.count >= self.cfg.grad_explosion_patience {
                let m = median.unwrap_or(f64::NAN);
                let reason = format!(
                    "gradient norm reached {} ({:.0}x its running median {}) for {} consecutive steps (steps {}-{step})",
                    num(self.grad_peak),
                    self.grad_peak / m,
                    num(m),
                    self.grad_streak.count,
                    self.grad_streak.start,
                );
                let start = self.grad_streak.start;
                event = self.diverged(start, reason);
            }
        } else {
            self.grad_streak.reset();
            self.grad_window.push_back(grad_norm);
            while self.grad_window.len() > self.cfg.grad_median_window {
                self.grad_window.pop_front();
            }
        }

        // Loss spike: the smoothed loss far above its running minimum.
        if warm {
            match self.ema_min {
                Some((m, _)) if ema >= m => {}
                _ => self.ema_min = Some((ema, step)),
            }
            let (m, m_step) = self.ema_min.expect("set above");
            if ema > self.cfg.divergence_factor * m && event.is_none() {
                event = self.diverged(
                    step,
                    format!(
                        "smoothed training loss {} is {:.1}x its minimum {} (step {m_step}) at step {step}",
                        num(ema),
                        ema / m,
                        num(m)
                    ),
                );
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
        if !val_loss.is_finite() {
            return self.diverged(
                step,
                format!("validation loss is {val_loss} at step {step}"),
            );
        }
        if let Some(p) = prior_loss.filter(|p| !p.is_finite()) {
            return self.diverged(step, format!("prior loss is {p} at step {step}"));
        }
        let warm = step >= self.cfg.warmup_steps;
        let mut fired: Vec<Event> = Vec::new();

        // Deconvergence: the prior (forgetting) loss rising above its running minimum.
        if let Some(p) = prior_loss {
            match self.prior_min {
                Some((m, m_step)) if p > m * (1.0 + self.cfg.deconvergence_margin) => {
                    self.deconv_streak.hit(step);
                    if warm
                        && !self.fired_deconverged
                        && self.deconv_streak.count >= self.cfg.deconvergence_patience
                    {
                        self.fired_deconverged = true;
                        let reason = format!(
                            "prior loss {} is {} above its minimum {} (step {m_step}) for {} validations (steps {}-{step})",
                            num(p),
                            pct(p / m - 1.0),
                            num(m),
                            self.deconv_streak.count,
                            self.deconv_streak.start
                        );
                        let start = self.deconv_streak.start;
                        fired.extend(self.fire(Label::Deconverged, start, reason));
                    }
                }
                Some((m, _)) => {
                    self.deconv_streak.reset();
                    if p < m {
                        self.prior_min = Some((p, step));
                    }
                }
                None => self.prior_min = Some((p, step)),
            }
        }

        // Overfitting: validation loss rising above its minimum while training loss goes down.
        match self.val_min {
            Some((m, m_step)) if val_loss > m * (1.0 + self.cfg.overfitting_margin) => {
                // "Training keeps improving": the smoothed training loss has not risen by the margin
                // since the validation minimum (the EMA itself is noisy, so a strict decrease would
                // flicker). When both losses rise together the run is degrading, not overfitting.
                let train_falling = matches!(
                    (self.ema, self.ema_at_val_min),
                    (Some(now), Some(then)) if now < then * (1.0 + self.cfg.overfitting_margin)
                );
                if train_falling {
                    self.overfit_streak.hit(step);
                } else {
                    self.overfit_streak.reset();
                }
                if warm
                    && train_falling
                    && !self.fired_overfitting
                    && self.overfit_streak.count >= self.cfg.overfitting_patience
                {
                    self.fired_overfitting = true;
                    let reason = format!(
                        "validation loss {} is {} above its minimum {} (step {m_step}) for {} validations (steps {}-{step}) while the smoothed training loss went from {} to {}",
                        num(val_loss),
                        pct(val_loss / m - 1.0),
                        num(m),
                        self.overfit_streak.count,
                        self.overfit_streak.start,
                        num(self.ema_at_val_min.unwrap_or(f64::NAN)),
                        num(self.ema.unwrap_or(f64::NAN)),
                    );
                    let start = self.overfit_streak.start;
                    fired.extend(self.fire(Label::Overfitting, start, reason));
                }
            }
            Some((m, _)) => {
                self.overfit_streak.reset();
                if val_loss < m {
                    self.val_min = Some((val_loss, step));
                    self.ema_at_val_min = self.ema;
                }
            }
            None => {
                self.val_min = Some((val_loss, step));
                self.ema_at_val_min = self.ema;
            }
        }
        self.vals.push(ValPoint {
            step,
            val: val_loss,
        });

        // Plateau: no meaningful improvement over the last window.
        if let Some(cut) = step.checked_sub(self.cfg.plateau_window_steps) {
            let before = self
                .vals
                .iter()
                .filter(|v| v.step <= cut)
                .min_by(|a, b| a.val.total_cmp(&b.val))
                .cloned();
            let recent = self
                .vals
                .iter()
                .filter(|v| v.step > cut)
                .min_by(|a, b| a.val.total_cmp(&b.val))
                .cloned();
            if let (Some(b), Some(r)) = (before, recent) {
                let improvement = (b.val - r.val) / b.val;
                let stalled = improvement < self.cfg.plateau_min_improvement;
                if stalled && !self.plateaued && warm {
                    self.plateaued = true;
                    let reason = format!(
                        "validation loss improved by {:.1}% over the last {} steps (best {} at step {} vs {} at step {}), less than {:.1}%",
                        improvement * 100.0,
                        self.cfg.plateau_window_steps,
                        num(r.val),
                        r.step,
                        num(b.val),
                        b.step,
                        self.cfg.plateau_min_improvement * 100.0
                    );
                    fired.extend(self.fire(Label::Plateaued, step, reason));
                } else if !stalled {
                    self.plateaued = false;
                }
            }
        }
        fired.into_iter().max_by_key(|e| e.label)
    }

    /// The verdict so far (see [`Analysis`]).
    pub fn analysis(&self) -> Analysis {
        let severe = self
            .events
            .iter()
            .filter(|e| e.label.is_bad())
            .map(|e| e.label)
            .max();
        let label = severe.unwrap_or(if self.plateaued {
            Label::Plateaued
        } else {
            Label::Converging
        });
        let first_bad = self
            .events
            .iter()
            .filter(|e| e.label.is_bad())
            .map(|e| e.step)
            .min();
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
            min_prior_loss: self.prior_min.map(|p| p.0),
            min_prior_step: self.prior_min.map(|p| p.1),
            last_finite_step: self.last_finite.map(|l| l.0),
        }
    }
}
