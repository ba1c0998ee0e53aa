//! JPEG through libjpeg-turbo's decoder (the `mozjpeg-sys` build of it), driven exactly as
//! Pillow's `JpegDecode.c` drives it, so that the pixels are Pillow's:
//!
//! - a *suspending* source over the file's bytes: when libjpeg asks for bytes past the end, it
//!   suspends, and a suspension before the last scanline is Pillow's "image file is truncated"
//!   (a file that only lacks the EOI after the last row is accepted, as Pillow accepts it);
//! - libjpeg's defaults, as Pillow leaves them: ISLOW integer IDCT, fancy (triangle) chroma
//!   upsampling, block smoothing; the colour space guessed by libjpeg from JFIF/Adobe markers;
//! - output L for 1-component files, RGB for 3 (YCbCr converted by libjpeg), and for 4
//!   (CMYK/YCCK) libjpeg's CMYK, inverted ("CMYK;I": Pillow assumes Adobe polarity) and turned
//!   into RGB with Pillow's `cmyk2rgb`; other component counts and precisions are refused;
//! - warnings ignored (Pillow's `output_message` prints nothing), errors fatal.
//!
//! libjpeg reports fatal errors through `error_exit`, which must not return: ours unwinds
//! (`resume_unwind`, so no panic message is printed) through libjpeg's frames (built with
//! `-fexceptions`) to the `catch_unwind` around every libjpeg call, and the decompressor is
//! destroyed on every path by `Drop`. This needs `panic = "unwind"` (the default profile).
use image::{DynamicImage, GrayImage, RgbImage};
use mozjpeg_sys as ffi;
use std::os::raw::c_long;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

/// What the file header says.
#[derive(Debug, Clone, Default)]
pub(super) struct JpegHeader {
    pub width: u32,
    pub height: u32,
    /// The Exif APP1 payloads joined as Pillow joins them (`info["exif"]`), if any.
    pub exif: Option<Vec<u8>>,
    /// The last XMP APP1 packet (`info["xmp"]`), if any.
    pub xmp: Option<Vec<u8>>,
}

/// Why a JPEG was not decoded.
#[derive(Debug)]
pub(super) enum JpegError {
    /// libjpeg needed bytes past the end of the data.
    Truncated,
    /// libjpeg's fatal error, or a layout Pillow refuses.
    Broken(String),
    /// The header was fine, but the caller refused its size.
    Refused(anyhow::Error),
}

/// libjpeg's `JMSG_LENGTH_MAX`: the size of a formatted message.
const JMSG_LENGTH_MAX: usize = 200;

/// libjpeg's message for a fatal error, carried by the unwind.
struct LibjpegError(String);

/// Runs libjpeg calls, turning a fatal libjpeg error into `Err(message)`.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, JpegError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => Ok(v),
        Err(payload) => match payload.downcast::<LibjpegError>() {
            Ok(e) => Err(JpegError::Broken(e.0)),
            Err(other) => resume_unwind(other),
        },
    }
}

unsafe extern "C-unwind" fn error_exit(cinfo: &mut ffi::jpeg_common_struct) {
    let mut buf = [0u8; JMSG_LENGTH_MAX];
    let err = &*cinfo.err;
    let msg = match err.format_message {
        Some(format) => {
            // The binding declares an 80-byte buffer; libjpeg writes up to JMSG_LENGTH_MAX.
            let format: unsafe extern "C-unwind" fn(&mut ffi::jpeg_common_struct, *mut u8) =
                std::mem::transmute(format);
            format(cinfo, buf.as_mut_ptr());
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            String::from_utf8_lossy(&buf[..end]).into_owned()
        }
        None => format!("libjpeg error {}", err.msg_code),
    };
    resume_unwind(Box::new(LibjpegError(msg)));
}

unsafe extern "C-unwind" fn output_message(_cinfo: &mut ffi::jpeg_common_struct) {}

unsafe extern "C-unwind" fn init_source(_cinfo: &mut ffi::jpeg_decompress_struct) {}

unsafe extern "C-unwind" fn term_source(_cinfo: &mut ffi::jpeg_decompress_struct) {}

/// All bytes were handed over at the start: asking for more is a suspension.
unsafe extern "C-unwind" fn fill_input_buffer(
    _cinfo: &mut ffi::jpeg_decompress_struct,
) -> ffi::boolean {
    0
}

/// Skips within the data; a skip past its end leaves nothing, so the next read suspends.
unsafe extern "C-unwind" fn skip_input_data(
    cinfo: &mut ffi::jpeg_decompress_struct,
    num_bytes: c_long,
) {
    let src = &mut *cinfo.src;
    let n = usize::try_from(num_bytes)
        .unwrap_or(0)
        .min(src.bytes_in_buffer);
    src.next_input_byte = src.next_input_byte.add(n);
    src.bytes_in_buffer -= n;
}

