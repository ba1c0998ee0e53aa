//! SSIM (Wang, Bovik, Sheikh and Simoncelli 2004) with a Gaussian window (sigma 1.5, 11 taps),
//! K1 = 0.01, K2 = 0.03, population covariances, computed per RGB channel and averaged over
//! the channels: the definition of scikit-image's `structural_similarity(gaussian_weights=True,
//! sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1)`, including its
//! filtering (SciPy's `gaussian_filter`, `reflect` edges, truncate 3.5) and its mean over the
//! map cropped by the window radius (5 pixels).
use anyhow::{bail, Result};
use image::RgbImage;

pub const SIGMA: f64 = 1.5;
/// Taps: `2 * round(3.5 * sigma) + 1`, as SciPy truncates at 3.5 sigma.
pub const WINDOW: usize = 11;
pub const K1: f64 = 0.01;
pub const K2: f64 = 0.03;
const RADIUS: usize = WINDOW / 2;

/// SciPy's 1-D Gaussian kernel (normalised).
fn kernel() -> [f64; WINDOW] {
    let mut k = [0.0; WINDOW];
    for (i, v) in k.iter_mut().enumerate() {
        let x = i as f64 - RADIUS as f64;
        *v = (-0.5 * x * x / (SIGMA * SIGMA)).exp();
    }
    let s: f64 = k.iter().sum();
    k.map(|v| v / s)
}

/// SciPy's `reflect` boundary: `d c b a | a b c d | d c b a`.
fn reflect(i: i64, n: i64) -> usize {
    let m = i.rem_euclid(2 * n);
    (if m >= n { 2 * n - 1 - m } else { m }) as usize
}

/// Separable Gaussian filtering of a `w` x `h` plane (rows first, as SciPy's axis 0, then
/// columns).
fn filter(plane: &[f64], w: usize, h: usize) -> Vec<f64> {
    let k = kernel();
    let mut tmp = vec![0.0; w * h];
    for y in 0..h {
        for x in 0..w {
            let mut acc = 0.0;
            for (j, kv) in k.iter().enumerate() {
                let sy = reflect(y as i64 + j as i64 - RADIUS as i64, h as i64);
                acc += plane[sy * w + x] * kv;
            }
            tmp[y * w + x] = acc;
        }
    }
    let mut out = vec![0.0; w * h];
    for y in 0..h {
        for x in 0..w {
            let mut acc = 0.0;
            for (j, kv) in k.iter().enumerate() {
                let sx = reflect(x as i64 + j as i64 - RADIUS as i64, w as i64);
                acc += tmp[y * w + sx] * kv;
            }
            out[y * w + x] = acc;
        }
    }
    out
}

/// The SSIM map of one channel pair (values 0..255).
fn channel_map(a: &[f64], b: &[f64], w: usize, h: usize) -> Vec<f64> {
    let prod = |p: &[f64], q: &[f64]| p.iter().zip(q).map(|(x, y)| x * y).collect::<Vec<_>>();
    let ux = filter(a, w, h);
    let uy = filter(b, w, h);
    let uxx = filter(&prod(a, a), w, h);
    let uyy = filter(&prod(b, b), w, h);
    let uxy = filter(&prod(a, b), w, h);
    let (c1, c2) = ((K1 * 255.0).powi(2), (K2 * 255.0).powi(2));
    (0..w * h)
        .map(|i| {
            let (mx, my) = (ux[i], uy[i]);
            let vx = uxx[i] - mx * mx;
            let vy = uyy[i] - my * my;
            let vxy = uxy[i] - mx * my;
            let num = (2.0 * mx * my + c1) * (2.0 * vxy + c2);
            let den = (mx * mx + my * my + c1) * (vx + vy + c2);
            num / den
        })
        .collect()
}

/// The SSIM map of two RGB images of one size: per pixel, the mean over R, G and B.
pub fn ssim_map(a: &RgbImage, b: &RgbImage) -> Result<Vec<f64>> {
    if a.dimensions() != b.dimensions() {
        bail!(
            "SSIM of images of different sizes ({:?} and {:?})",
            a.dimensions(),
            b.dimensions()
        );
    }
    let (w, h) = (a.width() as usize, a.height() as usize);
    if w < WINDOW || h < WINDOW {
        bail!("SSIM needs images of at least {WINDOW}x{WINDOW} pixels (got {w}x{h})");
    }
    let mut map = vec![0.0; w * h];
    for c in 0..3 {
        let pa: Vec<f64> = a.pixels().map(|p| p[c] as f64).collect();
        let pb: Vec<f64> = b.pixels().map(|p| p[c] as f64).collect();
        for (m, v) in map.iter_mut().zip(channel_map(&pa, &pb, w, h)) {
            *m += v / 3.0;
        }
    }
    Ok(map)
}

/// The mean SSIM of two RGB images, as scikit-image reports it (the map cropped by the window
/// radius, averaged).
pub fn ssim(a: &RgbImage, b: &RgbImage) -> Result<f64> {
    let map = ssim_map(a, b)?;
    let (w, h) = (a.width() as usize, a.height() as usize);
    let mut sum = 0.0;
    let mut n = 0usize;
    for y in RADIUS..h - RADIUS {
        for x in RADIUS..w - RADIUS {
            sum += map[y * w + x];
            n += 1;
        }
    }
    Ok(sum / n as f64)
}

/// The mean of `map` where `inside` holds; `None` when nothing is inside.
pub fn masked_mean(map: &[f64], inside: &[bool]) -> Option<f64> {
    let (sum, n) = map
        .iter()
        .zip(inside)
        .filter(|(_, m)| **m)
        .fold((0.0, 0usize), |(s, n), (v, _)| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noisy(seed: u64) -> RgbImage {
        let mut rng = crate::data::rng::SplitMix64::new(seed);
        RgbImage::from_fn(24, 20, |x, y| {
            image::Rgb([(x * 10) as u8, (y * 12) as u8, rng.below(256) as u8])
        })
    }

    #[test]
    fn identical_images_score_one_and_different_ones_less() {
        let a = noisy(1);
        assert!((ssim(&a, &a).unwrap() - 1.0).abs() < 1e-12);
        assert!(ssim_map(&a, &a)
            .unwrap()
            .iter()
            .all(|v| (v - 1.0).abs() < 1e-12));
        let b = noisy(2);
        let s = ssim(&a, &b).unwrap();
        assert!(s < 0.9 && s > 0.0, "{s}");
        assert!((ssim(&b, &a).unwrap() - s).abs() < 1e-12, "symmetric");
    }

    #[test]
    fn reflect_is_scipys() {
        let n = 4;
        let got: Vec<usize> = (-3..7).map(|i| reflect(i, n)).collect();
        assert_eq!(got, vec![2, 1, 0, 0, 1, 2, 3, 3, 2, 1]);
        assert!((kernel().iter().sum::<f64>() - 1.0).abs() < 1e-15);
    }

    #[test]
    fn small_or_mismatched_images_are_errors() {
        let a = RgbImage::new(8, 8);
        assert!(ssim(&a, &a)
            .unwrap_err()
            .to_string()
            .contains("at least 11x11"));
        let b = RgbImage::new(12, 12);
        let c = RgbImage::new(12, 13);
        assert!(ssim(&b, &c).is_err());
    }
}
