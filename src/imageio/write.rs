//! Writing generated images with their full parameters: a PNG `parameters` text chunk and a
//! sidecar JSON.
use anyhow::{bail, Context, Result};
use image::RgbImage;
use std::io::BufWriter;
use std::path::Path;

/// Writes an image by its extension (png, jpg/jpeg, webp). PNGs carry `params` as JSON in a
/// `parameters` text chunk; every format also gets a sidecar `.json` with the same content.
/// Files are written to a temporary name and renamed, so a reader never sees half an image.
pub fn save_with_params(path: &Path, img: &RgbImage, params: &serde_json::Value) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create folder", dir.display()))?;
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let json = serde_json::to_string_pretty(params)?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("image")
    ));
    match ext.as_str() {
        "png" => write_png(&tmp, img, &json)?,
        "jpg" | "jpeg" => img
            .save_with_format(&tmp, image::ImageFormat::Jpeg)
            .with_context(|| format!("{}: cannot write", path.display()))?,
        "webp" => img
            .save_with_format(&tmp, image::ImageFormat::WebP)
            .with_context(|| format!("{}: cannot write", path.display()))?,
        other => bail!(
            "{}: unsupported output format '{other}' (use .png, .jpg or .webp)",
            path.display()
        ),
    }
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot write", path.display()))?;
    let sidecar = path.with_extension("json");
    std::fs::write(&sidecar, json + "\n")
        .with_context(|| format!("{}: cannot write", sidecar.display()))?;
    Ok(())
}

fn write_png(path: &Path, img: &RgbImage, params_json: &str) -> Result<()> {
    let file = std::fs::File::create(path)
        .with_context(|| format!("{}: cannot create", path.display()))?;
    let mut enc = png::Encoder::new(BufWriter::new(file), img.width(), img.height());
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.add_itxt_chunk("parameters".into(), params_json.into())?;
    enc.add_text_chunk(
        "Software".into(),
        format!("studioize {}", env!("CARGO_PKG_VERSION")),
    )?;
    let mut w = enc.write_header()?;
    w.write_image_data(img.as_raw())?;
    w.finish()?;
    Ok(())
}

/// Reads the `parameters` text chunk of a PNG written by [`save_with_params`].
pub fn read_png_params(path: &Path) -> Result<serde_json::Value> {
    let file =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let decoder = png::Decoder::new(std::io::BufReader::new(file));
    let reader = decoder
        .read_info()
        .with_context(|| format!("{}: not a PNG", path.display()))?;
    let info = reader.info();
    for chunk in &info.utf8_text {
        if chunk.keyword == "parameters" {
            let text = chunk.get_text()?;
            return Ok(serde_json::from_str(&text)?);
        }
    }
    bail!("{}: no studioize parameters chunk", path.display())
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
        let params = serde_json::json!({"prompt": "a red shoe", "seed": 7});
        save_with_params(&p, &img, &params).unwrap();
        assert_eq!(read_png_params(&p).unwrap(), params);
        let side: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(p.with_extension("json")).unwrap())
                .unwrap();
        assert_eq!(side, params);
        assert_eq!(read_rgb(&p).unwrap(), img);
        assert!(save_with_params(&dir.path().join("x.gif"), &img, &params).is_err());
    }
}
