//! Deconvergence: the prior (forgetting) loss rising above its running minimum for several
//! consecutive validations: the model is losing what it knew before fine-tuning.
use super::event::{num, pct, Streak};
use super::DetectorConfig;

#[derive(Debug, Clone, Default)]
pub(super) struct Deconvergence {
    /// The lowest prior loss and its step.
    pub min: Option<(f64, u64)>,
    streak: Streak,
    fired: bool,
}

impl Deconvergence {
    /// Feeds one finite prior loss; the first step of the streak and the reason the first
    /// time the streak reaches `deconvergence_patience` after the warm-up.
    pub fn observe(
        &mut self,
        cfg: &DetectorConfig,
        step: u64,
        prior: f64,
        warm: bool,
    ) -> Option<(u64, String)> {
        let Some((m, m_step)) = self.min else {
            self.min = Some((prior, step));
            return None;
        };
        if prior <= m * (1.0 + cfg.deconvergence_margin) {
            self.streak.reset();
            if prior < m {
                self.min = Some((prior, step));
            }
            return None;
        }
        self.streak.hit(step);
        if !warm || self.fired || self.streak.count < cfg.deconvergence_patience {
            return None;
        }
        self.fired = true;
        let reason = format!(
            "prior loss {} is {} above its minimum {} (step {m_step}) for {} validations (steps {}-{step})",
            num(prior),
            pct(prior / m - 1.0),
            num(m),
            self.streak.count,
            self.streak.start
        );
        Some((self.streak.start, reason))
    }
}
