//! Divergence: a non-finite loss or gradient, or the smoothed training loss far above its
//! running minimum (a loss spike). (A gradient explosion also ends as diverged: see
//! [`super::grad_explosion`].)
use super::event::num;
use super::DetectorConfig;

/// The reason for a non-finite training loss at `step`; `last_finite` is the last finite
/// `(step, loss)`.
pub(super) fn non_finite_loss(step: u64, loss: f64, last_finite: Option<(u64, f64)>) -> String {
    let last = match last_finite {
        Some((s, l)) => format!(" (last finite loss {} at step {s})", num(l)),
        None => String::new(),
    };
    format!("training loss is {loss} at step {step}{last}")
}

/// The reason for a non-finite gradient norm at `step`.
pub(super) fn non_finite_gradient(step: u64, grad_norm: f64) -> String {
    format!("gradient norm is {grad_norm} at step {step}")
}

/// The reason when a validation's loss or prior loss is not finite.
pub(super) fn non_finite_validation(step: u64, val: f64, prior: Option<f64>) -> Option<String> {
    if !val.is_finite() {
        return Some(format!("validation loss is {val} at step {step}"));
    }
    prior
        .filter(|p| !p.is_finite())
        .map(|p| format!("prior loss is {p} at step {step}"))
}

/// The running minimum of the smoothed training loss, taken from the end of the warm-up on.
#[derive(Debug, Clone, Default)]
pub(super) struct LossSpike {
    min: Option<(f64, u64)>,
}

impl LossSpike {
    /// Feeds the smoothed loss of a step after the warm-up; the reason when it is more than
    /// `divergence_factor` times the running minimum.
    pub fn observe(&mut self, cfg: &DetectorConfig, step: u64, ema: f64) -> Option<String> {
        let (m, m_step) = match self.min {
            Some((m, s)) if ema >= m => (m, s),
            _ => {
                self.min = Some((ema, step));
                (ema, step)
            }
        };
        (ema > cfg.divergence_factor * m).then(|| {
            format!(
                "smoothed training loss {} is {:.1}x its minimum {} (step {m_step}) at step {step}",
                num(ema),
                ema / m,
                num(m)
            )
        })
    }
}
