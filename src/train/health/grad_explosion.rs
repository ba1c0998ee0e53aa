//! Gradient explosion: the gradient norm far above the running median of recent normal norms
//! for several consecutive steps (the run then counts as diverged).
use super::event::{num, Streak};
use super::DetectorConfig;
use std::collections::VecDeque;

#[derive(Debug, Clone, Default)]
pub(super) struct GradExplosion {
    /// Recent non-exploded gradient norms.
    window: VecDeque<f64>,
    streak: Streak,
    /// The largest norm of the current streak.
    peak: f64,
}

impl GradExplosion {
    fn median(&self) -> Option<f64> {
        if self.window.is_empty() {
            return None;
        }
        let mut v: Vec<f64> = self.window.iter().copied().collect();
        let mid = v.len() / 2;
        let (_, m, _) = v.select_nth_unstable_by(mid, f64::total_cmp);
        Some(*m)
    }

    /// Feeds one finite gradient norm; while a streak of `grad_explosion_patience` exploded
    /// steps lasts, returns its first step and the reason.
    pub fn observe(
        &mut self,
        cfg: &DetectorConfig,
        step: u64,
        grad_norm: f64,
        warm: bool,
    ) -> Option<(u64, String)> {
        let median = self.median();
        let exploded = match median {
            Some(m) if warm && self.window.len() >= cfg.grad_median_window.min(20) => {
                grad_norm > cfg.grad_explosion_factor * m
            }
            _ => false,
        };
        if !exploded {
            self.streak.reset();
            self.window.push_back(grad_norm);
            while self.window.len() > cfg.grad_median_window {
                self.window.pop_front();
            }
            return None;
        }
        if self.streak.count == 0 {
            self.peak = 0.0;
        }
        self.streak.hit(step);
        self.peak = self.peak.max(grad_norm);
        if self.streak.count < cfg.grad_explosion_patience {
            return None;
        }
        let m = median.unwrap_or(f64::NAN);
        let reason = format!(
            "gradient norm reached {} ({:.0}x its running median {}) for {} consecutive steps (steps {}-{step})",
            num(self.peak),
            self.peak / m,
            num(m),
            self.streak.count,
            self.streak.start,
        );
        Some((self.streak.start, reason))
    }
}
