//! Plateau: the best validation loss of the last `plateau_window_steps` steps is not at least
//! `plateau_min_improvement` (relative) below the best one before them.
use super::event::{num, ValPoint};
use super::DetectorConfig;

#[derive(Debug, Clone, Default)]
pub(super) struct Plateau {
    /// On a plateau now (the event fires again only after the loss improved meanwhile).
    pub on: bool,
}

impl Plateau {
    /// Checks the validations so far (`vals`, the newest at `step` included); the reason when
    /// a plateau begins after the warm-up.
    pub fn observe(
        &mut self,
        cfg: &DetectorConfig,
        vals: &[ValPoint],
        step: u64,
        warm: bool,
    ) -> Option<String> {
        let cut = step.checked_sub(cfg.plateau_window_steps)?;
        let best = |recent: bool| {
            vals.iter()
                .filter(|v| (v.step > cut) == recent)
                .min_by(|a, b| a.val.total_cmp(&b.val))
                .copied()
        };
        let (Some(b), Some(r)) = (best(false), best(true)) else {
            return None;
        };
        let improvement = (b.val - r.val) / b.val;
        let stalled = improvement < cfg.plateau_min_improvement;
        if !stalled {
            self.on = false;
            return None;
        }
        if self.on || !warm {
            return None;
        }
        self.on = true;
        Some(format!(
            "validation loss improved by {:.1}% over the last {} steps (best {} at step {} vs {} at step {}), less than {:.1}%",
            improvement * 100.0,
            cfg.plateau_window_steps,
            num(r.val),
            r.step,
            num(b.val),
            b.step,
            cfg.plateau_min_improvement * 100.0
        ))
    }
}
