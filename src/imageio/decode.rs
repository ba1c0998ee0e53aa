//! The one image decoder of every stage (transform, compare, caption, train, dataset headers),
//! equal to Pillow 13, which the Python pipelines decode with:
//!
//! - JPEG through libjpeg-turbo's decoder driven as Pillow drives it ([`jpeg`]): the same IDCT,
//!   upsampling and colour conversion, so pixels are byte-identical; truncated files are refused
//!   as Pillow refuses them ("image file is truncated");
//! - PNG through the `png` crate, converted to 8 bits as Pillow converts each mode ([`png`]);
//! - WebP through the `image` crate (libwebp-exact for lossless and lossy, tested);
//! - before any pixel memory is allocated, the header's width x height is checked against
//!   [`MAX_PIXELS`], Pillow's decompression-bomb error bound (2 x `Image.MAX_IMAGE_PIXELS`);
//! - EXIF orientation read as Pillow's `getexif()` reads it and applied, on request, as
//!   `ImageOps.exif_transpose` applies it ([`orientation`]).
//!
//! [`decode`] returns what Pillow holds after `Image.open(p)`, as an 8-bit image whose colour
//! channels are `convert("RGB")`'s and whose alpha (if any) is `convert("RGBA")`'s: L, LA, RGB
//! or RGBA. Every error is one line naming the file.
mod jpeg;
mod orientation;
mod png;

pub use image::metadata::Orientation;
pub use orientation::{exif_transpose, oriented_size};

use anyhow::{anyhow, bail, Result};
use image::{DynamicImage, ImageDecoder, RgbImage};
use std::io::{BufReader, Read};
use std::path::Path;

/// Pillow's `Image.MAX_IMAGE_PIXELS`: above it Pillow warns of a decompression bomb.
pub const PILLOW_MAX_IMAGE_PIXELS: u64 = 89_478_485;

/// The most pixels a header may claim (Pillow raises `DecompressionBombError` above it): every
/// image the Python pipelines open, studioize opens too; ~179 megapixels is 537 MB as RGB.
pub const MAX_PIXELS: u64 = 2 * PILLOW_MAX_IMAGE_PIXELS;

/// What a file's header says, without decoding pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageHeader {
    /// Stored size.
    pub width: u32,
    pub height: u32,
    /// EXIF orientation (`NoTransforms` when absent or invalid).
    pub orientation: Orientation,
}

impl ImageHeader {
    /// The displayed size, after [`exif_transpose`].
    pub fn upright_size(&self) -> (u32, u32) {
        oriented_size(self.width, self.height, self.orientation)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Jpeg,
    Png,
    Webp,
}

fn sniff(head: &[u8]) -> Option<Format> {
    if head.starts_with(b"\xff\xd8\xff") {
        Some(Format::Jpeg)
    } else if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(Format::Png)
    } else if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        Some(Format::Webp)
    } else {
        None
    }
}

fn unreadable(path: &Path, why: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("{}: not a readable image ({why})", path.display())
}

/// Refuses a header size of zero or above [`MAX_PIXELS`], naming the file and the size.
fn check_size(path: &Path, width: u32, height: u32) -> Result<()> {
    let pixels = u64::from(width) * u64::from(height);
    if width == 0 || height == 0 {
        return Err(unreadable(
            path,
            format_args!("empty image ({width}x{height})"),
        ));
    }
    if pixels > MAX_PIXELS {
        bail!(
            "{}: refused: the header claims {width}x{height} = {pixels} pixels, above the limit \
             of {MAX_PIXELS} (Pillow's decompression-bomb bound)",
            path.display()
        );
    }
    Ok(())
}

fn open(path: &Path) -> Result<std::fs::File> {
    std::fs::File::open(path).map_err(|e| anyhow!("{}: cannot open ({e})", path.display()))
}

fn read_all(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow!("{}: cannot read ({e})", path.display()))
}

/// The first up-to-`n` bytes of the file and whether that is all of it.
fn read_prefix(path: &Path, n: usize) -> Result<(Vec<u8>, bool)> {
    let mut buf = Vec::with_capacity(n.min(1 << 20));
    open(path)?
        .take(n as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| anyhow!("{}: cannot read ({e})", path.display()))?;
    let whole = buf.len() <= n;
    buf.truncate(n);
    Ok((buf, whole))
}

fn format_of(path: &Path) -> Result<Format> {
    let (head, _) = read_prefix(path, 16)?;
    sniff(&head).ok_or_else(|| unreadable(path, "not a JPEG, PNG or WebP file"))
}

fn jpeg_error(path: &Path, e: jpeg::JpegError) -> anyhow::Error {
    match e {
        jpeg::JpegError::Truncated => unreadable(path, "image file is truncated"),
        jpeg::JpegError::Broken(msg) => unreadable(path, msg),
        jpeg::JpegError::Refused(e) => e,
    }
}

fn webp_decoder(path: &Path) -> Result<image::codecs::webp::WebPDecoder<BufReader<std::fs::File>>> {
    image::codecs::webp::WebPDecoder::new(BufReader::new(open(path)?))
        .map_err(|e| unreadable(path, e))
}

