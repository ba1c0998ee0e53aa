//! Image resizing that gives the same bytes as Pillow 13's `Image.resize` on 8-bit RGB images
//! (the convolution resampler of Pillow's `libImaging/Resample.c`): separable, horizontal pass
//! first, filter support widened by the scale when shrinking (antialiasing), coefficients
//! normalised per output pixel and applied in 22-bit fixed point with rounding and clipping
//! after each pass. BLIP's image processor resizes with Pillow, so this is what makes
//! `pixel_values` match it. Written from the algorithm's description, not from Pillow's code.
use anyhow::{bail, Result};
use image::RgbImage;

/// Pillow's resampling filters, numbered as `PIL.Image.Resampling` (the `resample` value of a
/// `preprocessor_config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Lanczos,
    Bilinear,
    Bicubic,
    Box,
    Hamming,
}

impl Filter {
    pub fn from_pil(code: i64) -> Result<Self> {
        Ok(match code {
            1 => Self::Lanczos,
            2 => Self::Bilinear,
            3 => Self::Bicubic,
            4 => Self::Box,
            5 => Self::Hamming,
            0 => bail!("resample 0 (nearest) is not supported; use 2 (bilinear) or 3 (bicubic)"),
            other => bail!("resample {other} is not a Pillow resampling filter"),
        })
    }

    fn support(self) -> f64 {
        match self {
            Self::Box => 0.5,
            Self::Bilinear | Self::Hamming => 1.0,
            Self::Bicubic => 2.0,
            Self::Lanczos => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let sinc = |x: f64| {
            if x == 0.0 {
                1.0
            } else {
                let x = x * std::f64::consts::PI;
                x.sin() / x
            }
        };
        match self {
            Self::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Self::Bilinear => (1.0 - x.abs()).max(0.0),
            Self::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    let px = x * std::f64::consts::PI;
                    // Pillow evaluates the window's constants in single precision.
                    px.sin() / px * (0.54f32 as f64 + 0.46f32 as f64 * px.cos())
                }
            }
            Self::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Self::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

const PRECISION_BITS: u32 = 22;

/// For each output pixel: the first input pixel and the fixed-point weights of the run.
struct Taps {
    start: Vec<usize>,
    weights: Vec<Vec<i32>>,
}

fn taps(in_size: usize, out_size: usize, filter: Filter) -> Taps {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let inv_filterscale = 1.0 / filterscale;
    let mut start = Vec::with_capacity(out_size);
    let mut weights = Vec::with_capacity(out_size);
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // Truncation toward zero, as a C cast.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let w: Vec<f64> = (xmin..xmax)
            .map(|x| filter.weight((x as f64 - center + 0.5) * inv_filterscale))
            .collect();
        let total: f64 = w.iter().sum();
        let fixed = w
            .iter()
            .map(|&v| {
                let v = if total != 0.0 { v / total } else { v };
                let scaled = v * f64::from(1u32 << PRECISION_BITS);
                if v < 0.0 {
                    (scaled - 0.5) as i32
                } else {
                    (scaled + 0.5) as i32
                }
            })
            .collect();
        start.push(xmin);
        weights.push(fixed);
    }
    Taps { start, weights }
}

fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes `img` to `width` × `height` exactly as Pillow 13 does for an RGB image, including
/// its choice of pass order (vertical first when the height shrinks by more than twice the
/// width's reduction).
pub fn resize(img: &RgbImage, width: u32, height: u32, filter: Filter) -> RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (ow, oh) = (width as usize, height as usize);
    let dh = h as i64 - oh as i64;
    let dw = w as i64 - ow as i64;
    let vertical_first = dh > 0 && dh > dw * 2;
    let mut buf = img.as_raw().clone();
    let (mut cw, mut ch) = (w, h);
    for vertical in [vertical_first, !vertical_first] {
        if vertical && oh != ch {
            buf = vertical_pass(&buf, cw, ch, oh, filter);
            ch = oh;
        } else if !vertical && ow != cw {
            buf = horizontal_pass(&buf, cw, ch, ow, filter);
            cw = ow;
        }
    }
    RgbImage::from_raw(width, height, buf).expect("buffer sized by the passes")
}

const ROUND: i32 = 1 << (PRECISION_BITS - 1);

/// `w × h` RGB to `ow × h`.
fn horizontal_pass(src: &[u8], w: usize, h: usize, ow: usize, filter: Filter) -> Vec<u8> {
    let t = taps(w, ow, filter);
    let mut out = vec![0u8; ow * h * 3];
    for y in 0..h {
        let row = &src[y * w * 3..(y + 1) * w * 3];
        for xx in 0..ow {
            let mut acc = [ROUND; 3];
            for (i, &k) in t.weights[xx].iter().enumerate() {
                let px = &row[(t.start[xx] + i) * 3..];
                for c in 0..3 {
                    acc[c] += i32::from(px[c]) * k;
                }
            }
            for c in 0..3 {
                out[(y * ow + xx) * 3 + c] = clip8(acc[c]);
            }
        }
    }
    out
}

/// `w × h` RGB to `w × oh`.
fn vertical_pass(src: &[u8], w: usize, h: usize, oh: usize, filter: Filter) -> Vec<u8> {
    let t = taps(h, oh, filter);
    let mut out = vec![0u8; w * oh * 3];
    for yy in 0..oh {
        for x in 0..w {
            let mut acc = [ROUND; 3];
            for (i, &k) in t.weights[yy].iter().enumerate() {
                let px = &src[((t.start[yy] + i) * w + x) * 3..];
                for c in 0..3 {
                    acc[c] += i32::from(px[c]) * k;
                }
            }
            for c in 0..3 {
                out[(yy * w + x) * 3 + c] = clip8(acc[c]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_of_each_output_pixel_sum_to_one_in_fixed_point() {
        for filter in [
            Filter::Bicubic,
            Filter::Bilinear,
            Filter::Lanczos,
            Filter::Box,
        ] {
            for (i, o) in [(57, 32), (19, 32), (384, 384), (1000, 384)] {
                let t = taps(i, o, filter);
                for w in &t.weights {
                    let s: i64 = w.iter().map(|&k| i64::from(k)).sum();
                    assert!((s - (1 << PRECISION_BITS)).abs() <= w.len() as i64, "{s}");
                }
            }
        }
    }

    #[test]
    fn constant_image_stays_constant() {
        let img = RgbImage::from_pixel(37, 23, image::Rgb([200, 10, 77]));
        let out = resize(&img, 16, 40, Filter::Bicubic);
        assert!(out.pixels().all(|p| p.0 == [200, 10, 77]));
    }
}
