//! Per-sample preprocessing, as in diffusers' `train_text_to_image.py`:
//! `Resize(resolution, BILINEAR)` (shorter side to `resolution`, longer side
//! `floor(resolution * long / short)`), `CenterCrop` or `RandomCrop` to a square,
//! `RandomHorizontalFlip`, `ToTensor`, `Normalize([0.5], [0.5])` -> `[3, R, R]` f32 in [-1, 1].
//!
//! Resizing is bilinear with a support widened when shrinking (`image`'s `Triangle` filter),
//! i.e. antialiased like PIL's `BILINEAR`. Two deliberate differences from the reference: EXIF
//! orientation is applied, and transparent pixels are composited over white (PIL's
//! `convert("RGB")` drops alpha, which turns cut-out product shots' backgrounds arbitrary).
//!
//! Crops, flips and caption dropout are pure functions of (seed, epoch, sample index).
use super::rng::{stream, SplitMix64};
use anyhow::Result;
use image::{imageops::FilterType, DynamicImage, RgbImage};
use std::path::Path;
use tch::Tensor;

/// Geometry and augmentation settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransformOptions {
    pub resolution: u32,
    pub center_crop: bool,
    pub random_flip: bool,
}

/// The random choices for one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Augment {
    /// Crop offsets in the resized image.
    pub left: u32,
    pub top: u32,
    pub flip: bool,
}

/// Decodes an image with the shared decoder (Pillow's pixels, the size limit, one-line errors
/// naming the file): EXIF orientation applied, alpha composited over white, 8-bit RGB.
pub fn load_image(path: &Path) -> Result<RgbImage> {
    Ok(to_rgb_over_white(&crate::imageio::decode_upright(path)?))
}

/// 8-bit RGB; transparent pixels composited over white.
pub fn to_rgb_over_white(img: &DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return img.to_rgb8();
    }
    let rgba = img.to_rgba8();
    let mut out = RgbImage::new(rgba.width(), rgba.height());
    for (o, p) in out.pixels_mut().zip(rgba.pixels()) {
        let a = p[3] as u32;
        for c in 0..3 {
            o[c] = ((p[c] as u32 * a + 255 * (255 - a) + 127) / 255) as u8;
        }
    }
    out
}

/// Size after resizing the shorter side to `resolution` (torchvision's rule).
pub fn resized_size(width: u32, height: u32, resolution: u32) -> (u32, u32) {
    let r = resolution as u64;
    if width <= height {
        (resolution, (r * height as u64 / width as u64) as u32)
    } else {
        ((r * width as u64 / height as u64) as u32, resolution)
    }
}

/// Resizes the shorter side to `resolution` (bilinear, antialiased); no-op when already so.
pub fn resize_shorter(img: &RgbImage, resolution: u32) -> RgbImage {
    let (w, h) = resized_size(img.width(), img.height(), resolution);
    if (w, h) == img.dimensions() {
        return img.clone();
    }
    image::imageops::resize(img, w, h, FilterType::Triangle)
}

/// torchvision's `CenterCrop` offset: `int(round((len - crop) / 2))`, rounding half to even.
pub fn center_offset(len: u32, crop: u32) -> u32 {
    let d = len.saturating_sub(crop);
    let half = d / 2;
    if d % 2 == 1 && half % 2 == 1 {
        half + 1
    } else {
        half
    }
}

/// The crop and flip of sample `index` in `epoch`, for a resized image of `width` x `height`
/// cropped to a square of the resolution.
pub fn augment_for(
    opts: &TransformOptions,
    width: u32,
    height: u32,
    seed: u64,
    epoch: u64,
    index: u64,
) -> Augment {
    let r = opts.resolution;
    augment_to(opts, width, height, (r, r), seed, epoch, index)
}

/// [`augment_for`] with a crop of `target` = (width, height) (an aspect-ratio bucket).
pub fn augment_to(
    opts: &TransformOptions,
    width: u32,
    height: u32,
    target: (u32, u32),
    seed: u64,
    epoch: u64,
    index: u64,
) -> Augment {
    let (tw, th) = target;
    let (left, top) = if opts.center_crop {
        (center_offset(width, tw), center_offset(height, th))
    } else {
        let mut rng = SplitMix64::derived(&[seed, stream::CROP, epoch, index]);
        let top = rng.range_inclusive(0, height.saturating_sub(th) as u64) as u32;
        let left = rng.range_inclusive(0, width.saturating_sub(tw) as u64) as u32;
        (left, top)
    };
    let flip =
        opts.random_flip && SplitMix64::derived(&[seed, stream::FLIP, epoch, index]).chance(0.5);
    Augment { left, top, flip }
}

