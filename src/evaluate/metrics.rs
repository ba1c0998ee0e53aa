//! The studio-ize metrics of one (input, output) pair, optionally with the product mask and a
//! ground-truth studio photo.
use super::background::cleanliness;
use super::color::{ciede2000, lab_image};
use super::mask::Mask;
use super::psnr::psnr;
use super::ssim::{masked_mean, ssim, ssim_map};
use anyhow::{bail, Result};
use image::RgbImage;

/// The numbers of one pair; `None` where they are undefined (no background or no product
/// pixels, no reference).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PairMetrics {
    /// Share of clean background pixels in the input (0..1).
    pub cleanliness_in: Option<f64>,
    /// The same in the output, over the same pixels.
    pub cleanliness_out: Option<f64>,
    /// Mean CIEDE2000 between input and output inside the product.
    pub delta_e2000: Option<f64>,
    /// Mean SSIM map between input and output inside the product.
    pub ssim_product: Option<f64>,
    /// PSNR of the output against the reference (dB).
    pub psnr_reference: Option<f64>,
    /// SSIM of the output against the reference.
    pub ssim_reference: Option<f64>,
}

/// The metrics of `output` as a transform of `input`. All images are compared at the output's
/// size (the input, mask and reference are resized to it when they differ: Lanczos for photos,
/// nearest for the mask). The product region is `mask` (which must have the input's size) or,
/// without one, [`Mask::estimate`] of the input; the same region is used for the input and the
/// output.
pub fn measure(
    input: &RgbImage,
    output: &RgbImage,
    mask: Option<&Mask>,
    reference: Option<&RgbImage>,
) -> Result<PairMetrics> {
    let (w, h) = output.dimensions();
    if let Some(m) = mask {
        if (m.width, m.height) != input.dimensions() {
            bail!(
                "the mask is {}x{} but the input is {}x{}",
                m.width,
                m.height,
                input.width(),
                input.height()
            );
        }
    }
    let input = crate::imageio::resize(input, w, h);
    let product = match mask {
        Some(m) => m.resized(w, h),
        None => Mask::estimate(&input),
    };
    let lab_in = lab_image(&input);
    let lab_out = lab_image(output);
    let (mut sum, mut n) = (0.0, 0usize);
    for ((a, b), m) in lab_in.iter().zip(&lab_out).zip(&product.inside) {
        if *m {
            sum += ciede2000(*a, *b);
            n += 1;
        }
    }
    let ssim_product = masked_mean(&ssim_map(&input, output)?, &product.inside);
    let (psnr_reference, ssim_reference) = match reference {
        Some(r) => {
            let r = crate::imageio::resize(r, w, h);
            (Some(psnr(output, &r)?), Some(ssim(output, &r)?))
        }
        None => (None, None),
    };
    Ok(PairMetrics {
        cleanliness_in: cleanliness(&input, &product),
        cleanliness_out: cleanliness(output, &product),
        delta_e2000: (n > 0).then(|| sum / n as f64),
        ssim_product,
        psnr_reference,
        ssim_reference,
    })
}
