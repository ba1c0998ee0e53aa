//! Smoothing of noisy loss curves that does not lag: a *debiased* exponential moving average,
//! as TensorBoard smooths its scalars. A plain EMA started at the first value keeps a large
//! weight on that value (after `n` steps it still weighs `decay^n`), so on a falling loss it sits
//! far above the raw curve for hundreds of steps; the debiased one starts from zero and divides
//! by the weight accumulated so far (`1 - decay^n`), so every step is a proper weighted mean of
//! the values seen, the first one quickly forgotten.
//!
//! The window (the EMA's time constant, in steps) is tied to the run's length unless set:
//! `steps / 100`, between 5 and 100 steps (a 15x loss spike then shows within ~15 steps, and the
//! log-normal noise of diffusion losses is averaged down to a few percent). The detector and the plots use the same smoother.

/// The window for a run of `total_steps` when none is configured.
pub fn auto_window(total_steps: u64) -> u64 {
    (total_steps / 100).clamp(5, 100)
}

/// The window in force: `configured` when it is not 0, else [`auto_window`].
pub fn window(configured: u64, total_steps: u64) -> u64 {
    if configured > 0 {
        configured
    } else {
        auto_window(total_steps)
    }
}

/// A running debiased EMA with a time constant of `window` values.
#[derive(Debug, Clone)]
pub struct Smoother {
    decay: f64,
    biased: f64,
    weight: f64,
}

impl Smoother {
    /// `window` 1 keeps the raw values.
    pub fn new(window: u64) -> Self {
        Self {
            decay: 1.0 - 1.0 / window.max(1) as f64,
            biased: 0.0,
            weight: 0.0,
        }
    }

    /// Adds a (finite) value; returns the smoothed value so far.
    pub fn push(&mut self, v: f64) -> f64 {
        self.biased = self.decay * self.biased + (1.0 - self.decay) * v;
        self.weight = self.decay * self.weight + (1.0 - self.decay);
        self.biased / self.weight
    }

    /// The smoothed value so far (`None` before the first value).
    pub fn value(&self) -> Option<f64> {
        (self.weight > 0.0).then(|| self.biased / self.weight)
    }
}

/// The smoothed curve of `points` (`(step, value)`, non-finite values skipped).
pub fn smooth(points: &[(f64, f64)], window: u64) -> Vec<(f64, f64)> {
    let mut s = Smoother::new(window);
    points
        .iter()
        .filter(|p| p.1.is_finite())
        .map(|&(x, y)| (x, s.push(y)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debiased_average_tracks_a_falling_loss() {
        // A loss falling from 1.0 to 0.2 in the first 20 steps, then flat: after the drop the
        // smoothed curve is within 5% of the raw one within a window or two, where a plain EMA
        // started at the first value would still be far above.
        let pts: Vec<(f64, f64)> = (1..=200)
            .map(|i| (i as f64, if i <= 20 { 1.0 - 0.04 * i as f64 } else { 0.2 }))
            .collect();
        let w = auto_window(200);
        assert_eq!(w, 5);
        let s = smooth(&pts, w);
        assert!((s[35].1 - 0.2).abs() < 0.01, "{:?}", s[35]);
        let mut plain = 1.0;
        for p in &pts[..36] {
            plain = 0.98 * plain + 0.02 * p.1;
        }
        assert!(plain > 0.5, "{plain}");
        // The first value is returned as is, and a constant stays constant.
        let c = smooth(&[(1.0, 3.0), (2.0, 3.0), (3.0, 3.0)], 50);
        assert!(c.iter().all(|p| (p.1 - 3.0).abs() < 1e-12));
        assert_eq!(window(0, 100_000), 100);
        assert_eq!(window(0, 3_000), 30);
        assert_eq!(window(17, 100_000), 17);
    }
}