fn webp_orientation(
    path: &Path,
    d: &mut image::codecs::webp::WebPDecoder<BufReader<std::fs::File>>,
) -> Result<Orientation> {
    let exif = d.exif_metadata().map_err(|e| unreadable(path, e))?;
    let xmp = d.xmp_metadata().map_err(|e| unreadable(path, e))?;
    Ok(orientation::find(exif.as_deref(), xmp.as_deref()))
}

/// Reads the header only (size, orientation): no pixels decoded. Oversized headers are
/// refused as [`decode`] refuses them.
pub fn read_header(path: &Path) -> Result<ImageHeader> {
    let (width, height, orientation) = match format_of(path)? {
        Format::Jpeg => {
            // Markers before the frame header can be long (ICC, thumbnails): read more until
            // libjpeg stops suspending or the file ends.
            let mut n = 64 << 10;
            let header = loop {
                let (data, whole) = read_prefix(path, n)?;
                match jpeg::read_header(&data) {
                    Err(jpeg::JpegError::Truncated) if !whole => n *= 4,
                    r => break r.map_err(|e| jpeg_error(path, e))?,
                }
            };
            let o = orientation::find(header.exif.as_deref(), header.xmp.as_deref());
            (header.width, header.height, o)
        }
        Format::Png => png::read_header(BufReader::new(open(path)?), |w, h| check_size(path, w, h))
            .map_err(|e| with_file(path, e))?,
        Format::Webp => {
            let mut d = webp_decoder(path)?;
            let (w, h) = d.dimensions();
            (w, h, webp_orientation(path, &mut d)?)
        }
    };
    check_size(path, width, height)?;
    Ok(ImageHeader {
        width,
        height,
        orientation,
    })
}

/// Errors from the PNG module: ours already name the file; the `png` crate's do not.
fn with_file(path: &Path, e: anyhow::Error) -> anyhow::Error {
    let shown = path.display().to_string();
    if e.to_string().starts_with(&shown) {
        e
    } else {
        unreadable(path, e)
    }
}

/// Decodes as stored, with the file's EXIF orientation (not applied).
pub fn decode_with_orientation(path: &Path) -> Result<(DynamicImage, Orientation)> {
    match format_of(path)? {
        Format::Jpeg => {
            let data = read_all(path)?;
            let (header, img) = jpeg::decode(&data, |h| check_size(path, h.width, h.height))
                .map_err(|e| jpeg_error(path, e))?;
            let o = orientation::find(header.exif.as_deref(), header.xmp.as_deref());
            Ok((img, o))
        }
        Format::Png => png::decode(BufReader::new(open(path)?), |w, h| check_size(path, w, h))
            .map_err(|e| with_file(path, e)),
        Format::Webp => {
            let mut d = webp_decoder(path)?;
            let (w, h) = d.dimensions();
            check_size(path, w, h)?;
            let o = webp_orientation(path, &mut d)?;
            d.set_limits(image::Limits::no_limits())
                .map_err(|e| unreadable(path, e))?;
            let img = DynamicImage::from_decoder(d).map_err(|e| unreadable(path, e))?;
            Ok((img, o))
        }
    }
}

/// Decodes an image file as Pillow's `Image.open(p)` holds it (EXIF orientation not applied):
/// L, LA, RGB or RGBA, 8 bits, equal to `convert("RGB")` / `convert("RGBA")`.
pub fn decode(path: &Path) -> Result<DynamicImage> {
    Ok(decode_with_orientation(path)?.0)
}

/// [`decode`], then `ImageOps.exif_transpose`: the image as displayed.
pub fn decode_upright(path: &Path) -> Result<DynamicImage> {
    let (img, o) = decode_with_orientation(path)?;
    Ok(exif_transpose(img, o))
}

/// `PIL.Image.open(p).convert("RGB")`: byte-identical, alpha dropped, orientation not applied.
pub fn read_rgb(path: &Path) -> Result<RgbImage> {
    Ok(decode(path)?.to_rgb8())
}

/// `ImageOps.exif_transpose(Image.open(p)).convert("RGB")`, as diffusers' `load_image`.
pub fn read_rgb_upright(path: &Path) -> Result<RgbImage> {
    Ok(decode_upright(path)?.to_rgb8())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_image_error_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("broken.jpg");
        std::fs::write(&p, b"not a jpeg at all").unwrap();
        let err = read_rgb(&p).unwrap_err().to_string();
        assert!(
            err.contains("broken.jpg") && err.contains("not a readable image"),
            "{err}"
        );
        std::fs::write(&p, b"\xff\xd8\xff\xe0\x00\x10JFIF\x00").unwrap();
        let err = format!("{:#}", read_rgb(&p).unwrap_err());
        assert!(
            err.contains("broken.jpg") && err.contains("truncated"),
            "{err}"
        );
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn size_limit_is_pillows_error_bound() {
        let p = Path::new("x.png");
        assert!(check_size(p, 13377, 13377).is_ok()); // 178,944,129 pixels
        let err = check_size(p, 100_000, 100_000).unwrap_err().to_string();
        assert!(
            err.starts_with("x.png: ") && err.contains("100000x100000"),
            "{err}"
        );
        assert!(check_size(p, 0, 5).is_err());
        assert_eq!(MAX_PIXELS, 178_956_970);
    }

    #[test]
    fn missing_file_names_it() {
        let err = read_header(Path::new("/no/such/photo.jpg"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/no/such/photo.jpg") && err.contains("cannot open"),
            "{err}"
        );
    }
}
