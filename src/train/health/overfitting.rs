//! Overfitting: the validation loss rising above its minimum for several consecutive
//! validations while the smoothed training loss keeps improving (or stays flat).
use super::event::{num, pct, Streak};
use super::DetectorConfig;

#[derive(Debug, Clone, Default)]
pub(super) struct Overfitting {
    /// The lowest validation loss and its step.
    min: Option<(f64, u64)>,
    /// The smoothed training loss when that minimum was seen.
    ema_at_min: Option<f64>,
    streak: Streak,
    fired: bool,
}

impl Overfitting {
    /// Called with each settled (post-warm-up) smoothed training loss: when the best
    /// validation so far came before any settled training loss (e.g. the validation at step
    /// 0), later training losses are compared with the first settled one.
    pub fn settle(&mut self, ema: f64) {
        if self.min.is_some() && self.ema_at_min.is_none() {
            self.ema_at_min = Some(ema);
        }
    }

    /// Feeds one finite validation loss with the current smoothed training loss `ema`; the
    /// first step of the streak and the reason the first time the streak reaches
    /// `overfitting_patience` after the warm-up.
    pub fn observe(
        &mut self,
        cfg: &DetectorConfig,
        step: u64,
        val: f64,
        ema: Option<f64>,
        warm: bool,
    ) -> Option<(u64, String)> {
        let Some((m, m_step)) = self.min else {
            self.min = Some((val, step));
            self.ema_at_min = ema;
            return None;
        };
        if val <= m * (1.0 + cfg.overfitting_margin) {
            self.streak.reset();
            if val < m {
                self.min = Some((val, step));
                self.ema_at_min = ema;
            }
            return None;
        }
        // "Training keeps improving": the smoothed training loss has not risen by the margin
        // since the validation minimum (the EMA itself is noisy, so a strict decrease would
        // flicker). When both losses rise together the run is degrading, not overfitting.
        let train_falling = matches!(
            (ema, self.ema_at_min),
            (Some(now), Some(then)) if now < then * (1.0 + cfg.overfitting_margin)
        );
        if !train_falling {
            self.streak.reset();
            return None;
        }
        self.streak.hit(step);
        if !warm || self.fired || self.streak.count < cfg.overfitting_patience {
            return None;
        }
        self.fired = true;
        let reason = format!(
            "validation loss {} is {} above its minimum {} (step {m_step}) for {} validations (steps {}-{step}) while the smoothed training loss went from {} to {}",
            num(val),
            pct(val / m - 1.0),
            num(m),
            self.streak.count,
            self.streak.start,
            num(self.ema_at_min.unwrap_or(f64::NAN)),
            num(ema.unwrap_or(f64::NAN)),
        );
        Some((self.streak.start, reason))
    }
}
