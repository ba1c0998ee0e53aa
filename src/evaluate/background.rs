//! Background cleanliness: the share of background pixels (outside the product, see
//! [`cleanliness`]) that are near-white and locally flat, as on a studio sweep. A pixel is
//! *clean* when its L* exceeds [`MIN_L`], its chroma is below [`MAX_CHROMA`], and the standard
//! deviation of L* over its 3x3 neighbourhood (clamped at the border) is at most
//! [`MAX_LOCAL_STD`].
use super::color::{chroma, lab_image};
use super::mask::Mask;
use image::RgbImage;

/// Minimum L* of a clean pixel (sRGB grey 226 has L* 90).
pub const MIN_L: f64 = 90.0;
/// Maximum C*ab of a clean pixel.
pub const MAX_CHROMA: f64 = 8.0;
/// Maximum standard deviation of L* in the 3x3 neighbourhood of a clean pixel.
pub const MAX_LOCAL_STD: f64 = 3.0;
/// Pixels this close to the product (Chebyshev distance) are left out of the background: the
/// anti-aliased edge mixes product and background.
pub const EDGE: u32 = 1;

/// For each pixel, whether it is clean (near-white and locally flat).
pub fn clean_map(img: &RgbImage) -> Vec<bool> {
    let lab = lab_image(img);
    let (w, h) = (img.width() as i64, img.height() as i64);
    (0..w * h)
        .map(|i| {
            let p = lab[i as usize];
            if p[0] <= MIN_L || chroma(p) >= MAX_CHROMA {
                return false;
            }
            let (x, y) = (i % w, i / w);
            let (mut s, mut s2) = (0.0, 0.0);
            for dy in -1..=1 {
                for dx in -1..=1 {
                    let j = (y + dy).clamp(0, h - 1) * w + (x + dx).clamp(0, w - 1);
                    let l = lab[j as usize][0];
                    s += l;
                    s2 += l * l;
                }
            }
            let var = (s2 / 9.0 - (s / 9.0).powi(2)).max(0.0);
            var.sqrt() <= MAX_LOCAL_STD
        })
        .collect()
}

/// The share of clean pixels among the background pixels: those outside `product` grown by
/// [`EDGE`]. `None` when no pixel is background.
pub fn cleanliness(img: &RgbImage, product: &Mask) -> Option<f64> {
    let clean = clean_map(img);
    let grown = product.dilate(EDGE);
    let (mut n, mut c) = (0usize, 0usize);
    for (is_clean, fg) in clean.iter().zip(&grown.inside) {
        if !fg {
            n += 1;
            c += *is_clean as usize;
        }
    }
    (n > 0).then(|| c as f64 / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn product_on(bg: impl Fn(u32, u32) -> [u8; 3]) -> (RgbImage, Mask) {
        let img = RgbImage::from_fn(48, 48, |x, y| {
            if (16..32).contains(&x) && (12..36).contains(&y) {
                Rgb([200, 30, 40])
            } else {
                Rgb(bg(x, y))
            }
        });
        let mut m = Mask::empty(48, 48);
        for y in 12..36 {
            for x in 16..32 {
                m.inside[y * 48 + x] = true;
            }
        }
        (img, m)
    }

    #[test]
    fn clean_white_background_scores_one() {
        let (img, mask) = product_on(|_, _| [255, 255, 255]);
        assert_eq!(cleanliness(&img, &mask), Some(1.0));
        // a soft sweep gradient is still clean
        let (img, mask) = product_on(|_, y| [244 + (y / 5) as u8; 3]);
        assert_eq!(cleanliness(&img, &mask), Some(1.0));
        // without a mask the product is found (with the 1-pixel ring whose neighbourhood is
        // not flat) and the score is the same
        let est = Mask::estimate(&img);
        let ring = mask.dilate(1);
        for i in 0..48 * 48 {
            assert!(
                !mask.inside[i] || est.inside[i],
                "pixel {i} of the product is missed"
            );
            assert!(
                !est.inside[i] || ring.inside[i],
                "pixel {i} is not the product"
            );
        }
        assert_eq!(cleanliness(&img, &est), Some(1.0));
    }

    #[test]
    fn cluttered_or_coloured_backgrounds_score_low() {
        let mut rng = crate::data::rng::SplitMix64::new(3);
        let noise: Vec<[u8; 3]> = (0..48 * 48)
            .map(|_| [0; 3].map(|_: u8| rng.below(256) as u8))
            .collect();
        let (img, mask) = product_on(|x, y| noise[(y * 48 + x) as usize]);
        let c = cleanliness(&img, &mask).unwrap();
        assert!(c < 0.05, "{c}");
        // a flat but coloured wall is not a studio background
        let (img, mask) = product_on(|_, _| [40, 128, 128]);
        assert_eq!(cleanliness(&img, &mask), Some(0.0));
        // nor is a light grey one, nor white with texture
        let (img, mask) = product_on(|_, _| [200, 200, 200]);
        assert_eq!(cleanliness(&img, &mask), Some(0.0));
        let (img, mask) = product_on(|x, y| if (x + y) % 2 == 0 { [255; 3] } else { [215; 3] });
        assert_eq!(cleanliness(&img, &mask), Some(0.0));
        // half clean, half clutter
        let (img, mask) = product_on(|x, y| {
            if x < 24 {
                [255; 3]
            } else {
                noise[(y * 48 + x) as usize]
            }
        });
        let c = cleanliness(&img, &mask).unwrap();
        assert!(c > 0.3 && c < 0.6, "{c}");
        // without a mask, clutter touching the border is background
        let est = Mask::estimate(&RgbImage::from_fn(48, 48, |x, y| {
            Rgb(noise[(y * 48 + x) as usize])
        }));
        assert!(est.count() < 48 * 48 / 10, "{}", est.count());
    }
}
