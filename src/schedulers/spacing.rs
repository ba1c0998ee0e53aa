//! Timestep lists and sigma utilities shared by the samplers, each mirroring the numpy code of
//! diffusers' `set_timesteps` (rounding included).
use super::config::TimestepSpacing;

/// `np.round`: halves to even.
pub fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - x.signum()
    } else {
        r
    }
}

/// `np.linspace(a, b, n)`.
pub fn linspace(a: f64, b: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![a];
    }
    let step = (b - a) / (n - 1) as f64;
    (0..n)
        .map(|i| if i == n - 1 { b } else { a + step * i as f64 })
        .collect()
}

/// `np.arange(start, stop, step)` for a negative step.
pub fn arange_down(start: f64, stop: f64, step: f64) -> Vec<f64> {
    let n = ((stop - start) / step).ceil().max(0.0) as usize;
    (0..n).map(|i| start + step * i as f64).collect()
}

/// Descending timesteps as DDIM / Euler / LMS compute them for `n` steps.
///
/// `round`: DDIM rounds linspace timesteps to integers; Euler and LMS keep them fractional.
pub fn descending(
    spacing: TimestepSpacing,
    train: i64,
    n: usize,
    offset: i64,
    round: bool,
) -> Vec<f64> {
    match spacing {
        TimestepSpacing::Linspace => {
            let t = linspace(0.0, (train - 1) as f64, n).into_iter().rev();
            if round {
                t.map(round_half_even).collect()
            } else {
                t.collect()
            }
        }
        TimestepSpacing::Leading => {
            let ratio = train / n as i64;
            (0..n as i64)
                .rev()
                .map(|i| (i * ratio + offset) as f64)
                .collect()
        }
        TimestepSpacing::Trailing => {
            let ratio = train as f64 / n as f64;
            arange_down(train as f64, 0.0, -ratio)
                .into_iter()
                .map(|t| round_half_even(t) - 1.0)
                .collect()
        }
    }
}

/// `np.interp(x, arange(len(ys)), ys)`.
pub fn interp(x: f64, ys: &[f64]) -> f64 {
    if x <= 0.0 {
        return ys[0];
    }
    let last = ys.len() - 1;
    if x >= last as f64 {
        return ys[last];
    }
    let i = x.floor() as usize;
    let w = x - i as f64;
    ys[i] + (ys[i + 1] - ys[i]) * w
}

/// Karras et al. (2022) sigmas between `sigma_max` and `sigma_min`, rho = 7.
pub fn karras(sigma_min: f64, sigma_max: f64, n: usize) -> Vec<f64> {
    let rho = 7.0;
    let (lo, hi) = (sigma_min.powf(1.0 / rho), sigma_max.powf(1.0 / rho));
    linspace(0.0, 1.0, n)
        .into_iter()
        .map(|r| (hi + r * (lo - hi)).powf(rho))
        .collect()
}

/// The (fractional) training timestep of a sigma, by interpolation in log-sigma.
pub fn sigma_to_t(sigma: f64, log_sigmas: &[f64]) -> f64 {
    let ls = sigma.max(1e-10).ln();
    let count = log_sigmas.iter().filter(|&&l| ls - l >= 0.0).count();
    let low = count.saturating_sub(1).min(log_sigmas.len() - 2);
    let (lo, hi) = (log_sigmas[low], log_sigmas[low + 1]);
    let w = ((lo - ls) / (lo - hi)).clamp(0.0, 1.0);
    (1.0 - w) * low as f64 + w * (low + 1) as f64
}

/// fp32 rounding, where diffusers stores a value in an fp32 array.
pub fn f32r(x: f64) -> f64 {
    x as f32 as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_rounding_and_ranges() {
        assert_eq!(round_half_even(2.5), 2.0);
        assert_eq!(round_half_even(3.5), 4.0);
        assert_eq!(round_half_even(-0.5), -0.0);
        assert_eq!(linspace(0.0, 1.0, 3), vec![0.0, 0.5, 1.0]);
        assert_eq!(arange_down(10.0, 0.0, -2.5), vec![10.0, 7.5, 5.0, 2.5]);
        assert_eq!(
            descending(TimestepSpacing::Leading, 1000, 4, 1, true),
            vec![751.0, 501.0, 251.0, 1.0]
        );
        assert_eq!(
            descending(TimestepSpacing::Trailing, 1000, 4, 1, true),
            vec![999.0, 749.0, 499.0, 249.0]
        );
        assert_eq!(
            descending(TimestepSpacing::Linspace, 1000, 4, 1, true),
            vec![999.0, 666.0, 333.0, 0.0]
        );
        assert_eq!(
            descending(TimestepSpacing::Linspace, 1000, 3, 1, false),
            vec![999.0, 499.5, 0.0]
        );
        assert_eq!(interp(1.5, &[0.0, 1.0, 3.0]), 2.0);
    }
}
