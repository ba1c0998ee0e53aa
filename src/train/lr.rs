//! Learning-rate schedules, as diffusers' `get_scheduler` (transformers' `LambdaLR` factors):
//! the factor for optimisation step `k` (counting from 0) multiplies the base learning rate.
//! As in diffusers' training scripts, the first step of a warm-up runs at factor 0.
pub use super::config::LrSchedule;

impl LrSchedule {
    /// The multiplier of the base learning rate at optimisation step `step`.
    pub fn factor(self, step: u64, warmup: u64, total: u64) -> f64 {
        let (s, w, t) = (step as f64, warmup as f64, total as f64);
        match self {
            Self::Constant => 1.0,
            Self::ConstantWithWarmup if step < warmup => s / w.max(1.0),
            Self::ConstantWithWarmup => 1.0,
            Self::Linear | Self::Cosine if step < warmup => s / w.max(1.0),
            Self::Linear => ((t - s) / (t - w).max(1.0)).max(0.0),
            Self::Cosine => {
                let progress = (s - w) / (t - w).max(1.0);
                (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factors_match_diffusers_lambdas() {
        use LrSchedule::*;
        assert_eq!(Constant.factor(0, 10, 100), 1.0);
        assert_eq!(ConstantWithWarmup.factor(0, 10, 100), 0.0);
        assert_eq!(ConstantWithWarmup.factor(5, 10, 100), 0.5);
        assert_eq!(ConstantWithWarmup.factor(10, 10, 100), 1.0);
        assert_eq!(Linear.factor(4, 8, 100), 0.5);
        assert_eq!(Linear.factor(8, 8, 108), 1.0);
        assert_eq!(Linear.factor(58, 8, 108), 0.5);
        assert_eq!(Linear.factor(200, 8, 108), 0.0);
        assert!((Cosine.factor(10, 10, 110) - 1.0).abs() < 1e-12);
        assert!((Cosine.factor(60, 10, 110) - 0.5).abs() < 1e-12);
        assert!(Cosine.factor(110, 10, 110).abs() < 1e-12);
        // No warm-up: the first step runs at the full rate.
        assert_eq!(ConstantWithWarmup.factor(0, 0, 100), 1.0);
    }
}