/// A libjpeg decompressor reading `data`, destroyed on drop.
struct Decompressor<'a> {
    cinfo: Box<ffi::jpeg_decompress_struct>,
    _err: Box<ffi::jpeg_error_mgr>,
    _src: Box<ffi::jpeg_source_mgr>,
    _data: &'a [u8],
}

impl Drop for Decompressor<'_> {
    fn drop(&mut self) {
        // SAFETY: the struct was zeroed and then created; destroy copes with both.
        unsafe { ffi::jpeg_destroy_decompress(&mut self.cinfo) };
    }
}

impl<'a> Decompressor<'a> {
    fn new(data: &'a [u8]) -> Result<Self, JpegError> {
        // SAFETY: zeroed C structs are valid "not yet created" states; every pointer stored in
        // them (error manager, source, data) is boxed or borrowed for the decompressor's life.
        unsafe {
            let mut err: Box<ffi::jpeg_error_mgr> = Box::new(std::mem::zeroed());
            ffi::jpeg_std_error(&mut err);
            err.error_exit = Some(error_exit);
            err.output_message = Some(output_message);
            let mut src: Box<ffi::jpeg_source_mgr> = Box::new(std::mem::zeroed());
            src.next_input_byte = data.as_ptr();
            src.bytes_in_buffer = data.len();
            src.init_source = Some(init_source);
            src.fill_input_buffer = Some(fill_input_buffer);
            src.skip_input_data = Some(skip_input_data);
            src.resync_to_restart = Some(ffi::jpeg_resync_to_restart);
            src.term_source = Some(term_source);
            let mut d = Decompressor {
                cinfo: Box::new(std::mem::zeroed()),
                _err: err,
                _src: src,
                _data: data,
            };
            d.cinfo.common.err = &mut *d._err;
            let cinfo: *mut ffi::jpeg_decompress_struct = &mut *d.cinfo;
            guarded(|| ffi::jpeg_create_decompress(cinfo))?;
            d.cinfo.src = &mut *d._src;
            guarded(|| ffi::jpeg_save_markers(&mut *cinfo, 0xE1, 0xFFFF))?;
            Ok(d)
        }
    }

    /// `jpeg_read_header` as Pillow calls it (tables-only datastreams skipped).
    fn read_header(&mut self) -> Result<JpegHeader, JpegError> {
        let cinfo = &mut *self.cinfo;
        loop {
            // SAFETY: a created decompressor with a valid source.
            let r = guarded(|| unsafe { ffi::jpeg_read_header(cinfo, 0) })?;
            match r {
                1 => break,                            // JPEG_HEADER_OK
                2 => continue,                         // JPEG_HEADER_TABLES_ONLY
                _ => return Err(JpegError::Truncated), // JPEG_SUSPENDED
            }
        }
        let mut header = JpegHeader {
            width: cinfo.image_width,
            height: cinfo.image_height,
            ..Default::default()
        };
        let mut marker = cinfo.marker_list;
        while !marker.is_null() {
            // SAFETY: libjpeg's list of saved markers, alive until the decompressor is destroyed.
            let m = unsafe { &*marker };
            let bytes = if m.data.is_null() {
                &[][..]
            } else {
                unsafe { std::slice::from_raw_parts(m.data, m.data_length as usize) }
            };
            if m.marker == 0xE1 && bytes.starts_with(b"Exif\0\0") {
                match &mut header.exif {
                    Some(exif) => exif.extend_from_slice(&bytes[6..]),
                    None => header.exif = Some(bytes.to_vec()),
                }
            } else if m.marker == 0xE1 && bytes.starts_with(b"http://ns.adobe.com/xap/1.0/\0") {
                let at = bytes
                    .iter()
                    .position(|&b| b == 0)
                    .map_or(bytes.len(), |i| i + 1);
                header.xmp = Some(bytes[at..].to_vec());
            }
            marker = m.next;
        }
        Ok(header)
    }
}

/// Reads the header only.
pub(super) fn read_header(data: &[u8]) -> Result<JpegHeader, JpegError> {
    Decompressor::new(data)?.read_header()
}

