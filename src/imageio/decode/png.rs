//! PNG through the `png` crate, unpacked into the 8-bit pixels Pillow's `convert("RGB")` and
//! `convert("RGBA")` give (PngImagePlugin's modes, then Convert.c):
//!
//! - gray 1/2/4-bit scaled to 0..255 (`"1"`, `"L;2"`, `"L;4"`); 16-bit gray is `"I;16"`, whose
//!   conversion is not a rescale but a clip: values above 255 become 255;
//! - 16-bit RGB, RGBA and gray+alpha keep the high byte (`"RGB;16B"`, `"RGBA;16B"`, `"LA;16B"`);
//! - palettes expanded; a tRNS gives palette entries their alpha, and for gray/RGB images makes
//!   transparent the pixels whose *8-bit* value equals the tRNS value (Pillow compares after its
//!   conversion, so for 2/4-bit gray it compares the scaled value with the unscaled one);
//! - orientation from the eXIf chunk (or ImageMagick's "Raw profile type exif" text), XMP from
//!   the "XML:com.adobe.xmp" text; chunks after the image data are not read.
use super::orientation;
use anyhow::{anyhow, bail, Result};
use image::metadata::Orientation;
use image::{DynamicImage, GrayAlphaImage, GrayImage, RgbImage, RgbaImage};
use png::{BitDepth, ColorType, Transformations};
use std::io::{BufRead, Seek};

/// Reads the chunks up to the image data: size, orientation, and the reader for the pixels.
fn open<R: BufRead + Seek>(
    r: R,
    check: impl FnOnce(u32, u32) -> Result<()>,
) -> Result<(png::Reader<R>, Orientation)> {
    let mut decoder = png::Decoder::new_with_limits(r, png::Limits { bytes: usize::MAX });
    decoder.set_transformations(Transformations::IDENTITY);
    decoder.set_ignore_text_chunk(false);
    let info = decoder.read_header_info().map_err(|e| anyhow!("{e}"))?;
    check(info.width, info.height)?;
    let reader = decoder.read_info().map_err(|e| anyhow!("{e}"))?;
    let orientation = orientation_of(reader.info());
    Ok((reader, orientation))
}

/// Size (checked by `check` first) and orientation, from the chunks before the image data.
pub(super) fn read_header<R: BufRead + Seek>(
    r: R,
    check: impl FnOnce(u32, u32) -> Result<()>,
) -> Result<(u32, u32, Orientation)> {
    let (reader, orientation) = open(r, check)?;
    let info = reader.info();
    Ok((info.width, info.height, orientation))
}

fn orientation_of(info: &png::Info) -> Orientation {
    let mut raw_exif: Option<Vec<u8>> = None;
    let mut xmp: Option<Vec<u8>> = None;
    let mut text = |key: &str, value: String| {
        if key == "XML:com.adobe.xmp" && xmp.is_none() {
            xmp = Some(value.into_bytes());
        } else if key == "Raw profile type exif" && raw_exif.is_none() {
            // "\nexif\n<length>\n<hex lines>": the hex from the fourth line on.
            let hex: String = value.split('\n').skip(3).collect();
            raw_exif = decode_hex(&hex);
        }
    };
    let wanted = |key: &str| key == "XML:com.adobe.xmp" || key == "Raw profile type exif";
    for t in info
        .uncompressed_latin1_text
        .iter()
        .filter(|t| wanted(&t.keyword))
    {
        text(&t.keyword, t.text.clone());
    }
    // Compressed text is inflated only for those keys, and at most 2 MiB of it.
    for t in info
        .compressed_latin1_text
        .iter()
        .filter(|t| wanted(&t.keyword))
    {
        let mut t = t.clone();
        if t.decompress_text().is_ok() {
            if let Ok(v) = t.get_text() {
                text(&t.keyword, v);
            }
        }
    }
    for t in info.utf8_text.iter().filter(|t| wanted(&t.keyword)) {
        let mut t = t.clone();
        if t.decompress_text().is_ok() {
            if let Ok(v) = t.get_text() {
                text(&t.keyword, v);
            }
        }
    }
    let exif = info
        .exif_metadata
        .as_deref()
        .map(<[u8]>::to_vec)
        .or(raw_exif);
    orientation::find(exif.as_deref(), xmp.as_deref())
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|p| {
            std::str::from_utf8(p)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok())
        })
        .collect()
}

