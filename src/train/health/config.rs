//! The detector's thresholds: the `[monitor]` table of the experiment TOML.
use serde::{Deserialize, Serialize};

/// Thresholds of the detector. This is the `[monitor]` table of the experiment TOML; every field
/// is optional there and falls back to the default documented on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectorConfig {
    /// Window (time constant, in steps) of the debiased moving average that smooths the
    /// training loss (diffusion losses are very noisy because each step draws random
    /// timesteps); see [`super::smooth`]. Default 0: tied to the run's length
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
