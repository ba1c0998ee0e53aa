//! Writing generated images with their full parameters.
//!
//! PNGs carry the parameters twice: a `parameters` text chunk in AUTOMATIC1111's infotext
//! layout (what A1111's PNG-info tab, ComfyUI and image browsers read) and a `studioize` chunk
//! with the exact JSON record; every format also gets the JSON as a sidecar file named after the
//! whole image file name (`x.png.json`, `x.jpg.json`: two formats of one stem never share one).
//! Images and sidecars are written to a temporary file and renamed, so a reader (or a full disk)
//! never leaves half a file, and a symlink planted at the target is replaced, not followed.
use super::infotext;
use crate::fsutil::{write_atomic, write_atomic_with};
use anyhow::{anyhow, bail, Context, Result};
use image::RgbImage;
use std::path::{Path, PathBuf};

/// The PNG text chunk holding the exact JSON record.
pub const JSON_CHUNK: &str = "studioize";

/// The output formats, by (lowercase) extension.
pub const OUTPUT_EXTS: [&str; 4] = ["png", "jpg", "jpeg", "webp"];

/// The sidecar JSON of an image: its file name with `.json` appended.
pub fn sidecar_path(image: &Path) -> PathBuf {
    let mut name = image.file_name().unwrap_or_default().to_os_string();
    name.push(".json");
    image.with_file_name(name)
}

fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default()
}

/// Writes an image by its extension (png, jpg/jpeg, webp) with its parameters (see the module
/// docs) and the sidecar JSON.
pub fn save_with_params(path: &Path, img: &RgbImage, params: &serde_json::Value) -> Result<()> {
    let json = serde_json::to_string_pretty(params)?;
    match extension(path).as_str() {
        "png" => {
            let text = infotext::format(params);
            write_atomic_with(path, |w| {
                encode_png(w, img, &[("parameters", &text), (JSON_CHUNK, &json)])
            })?
        }
        "jpg" | "jpeg" => write_encoded(path, img, image::ImageFormat::Jpeg)?,
        "webp" => write_encoded(path, img, image::ImageFormat::WebP)?,
        other => bail!(
            "{}: unsupported output format '{other}' (use .png, .jpg or .webp)",
            path.display()
        ),
    }
    write_atomic(&sidecar_path(path), (json + "\n").as_bytes())
}

fn write_encoded(path: &Path, img: &RgbImage, format: image::ImageFormat) -> Result<()> {
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, format)
        .map_err(|e| anyhow!("{}: cannot encode ({e})", path.display()))?;
    write_atomic(path, buf.get_ref())
}

/// Writes a plain PNG (grids, charts) atomically.
pub fn save_png(path: &Path, img: &RgbImage) -> Result<()> {
    write_atomic_with(path, |w| encode_png(w, img, &[]))
}

fn encode_png(w: &mut impl std::io::Write, img: &RgbImage, texts: &[(&str, &str)]) -> Result<()> {
    let mut enc = png::Encoder::new(w, img.width(), img.height());
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    for (key, text) in texts {
        // Latin-1 text goes in a tEXt chunk, as A1111 (through Pillow) writes it; anything
        // else in an iTXt chunk, which every reader of `parameters` also accepts.
        if text.chars().all(|c| (c as u32) < 256) {
            enc.add_text_chunk(key.to_string(), text.to_string())?;
        } else {
            enc.add_itxt_chunk(key.to_string(), text.to_string())?;
        }
    }
    enc.add_text_chunk(
        "Software".into(),
        format!("studioize {}", env!("CARGO_PKG_VERSION")),
    )?;
    let mut w = enc.write_header()?;
    w.write_image_data(img.as_raw())?;
    w.finish()?;
    Ok(())
}

/// The text chunks of a PNG, by keyword.
pub fn read_png_texts(path: &Path) -> Result<Vec<(String, String)>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let decoder = png::Decoder::new(std::io::BufReader::new(file));
    let reader = decoder
        .read_info()
        .with_context(|| format!("{}: not a PNG", path.display()))?;
    let info = reader.info();
    let mut out: Vec<(String, String)> = info
        .uncompressed_latin1_text
        .iter()
        .map(|c| (c.keyword.clone(), c.text.clone()))
        .collect();
    for c in &info.utf8_text {
        out.push((c.keyword.clone(), c.get_text()?));
    }
    Ok(out)
}

/// The exact parameters record of a PNG written by [`save_with_params`].
pub fn read_png_params(path: &Path) -> Result<serde_json::Value> {
    let texts = read_png_texts(path)?;
    let Some((_, text)) = texts.iter().find(|(k, _)| k == JSON_CHUNK) else {
        bail!("{}: no studioize parameters chunk", path.display());
    };
    serde_json::from_str(text).with_context(|| format!("{}: invalid parameters", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imageio::read_rgb;

    #[test]
    fn png_carries_parameters_and_sidecar() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a").join("x.png");
        let img = RgbImage::from_pixel(8, 4, image::Rgb([10, 20, 30]));
        let params = serde_json::json!({"prompt": "a red shoe", "seed": 7, "steps": 20,
            "sampler": "euler-a", "guidance": 7.5, "width": 8, "height": 4});
        save_with_params(&p, &img, &params).unwrap();
        assert_eq!(read_png_params(&p).unwrap(), params);
        let side: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("a/x.png.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(side, params);
        let texts = read_png_texts(&p).unwrap();
        let a1111 = &texts.iter().find(|(k, _)| k == "parameters").unwrap().1;
        assert!(
            a1111.starts_with("a red shoe\nSteps: 20, Sampler: Euler a,"),
            "{a1111}"
        );
        assert_eq!(read_rgb(&p).unwrap(), img);
        // Another format of the same stem has its own sidecar.
        save_with_params(
            &dir.path().join("a/x.jpg"),
            &img,
            &serde_json::json!({"seed": 8}),
        )
        .unwrap();
        assert_eq!(read_png_params(&p).unwrap(), params);
        assert!(dir.path().join("a/x.jpg.json").is_file());
        assert!(save_with_params(&dir.path().join("x.gif"), &img, &params).is_err());
    }

    #[test]
    fn a_planted_symlink_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim.txt");
        std::fs::write(&victim, "keep me").unwrap();
        let p = dir.path().join("x.png");
        std::os::unix::fs::symlink(&victim, sidecar_path(&p)).unwrap();
        let img = RgbImage::from_pixel(2, 2, image::Rgb([1, 2, 3]));
        save_with_params(&p, &img, &serde_json::json!({"seed": 1})).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
        assert!(!std::fs::symlink_metadata(sidecar_path(&p))
            .unwrap()
            .file_type()
            .is_symlink());
    }
}