/// Decodes as Pillow does; `check` sees the header before any pixel memory is allocated.
pub(super) fn decode(
    data: &[u8],
    check: impl FnOnce(&JpegHeader) -> anyhow::Result<()>,
) -> Result<(JpegHeader, DynamicImage), JpegError> {
    let mut d = Decompressor::new(data)?;
    let header = d.read_header()?;
    check(&header).map_err(JpegError::Refused)?;
    let cinfo = &mut *d.cinfo;
    let components = cinfo.num_components;
    cinfo.out_color_space = match components {
        1 => ffi::JCS_GRAYSCALE,
        3 => ffi::JCS_RGB,
        4 => ffi::JCS_CMYK,
        n => return Err(JpegError::Broken(format!("cannot handle {n}-layer images"))),
    };
    cinfo.dct_method = ffi::J_DCT_METHOD::JDCT_ISLOW;
    cinfo.do_fancy_upsampling = 1;
    // SAFETY: header read; output parameters set.
    if guarded(|| unsafe { ffi::jpeg_start_decompress(cinfo) })? == 0 {
        return Err(JpegError::Truncated);
    }
    let (w, h) = (cinfo.output_width as usize, cinfo.output_height as usize);
    let channels = cinfo.output_components as usize;
    if channels != components as usize {
        return Err(JpegError::Broken(format!(
            "libjpeg gives {channels} channels for a {components}-component image"
        )));
    }
    let row_len = w * channels;
    let mut pixels = vec![0u8; row_len * h];
    for row in pixels.chunks_exact_mut(row_len.max(1)).take(h) {
        let mut rows = [row.as_mut_ptr()];
        // SAFETY: one row of exactly output_width * output_components bytes.
        let n = guarded(|| unsafe { ffi::jpeg_read_scanlines(cinfo, rows.as_mut_ptr(), 1) })?;
        if n != 1 {
            return Err(JpegError::Truncated);
        }
    }
    // Pillow ignores a suspension here (all rows are out); errors still count.
    // SAFETY: every scanline has been read.
    guarded(|| unsafe { ffi::jpeg_finish_decompress(cinfo) })?;
    let (w, h) = (w as u32, h as u32);
    let image = match channels {
        1 => DynamicImage::ImageLuma8(GrayImage::from_raw(w, h, pixels).expect("L buffer")),
        3 => DynamicImage::ImageRgb8(RgbImage::from_raw(w, h, pixels).expect("RGB buffer")),
        _ => DynamicImage::ImageRgb8(inverted_cmyk_to_rgb(w, h, &pixels)),
    };
    Ok((header, image))
}

/// Pillow's `MULDIV255`: `a * b / 255`, rounded, in integers.
fn muldiv255(a: u32, b: u32) -> u32 {
    let t = a * b + 128;
    ((t >> 8) + t) >> 8
}

/// libjpeg's CMYK read as Pillow's "CMYK;I" (every channel inverted) and converted with its
/// `cmyk2rgb`: `255 - k - c * (255 - k) / 255` per channel.
fn inverted_cmyk_to_rgb(w: u32, h: u32, cmyk: &[u8]) -> RgbImage {
    let mut out = Vec::with_capacity(cmyk.len() / 4 * 3);
    for px in cmyk.chunks_exact(4) {
        let nk = u32::from(px[3]); // 255 - (255 - k)
        for &c in &px[..3] {
            let c = 255 - u32::from(c);
            out.push(nk.saturating_sub(muldiv255(c, nk)).min(255) as u8);
        }
    }
    RgbImage::from_raw(w, h, out).expect("RGB buffer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_a_libjpeg_error_not_a_crash() {
        let err = read_header(b"\xff\xd8\xff\xe0garbage that is no JPEG at all").unwrap_err();
        assert!(
            matches!(err, JpegError::Broken(_) | JpegError::Truncated),
            "{err:?}"
        );
        match read_header(b"\x89PNG not a jpeg") {
            Err(JpegError::Broken(m)) => assert!(m.contains("Not a JPEG file"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn empty_data_is_truncated() {
        assert!(matches!(read_header(b""), Err(JpegError::Truncated)));
        assert!(matches!(
            read_header(b"\xff\xd8"),
            Err(JpegError::Truncated)
        ));
    }

    #[test]
    fn cmyk_conversion_is_pillows() {
        // Stored (inverted) CMYK 255,255,255,255 is c=m=y=k=0: white.
        let px = inverted_cmyk_to_rgb(1, 1, &[255, 255, 255, 255]);
        assert_eq!(px.as_raw(), &[255, 255, 255]);
        // k = 255 (stored 0): black whatever the colour.
        let px = inverted_cmyk_to_rgb(1, 1, &[10, 200, 90, 0]);
        assert_eq!(px.as_raw(), &[0, 0, 0]);
        // c = 255 - 55 = 200, k = 255 - 205 = 50: nk = 205, 205 - 200 * 205 / 255 = 44.2 -> 44.
        let px = inverted_cmyk_to_rgb(1, 1, &[55, 255, 255, 205]);
        assert_eq!(px.as_raw(), &[44, 205, 205]);
    }
}