/// Crops `resolution` x `resolution` at the offsets, flips, and lays out as CHW in [-1, 1].
pub fn crop_to_chw(img: &RgbImage, aug: Augment, resolution: u32) -> Vec<f32> {
    crop_rect_to_chw(img, aug, (resolution, resolution))
}

/// Crops `target` = (width, height) at the offsets, flips, and lays out as CHW in [-1, 1].
pub fn crop_rect_to_chw(img: &RgbImage, aug: Augment, target: (u32, u32)) -> Vec<f32> {
    let (tw, th) = target;
    assert!(
        img.width() >= aug.left + tw && img.height() >= aug.top + th,
        "crop {aug:?} of {tw}x{th} outside a {}x{} image",
        img.width(),
        img.height()
    );
    let (w, h) = (tw as usize, th as usize);
    let mut out = vec![0f32; 3 * w * h];
    for y in 0..h {
        for x in 0..w {
            let sx = if aug.flip { w - 1 - x } else { x };
            let p = img.get_pixel(aug.left + sx as u32, aug.top + y as u32);
            for c in 0..3 {
                out[c * w * h + y * w + x] = p[c] as f32 / 127.5 - 1.0;
            }
        }
    }
    out
}

/// Size after resizing so that the image covers `target` = (width, height), keeping its aspect
/// ratio: the side that limits is brought to the target exactly, the other rounded down but
/// never below its target. For a square target this is [`resized_size`].
pub fn cover_size(width: u32, height: u32, target: (u32, u32)) -> (u32, u32) {
    let (tw, th) = (u64::from(target.0), u64::from(target.1));
    let (w, h) = (u64::from(width.max(1)), u64::from(height.max(1)));
    if tw * h >= th * w {
        // Width limits: scale = tw / w.
        (tw as u32, (tw * h / w).max(th) as u32)
    } else {
        ((th * w / h).max(tw) as u32, th as u32)
    }
}

/// The per-sample transform for an aspect-ratio bucket: resize to cover `target`, crop it
/// (center or random), flip; `3 * W * H` values, CHW, in [-1, 1].
pub fn prepare_to(
    img: &RgbImage,
    opts: &TransformOptions,
    target: (u32, u32),
    seed: u64,
    epoch: u64,
    index: u64,
) -> Vec<f32> {
    let (w, h) = cover_size(img.width(), img.height(), target);
    let resized = if (w, h) == img.dimensions() {
        img.clone()
    } else {
        image::imageops::resize(img, w, h, FilterType::Triangle)
    };
    let aug = augment_to(opts, w, h, target, seed, epoch, index);
    crop_rect_to_chw(&resized, aug, target)
}

/// The full per-sample transform of a decoded image: `3 * R * R` values, CHW, in [-1, 1].
pub fn prepare(
    img: &RgbImage,
    opts: &TransformOptions,
    seed: u64,
    epoch: u64,
    index: u64,
) -> Vec<f32> {
    let resized = resize_shorter(img, opts.resolution);
    let aug = augment_for(opts, resized.width(), resized.height(), seed, epoch, index);
    crop_to_chw(&resized, aug, opts.resolution)
}

/// [`prepare`] as a `[3, R, R]` f32 tensor.
pub fn prepare_tensor(
    img: &RgbImage,
    opts: &TransformOptions,
    seed: u64,
    epoch: u64,
    index: u64,
) -> Tensor {
    let r = opts.resolution as i64;
    Tensor::from_slice(&prepare(img, opts, seed, epoch, index)).view([3, r, r])
}

/// Whether the caption of sample `index` in `epoch` is replaced by "" (probability `p`).
pub fn caption_dropped(p: f64, seed: u64, epoch: u64, index: u64) -> bool {
    p > 0.0 && SplitMix64::derived(&[seed, stream::DROPOUT, epoch, index]).chance(p)
}