/// Decodes as Pillow does; `check` sees the size before any pixel memory is allocated.
pub(super) fn decode<R: BufRead + Seek>(
    r: R,
    check: impl FnOnce(u32, u32) -> Result<()>,
) -> Result<(DynamicImage, Orientation)> {
    let (mut reader, orientation) = open(r, check)?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| anyhow!("image too large for this machine"))?;
    let mut buf = vec![0u8; size];
    let frame = reader.next_frame(&mut buf).map_err(|e| anyhow!("{e}"))?;
    let info = reader.info();
    let layout = Layout {
        width: frame.width,
        height: frame.height,
        line: frame.line_size,
        color: frame.color_type,
        depth: frame.bit_depth,
    };
    let image = to_pillow(&layout, &buf, info.palette.as_deref(), info.trns.as_deref())?;
    Ok((image, orientation))
}

/// How the raw (untransformed) samples are laid out.
struct Layout {
    width: u32,
    height: u32,
    line: usize,
    color: ColorType,
    depth: BitDepth,
}

/// The samples of one row as integers (packed low bit depths unpacked, 16-bit big-endian).
fn samples(row: &[u8], depth: BitDepth, n: usize) -> Vec<u16> {
    match depth {
        BitDepth::Sixteen => row
            .chunks_exact(2)
            .take(n)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .collect(),
        BitDepth::Eight => row.iter().take(n).map(|&b| u16::from(b)).collect(),
        _ => {
            let bits = depth as usize;
            let per = 8 / bits;
            let mask = (1u16 << bits) - 1;
            (0..n)
                .map(|i| {
                    let byte = row[i / per];
                    let shift = 8 - bits * (i % per + 1);
                    (u16::from(byte) >> shift) & mask
                })
                .collect()
        }
    }
}

/// Pillow's 8-bit value of one sample: high byte for 16-bit (RGB/alpha channels).
fn high(v: u16, depth: BitDepth) -> u8 {
    match depth {
        BitDepth::Sixteen => (v >> 8) as u8,
        _ => v as u8,
    }
}

/// Pillow's L value of a gray sample: scaled for low depths, clipped for 16-bit ("I;16").
fn gray(v: u16, depth: BitDepth) -> u8 {
    match depth {
        BitDepth::One => (v * 255) as u8,
        BitDepth::Two => (v * 85) as u8,
        BitDepth::Four => (v * 17) as u8,
        BitDepth::Eight => v as u8,
        BitDepth::Sixteen => v.min(255) as u8,
    }
}

/// Sample `i` of a gray/RGB tRNS as the `png` crate keeps it: 16-bit big-endian for 16-bit
/// images, else one byte per sample (the low byte of the chunk's 16-bit value, which the
/// format requires to fit the bit depth; Pillow reads all 16 bits, which differs only for
/// invalid files).
fn trns_sample(t: &[u8], i: usize, depth: BitDepth) -> Option<u16> {
    match depth {
        BitDepth::Sixteen => Some(u16::from_be_bytes([*t.get(2 * i)?, *t.get(2 * i + 1)?])),
        _ => t.get(i).map(|&b| u16::from(b)),
    }
}

