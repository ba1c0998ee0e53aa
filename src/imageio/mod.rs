//! Images in and out: collecting input files, decoding and resizing them for a model, writing
//! outputs with their full generation parameters (PNG text chunk + sidecar JSON), contact sheets.
mod decode;
mod write;

pub use decode::{
    decode, decode_upright, decode_with_orientation, exif_transpose, oriented_size, read_header,
    read_rgb, read_rgb_upright, ImageHeader, Orientation, MAX_PIXELS, PILLOW_MAX_IMAGE_PIXELS,
};
pub use write::{read_png_params, save_with_params};

use anyhow::{bail, Context, Result};
use image::{imageops::FilterType, RgbImage};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Extensions read as images when a folder is given.
pub const IMAGE_EXTS: [&str; 4] = ["jpg", "jpeg", "png", "webp"];

pub fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Expands files, folders (recursively, image extensions only, sorted) and glob patterns into a
/// list of files. A name that is none of these is an error.
pub fn collect_inputs(inputs: &[String]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for input in inputs {
        let path = Path::new(input);
        if path.is_file() {
            out.push(path.to_path_buf());
        } else if path.is_dir() {
            let mut found = Vec::new();
            walk(path, &mut found)?;
            found.sort();
            out.extend(found);
        } else if input.contains(['*', '?', '[']) {
            let mut found: Vec<PathBuf> = glob::glob(input)
                .with_context(|| format!("{input}: invalid glob pattern"))?
                .filter_map(|r| r.ok())
                .filter(|p| p.is_file())
                .collect();
            if found.is_empty() {
                bail!("{input}: the pattern matches no file");
            }
            found.sort();
            out.extend(found);
        } else {
            bail!("{input}: no such file or folder");
        }
    }
    Ok(out)
}

/// Every image file below `dir` (recursively, image extensions only), unsorted.
pub fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let rd =
        std::fs::read_dir(dir).with_context(|| format!("{}: cannot list folder", dir.display()))?;
    for entry in rd {
        let path = entry
            .with_context(|| format!("{}: cannot list folder", dir.display()))?
            .path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if is_image(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// The size an image is brought to: optionally scaled so its long side is `long_side`
/// (keeping aspect), then each side rounded down to a multiple of `multiple` (as diffusers'
/// `VaeImageProcessor` does). Errors if a side would be zero.
pub fn target_size(w: u32, h: u32, long_side: Option<u32>, multiple: u32) -> Result<(u32, u32)> {
    let (mut tw, mut th) = (w, h);
    if let Some(long) = long_side {
        let scale = long as f64 / w.max(h) as f64;
        tw = (w as f64 * scale).round() as u32;
        th = (h as f64 * scale).round() as u32;
    }
    let (rw, rh) = (tw - tw % multiple, th - th % multiple);
    if rw == 0 || rh == 0 {
        bail!("image of {w}x{h} becomes {tw}x{th}, which has no side of at least {multiple} pixels after rounding to multiples of {multiple}");
    }
    Ok((rw, rh))
}

/// Resizes (Lanczos) to `(w, h)` when the size differs.
pub fn resize(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    if img.width() == w && img.height() == h {
        img.clone()
    } else {
        image::imageops::resize(img, w, h, FilterType::Lanczos3)
    }
}

/// RGB8 image to a `[1, 3, H, W]` fp32 tensor in [-1, 1].
pub fn to_model_input(img: &RgbImage) -> Tensor {
    let (w, h) = (img.width() as i64, img.height() as i64);
    Tensor::from_slice(img.as_raw())
        .view([h, w, 3])
        .permute([2, 0, 1])
        .unsqueeze(0)
        .to_kind(Kind::Float)
        / 127.5
        - 1.0
}

/// Lays images out in a grid (`cols` per row, 4-pixel white gutters).
pub fn contact_sheet(images: &[RgbImage], cols: usize) -> RgbImage {
    let cols = cols.max(1).min(images.len().max(1));
    let rows = images.len().div_ceil(cols);
    let cw = images.iter().map(|i| i.width()).max().unwrap_or(1);
    let ch = images.iter().map(|i| i.height()).max().unwrap_or(1);
    let gap = 4;
    let w = cols as u32 * (cw + gap) + gap;
    let h = rows as u32 * (ch + gap) + gap;
    let mut sheet = RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    for (i, img) in images.iter().enumerate() {
        let (c, r) = ((i % cols) as u32, (i / cols) as u32);
        image::imageops::overlay(
            &mut sheet,
            img,
            (gap + c * (cw + gap)) as i64,
            (gap + r * (ch + gap)) as i64,
        );
    }
    sheet
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_size_keeps_aspect_and_rounds_down() {
        assert_eq!(target_size(640, 480, None, 8).unwrap(), (640, 480));
        assert_eq!(target_size(643, 481, None, 8).unwrap(), (640, 480));
        assert_eq!(target_size(1000, 500, Some(512), 8).unwrap(), (512, 256));
        assert_eq!(target_size(300, 1000, Some(100), 8).unwrap(), (24, 96));
        assert!(target_size(5, 100, None, 8)
            .unwrap_err()
            .to_string()
            .contains("multiples of 8"));
    }

    #[test]
    fn collects_files_folders_and_globs() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("sub")).unwrap();
        for f in ["b.png", "a.JPG", "sub/c.webp", "notes.txt"] {
            std::fs::write(d.join(f), b"x").unwrap();
        }
        let all = collect_inputs(&[d.display().to_string()]).unwrap();
        let names: Vec<String> = all
            .iter()
            .map(|p| p.strip_prefix(d).unwrap().display().to_string())
            .collect();
        assert_eq!(names, vec!["a.JPG", "b.png", "sub/c.webp"]);
        let globbed = collect_inputs(&[format!("{}/*.png", d.display())]).unwrap();
        assert_eq!(globbed, vec![d.join("b.png")]);
        assert!(collect_inputs(&[format!("{}/*.gif", d.display())]).is_err());
        assert!(collect_inputs(&["/definitely/not/here.png".into()]).is_err());
    }
}
