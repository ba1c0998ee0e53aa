//! EXIF orientation as Pillow reads and applies it (`Image.getexif()` + `ImageOps.exif_transpose`):
//! the Orientation tag (0x0112) of the EXIF block's first IFD, or, when the EXIF block has no
//! such tag, the first `tiff:Orientation="N"` / `<tiff:Orientation>N` in the XMP packet; values
//! 2-8 transpose the image (1 and anything else leave it as stored).
use image::metadata::Orientation;
use image::DynamicImage;

/// The orientation Pillow finds in `exif` (a TIFF block, with or without the `Exif\0\0`
/// prefix) or, failing that, in `xmp`.
pub(super) fn find(exif: Option<&[u8]>, xmp: Option<&[u8]>) -> Orientation {
    let value = match exif.and_then(exif_orientation) {
        Some(v) => Some(v),
        None => xmp.and_then(xmp_orientation),
    };
    value
        .and_then(|v| u8::try_from(v).ok())
        .and_then(Orientation::from_exif)
        .unwrap_or(Orientation::NoTransforms)
}

/// The Orientation tag of IFD0, if present (any integer type, one value).
fn exif_orientation(mut data: &[u8]) -> Option<u32> {
    while let Some(rest) = data.strip_prefix(b"Exif\0\0") {
        data = rest;
    }
    let big = match data.get(..4)? {
        b"II\x2a\0" => false,
        b"MM\0\x2a" => true,
        _ => return None,
    };
    let u16_at = |at: usize| -> Option<u16> {
        let b: [u8; 2] = data.get(at..at + 2)?.try_into().ok()?;
        Some(if big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b: [u8; 4] = data.get(at..at + 4)?.try_into().ok()?;
        Some(if big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    };
    let ifd = u32_at(4)? as usize;
    let count = u16_at(ifd)? as usize;
    for i in 0..count {
        let entry = ifd + 2 + 12 * i;
        if u16_at(entry)? != 0x0112 {
            continue;
        }
        let (kind, n) = (u16_at(entry + 2)?, u32_at(entry + 4)?);
        if n != 1 {
            return None; // Pillow reads a tuple, which is no orientation
        }
        let value = entry + 8;
        return match kind {
            1 => data.get(value).map(|&b| u32::from(b)), // BYTE
            3 => u16_at(value).map(u32::from),           // SHORT
            4 => u32_at(value),                          // LONG
            _ => None,
        };
    }
    None
}

/// Pillow's `re.search(rb'tiff:Orientation(="|>)([0-9])', xmp)`.
fn xmp_orientation(xmp: &[u8]) -> Option<u32> {
    const KEY: &[u8] = b"tiff:Orientation";
    let mut from = 0;
    while let Some(at) = find_bytes(&xmp[from..], KEY) {
        let rest = &xmp[from + at + KEY.len()..];
        let digit = match rest {
            [b'=', b'"', d, ..] | [b'>', d, ..] if d.is_ascii_digit() => Some(*d),
            _ => None,
        };
        if let Some(d) = digit {
            return Some(u32::from(d - b'0'));
        }
        from += at + 1;
    }
    None
}

fn find_bytes(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `ImageOps.exif_transpose` for a known orientation: 2 mirror, 3 rotate 180, 4 flip, 5
/// transpose, 6 rotate 90 clockwise, 7 transverse, 8 rotate 90 counter-clockwise.
pub fn exif_transpose(mut img: DynamicImage, orientation: Orientation) -> DynamicImage {
    img.apply_orientation(orientation);
    img
}

/// The size after [`exif_transpose`]: width and height swap for the four quarter turns.
pub fn oriented_size(width: u32, height: u32, orientation: Orientation) -> (u32, u32) {
    match orientation {
        Orientation::Rotate90
        | Orientation::Rotate270
        | Orientation::Rotate90FlipH
        | Orientation::Rotate270FlipH => (height, width),
        _ => (width, height),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiff(big: bool, kind: u16, count: u32, value: u32) -> Vec<u8> {
        let mut t = Vec::new();
        let p16 = |v: u16| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let p32 = |v: u32| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        t.extend_from_slice(if big { b"MM\0\x2a" } else { b"II\x2a\0" });
        t.extend_from_slice(&p32(8));
        t.extend_from_slice(&p16(2));
        // An unrelated tag first (ImageWidth), then Orientation.
        t.extend_from_slice(&p16(0x0100));
        t.extend_from_slice(&p16(3));
        t.extend_from_slice(&p32(1));
        t.extend_from_slice(&p32(640));
        t.extend_from_slice(&p16(0x0112));
        t.extend_from_slice(&p16(kind));
        t.extend_from_slice(&p32(count));
        let v = match kind {
            3 => {
                let mut b = p16(value as u16).to_vec();
                b.extend_from_slice(&[0, 0]);
                b
            }
            _ => p32(value).to_vec(),
        };
        t.extend_from_slice(&v);
        t.extend_from_slice(&p32(0));
        t
    }

    #[test]
    fn reads_the_tag_in_both_byte_orders_and_types() {
        for big in [false, true] {
            assert_eq!(exif_orientation(&tiff(big, 3, 1, 6)), Some(6));
            assert_eq!(exif_orientation(&tiff(big, 4, 1, 8)), Some(8));
            assert_eq!(exif_orientation(&tiff(big, 3, 2, 6)), None);
        }
        let mut prefixed = b"Exif\0\0".to_vec();
        prefixed.extend(tiff(false, 3, 1, 3));
        assert_eq!(find(Some(&prefixed), None), Orientation::Rotate180);
        assert_eq!(exif_orientation(b"Exif\0\0II*\0\xff\xff\xff\xff"), None);
        assert_eq!(exif_orientation(b"garbage"), None);
    }

    #[test]
    fn xmp_counts_only_without_an_exif_tag() {
        let xmp = br#"<x tiff:Orientation="6"/>"#;
        assert_eq!(find(None, Some(xmp)), Orientation::Rotate90);
        assert_eq!(find(Some(b"garbage"), Some(xmp)), Orientation::Rotate90);
        assert_eq!(
            find(Some(&tiff(false, 3, 1, 1)), Some(xmp)),
            Orientation::NoTransforms
        );
        let element = b"<tiff:Orientation>8</tiff:Orientation>";
        assert_eq!(find(None, Some(element)), Orientation::Rotate270);
        assert_eq!(
            find(None, Some(b"tiff:Orientation=\"x\" tiff:Orientation>3")),
            Orientation::Rotate180
        );
        assert_eq!(
            find(None, Some(b"tiff:Orientation=\"9\"")),
            Orientation::NoTransforms
        );
    }

    #[test]
    fn quarter_turns_swap_the_size() {
        assert_eq!(oriented_size(4, 3, Orientation::Rotate90), (3, 4));
        assert_eq!(oriented_size(4, 3, Orientation::Rotate270FlipH), (3, 4));
        assert_eq!(oriented_size(4, 3, Orientation::FlipVertical), (4, 3));
    }
}
