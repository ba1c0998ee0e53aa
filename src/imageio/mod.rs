//! Images in and out: collecting input files, decoding and resizing them for a model, writing
//! outputs with their full generation parameters (PNG text chunk + sidecar JSON), contact sheets.
mod decode;
pub mod infotext;
mod write;

pub use decode::{
    decode, decode_upright, decode_with_orientation, exif_transpose, oriented_size, read_header,
    read_rgb, read_rgb_upright, ImageHeader, Orientation, MAX_PIXELS, PILLOW_MAX_IMAGE_PIXELS,
};
pub use write::{
    read_png_params, read_png_texts, save_png, save_with_params, sidecar_path, OUTPUT_EXTS,
};

use anyhow::{bail, Context, Result};
use image::{imageops::FilterType, RgbImage};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
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
/// list of files. Paths are kept exactly as found (a file name that is not UTF-8 stays as it
/// is); a symlinked folder is entered once (see [`walk`]). A name that is none of these is an
/// error. A pattern must be UTF-8 text to be a glob.
pub fn collect_inputs<S: AsRef<OsStr>>(inputs: &[S]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for input in inputs {
        let path = Path::new(input.as_ref());
        if path.is_file() {
            out.push(path.to_path_buf());
        } else if path.is_dir() {
            out.extend(walk(path)?.images);
        } else if let Some(pattern) = input.as_ref().to_str().filter(|s| is_glob(s)) {
            let mut found: Vec<PathBuf> = glob::glob(pattern)
                .with_context(|| format!("{pattern}: invalid glob pattern"))?
                .filter_map(|r| r.ok())
                .filter(|p| p.is_file())
                .collect();
            if found.is_empty() {
                bail!("{pattern}: the pattern matches no file");
            }
            found.sort();
            out.extend(found);
        } else {
            bail!("{}: no such file or folder", escaped(path));
        }
    }
    Ok(out)
}

/// Whether an input names a glob pattern rather than a file.
pub fn is_glob(input: &str) -> bool {
    input.contains(['*', '?', '['])
}

/// A path for messages and UTF-8 files: as text where it is UTF-8, each byte that is not shown
/// as `\xNN` (so two different names never print the same, unlike `to_string_lossy`).
pub fn escaped(path: &Path) -> String {
    let mut out = String::new();
    for chunk in path.as_os_str().as_bytes().utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

/// What a folder walk found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Walk {
    /// The image files, sorted (component-wise, as `Path` orders).
    pub images: Vec<PathBuf>,
    /// Folders not entered because the folder they are (a symlink loop, or a second link to
    /// a folder) was already searched in this walk.
    pub repeated: Vec<PathBuf>,
}

/// The identity of a file or folder, following symlinks.
fn file_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Every image file below `dir` (recursively, image extensions only), in sorted order. Symlinked
/// folders are followed, but each folder (by device and inode) is searched once: a symlink loop
/// or a second link to a folder is listed in [`Walk::repeated`] instead of being entered again.
pub fn walk(dir: &Path) -> Result<Walk> {
    fn rec(dir: &Path, seen: &mut HashSet<(u64, u64)>, out: &mut Walk) -> Result<()> {
        let rd = std::fs::read_dir(dir)
            .with_context(|| format!("{}: cannot list folder", escaped(dir)))?;
        let mut entries = Vec::new();
        for entry in rd {
            let entry = entry.with_context(|| format!("{}: cannot list folder", escaped(dir)))?;
            entries.push(entry.path());
        }
        entries.sort();
        for path in entries {
            if path.is_dir() {
                match file_id(&path) {
                    Some(id) if !seen.insert(id) => out.repeated.push(path),
                    _ => rec(&path, seen, out)?,
                }
            } else if is_image(&path) {
                out.images.push(path);
            }
        }
        Ok(())
    }
    let mut seen = HashSet::new();
    seen.extend(file_id(dir));
    let mut out = Walk::default();
    rec(dir, &mut seen, &mut out)?;
    Ok(out)
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

/// Short names for images: file stems, with `-2`, `-3`, ... for a stem seen before, in the
/// given order (the names `compare` gives its inputs, which `evaluate` reads back).
pub fn stem_names<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for p in paths {
        let stem = p
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("image")
            .to_string();
        let mut name = stem.clone();
        let mut k = 2;
        while names.contains(&name) {
            name = format!("{stem}-{k}");
            k += 1;
        }
        names.push(name);
    }
    names
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
        assert!(collect_inputs(&["/definitely/not/here.png"]).is_err());
    }

    #[test]
    fn non_utf8_names_are_kept_exactly() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        // Two names that `to_string_lossy` would both show as "caf\u{FFFD}.png".
        let names = [
            OsStr::from_bytes(b"caf\xe9.png"),
            OsStr::from_bytes(b"caf\xe8.png"),
        ];
        for n in names {
            std::fs::write(dir.path().join(n), n.as_bytes()).unwrap();
        }
        let got = collect_inputs(&[dir.path()]).unwrap();
        let mut want: Vec<PathBuf> = names.iter().map(|n| dir.path().join(n)).collect();
        want.sort();
        assert_eq!(got, want);
        for (p, n) in got.iter().zip([names[1], names[0]]) {
            assert_eq!(std::fs::read(p).unwrap(), n.as_bytes(), "the exact file");
        }
        assert_eq!(
            escaped(got[0].strip_prefix(dir.path()).unwrap()),
            "caf\\xE8.png"
        );
        // A non-UTF-8 input that is a file is taken as it is.
        assert_eq!(collect_inputs(&[&got[1]]).unwrap(), vec![got[1].clone()]);
    }

    #[test]
    fn symlink_loops_are_entered_once() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("a/b")).unwrap();
        std::fs::write(d.join("a/one.png"), b"x").unwrap();
        std::fs::write(d.join("a/b/two.png"), b"x").unwrap();
        std::os::unix::fs::symlink("..", d.join("a/b/up")).unwrap(); // a loop
        std::os::unix::fs::symlink(".", d.join("a/self")).unwrap(); // a loop
        std::os::unix::fs::symlink("../..", d.join("a/b/top")).unwrap(); // back to the root
        std::os::unix::fs::symlink("a/b", d.join("link")).unwrap(); // a second link
        let w = walk(d).unwrap();
        assert_eq!(w.images, vec![d.join("a/b/two.png"), d.join("a/one.png")]);
        assert_eq!(
            w.repeated,
            vec![
                d.join("a/b/top"),
                d.join("a/b/up"),
                d.join("a/self"),
                d.join("link")
            ]
        );
        // Every image once through collect_inputs too.
        assert_eq!(collect_inputs(&[d]).unwrap(), w.images);
    }
}
