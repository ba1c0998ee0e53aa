//! What the detector reports: the [`Label`] of a run, the [`Event`]s it fires, its
//! [`Analysis`], and the number formatting of the reason sentences.
use serde::{Deserialize, Serialize};
use std::fmt;

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

/// One validation loss and its step.
#[derive(Debug, Clone, Copy)]
pub(super) struct ValPoint {
    pub step: u64,
    pub val: f64,
}

/// A streak of consecutive bad observations (the patience of a signal).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Streak {
    pub count: u32,
    /// The step of the streak's first observation.
    pub start: u64,
}

impl Streak {
    pub fn hit(&mut self, step: u64) {
        if self.count == 0 {
            self.start = step;
        }
        self.count += 1;
    }
    pub fn reset(&mut self) {
        self.count = 0;
    }
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

pub(super) fn pct(ratio: f64) -> String {
    format!("{:.0}%", ratio * 100.0)
}