fn to_pillow(
    l: &Layout,
    buf: &[u8],
    palette: Option<&[u8]>,
    trns: Option<&[u8]>,
) -> Result<DynamicImage> {
    let (w, h) = (l.width as usize, l.height as usize);
    let channels = l.color.samples();
    let rows = || {
        buf.chunks(l.line)
            .take(h)
            .map(|r| samples(r, l.depth, w * channels))
    };
    let mut rgb = Vec::with_capacity(w * h * 3);
    let alpha: Option<Vec<u8>> = match l.color {
        ColorType::Grayscale => {
            // Pillow: "1" stores the key as 0/255, "L" and "I;16" as the raw tRNS value.
            let key = trns
                .and_then(|t| trns_sample(t, 0, l.depth))
                .map(|t| match l.depth {
                    BitDepth::One => u32::from(t != 0) * 255,
                    _ => u32::from(t),
                });
            let mut gray_px = Vec::with_capacity(w * h);
            for row in rows() {
                gray_px.extend(row.iter().map(|&v| gray(v, l.depth)));
            }
            let img = GrayImage::from_raw(l.width, l.height, gray_px).expect("L buffer");
            return Ok(match key {
                None => DynamicImage::ImageLuma8(img),
                Some(key) => {
                    let la = img
                        .pixels()
                        .flat_map(|p| [p[0], if u32::from(p[0]) == key { 0 } else { 255 }])
                        .collect();
                    DynamicImage::ImageLumaA8(
                        GrayAlphaImage::from_raw(l.width, l.height, la).expect("LA buffer"),
                    )
                }
            });
        }
        ColorType::GrayscaleAlpha if l.depth == BitDepth::Eight => {
            let la: Vec<u8> = rows().flatten().map(|v| v as u8).collect();
            return Ok(DynamicImage::ImageLumaA8(
                GrayAlphaImage::from_raw(l.width, l.height, la).expect("LA buffer"),
            ));
        }
        ColorType::GrayscaleAlpha => {
            // "LA;16B" unpacks into RGBA: gray high byte three times, alpha high byte.
            let mut a = Vec::with_capacity(w * h);
            for row in rows() {
                for p in row.chunks_exact(2) {
                    let g = high(p[0], l.depth);
                    rgb.extend([g, g, g]);
                    a.push(high(p[1], l.depth));
                }
            }
            Some(a)
        }
        ColorType::Rgb => {
            let key: Option<[u32; 3]> = trns.and_then(|t| {
                Some([
                    u32::from(trns_sample(t, 0, l.depth)?),
                    u32::from(trns_sample(t, 1, l.depth)?),
                    u32::from(trns_sample(t, 2, l.depth)?),
                ])
            });
            let mut a = key.map(|_| Vec::with_capacity(w * h));
            for row in rows() {
                for p in row.chunks_exact(3) {
                    let px = [
                        high(p[0], l.depth),
                        high(p[1], l.depth),
                        high(p[2], l.depth),
                    ];
                    rgb.extend(px);
                    if let (Some(a), Some(k)) = (a.as_mut(), key) {
                        let same = px.iter().zip(k).all(|(&c, k)| u32::from(c) == k);
                        a.push(if same { 0 } else { 255 });
                    }
                }
            }
            a
        }
        ColorType::Rgba => {
            let mut a = Vec::with_capacity(w * h);
            for row in rows() {
                for p in row.chunks_exact(4) {
                    rgb.extend([
                        high(p[0], l.depth),
                        high(p[1], l.depth),
                        high(p[2], l.depth),
                    ]);
                    a.push(high(p[3], l.depth));
                }
            }
            Some(a)
        }
        ColorType::Indexed => {
            let Some(palette) = palette else {
                bail!("palette image without a PLTE chunk");
            };
            let mut a = trns.map(|_| Vec::with_capacity(w * h));
            for row in rows() {
                for &i in &row {
                    let i = usize::from(i);
                    let c = palette.get(3 * i..3 * i + 3).unwrap_or(&[0, 0, 0]);
                    rgb.extend_from_slice(c);
                    if let (Some(a), Some(t)) = (a.as_mut(), trns) {
                        a.push(t.get(i).copied().unwrap_or(255));
                    }
                }
            }
            a
        }
    };
    Ok(match alpha {
        None => DynamicImage::ImageRgb8(RgbImage::from_raw(l.width, l.height, rgb).expect("RGB")),
        Some(a) => {
            let rgba = rgb
                .chunks_exact(3)
                .zip(a)
                .flat_map(|(c, a)| [c[0], c[1], c[2], a])
                .collect();
            DynamicImage::ImageRgba8(RgbaImage::from_raw(l.width, l.height, rgba).expect("RGBA"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpacks_low_bit_depths_msb_first() {
        assert_eq!(
            samples(&[0b1011_0001], BitDepth::One, 8),
            [1, 0, 1, 1, 0, 0, 0, 1]
        );
        assert_eq!(samples(&[0b1110_0100], BitDepth::Two, 4), [3, 2, 1, 0]);
        assert_eq!(samples(&[0xA5, 0x30], BitDepth::Four, 3), [10, 5, 3]);
        assert_eq!(
            samples(&[1, 2, 0xff, 0], BitDepth::Sixteen, 2),
            [258, 65280]
        );
    }

    #[test]
    fn sixteen_bit_gray_clips_and_colour_keeps_the_high_byte() {
        assert_eq!(gray(255, BitDepth::Sixteen), 255);
        assert_eq!(gray(256, BitDepth::Sixteen), 255);
        assert_eq!(gray(254, BitDepth::Sixteen), 254);
        assert_eq!(gray(3, BitDepth::Two), 255);
        assert_eq!(high(0x12ff, BitDepth::Sixteen), 0x12);
    }

    #[test]
    fn hex_profiles_decode() {
        assert_eq!(decode_hex("4578 69\n66"), Some(b"Exif".to_vec()));
        assert_eq!(decode_hex("zz"), None);
    }
}
