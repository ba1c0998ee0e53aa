//! PSNR over all RGB channels with an 8-bit peak: `10 log10(255^2 / MSE)`, infinite for
//! identical images (as scikit-image's `peak_signal_noise_ratio(data_range=255)`).
use anyhow::{bail, Result};
use image::RgbImage;

/// The mean squared error over every channel of every pixel.
pub fn mse(a: &RgbImage, b: &RgbImage) -> Result<f64> {
    if a.dimensions() != b.dimensions() {
        bail!(
            "images of different sizes ({:?} and {:?})",
            a.dimensions(),
            b.dimensions()
        );
    }
    let sum: f64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    Ok(sum / a.as_raw().len().max(1) as f64)
}

/// PSNR in dB (`f64::INFINITY` when the images are equal).
pub fn psnr(a: &RgbImage, b: &RgbImage) -> Result<f64> {
    let m = mse(a, b)?;
    Ok(if m == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / m).log10()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_noise_gives_known_psnr() {
        // +-d on every channel, signs alternating: MSE = d^2 exactly
        let base = RgbImage::from_fn(16, 16, |x, y| {
            image::Rgb([100 + x as u8, 120, 90 + y as u8])
        });
        for d in [1u8, 5, 16] {
            let mut noisy = base.clone();
            for (i, v) in noisy.iter_mut().enumerate() {
                *v = if i % 2 == 0 { *v + d } else { *v - d };
            }
            let want = 20.0 * (255.0 / d as f64).log10();
            assert!(
                (psnr(&base, &noisy).unwrap() - want).abs() < 1e-9,
                "d = {d}"
            );
        }
        assert_eq!(psnr(&base, &base).unwrap(), f64::INFINITY);
        assert!(psnr(&base, &RgbImage::new(3, 3)).is_err());
    }
}
