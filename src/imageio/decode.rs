//! Decoding image files, naming the file in every error.
use anyhow::{Context, Result};
use image::RgbImage;
use std::path::Path;

/// Decodes an image file (format from its content), naming the file in any error.
pub fn decode(path: &Path) -> Result<image::DynamicImage> {
    image::ImageReader::open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("{}: cannot read", path.display()))?
        .decode()
        .map_err(|e| anyhow::anyhow!("{}: not a readable image ({e})", path.display()))
}

/// Decodes an image file to RGB, naming the file in any error.
pub fn read_rgb(path: &Path) -> Result<RgbImage> {
    Ok(decode(path)?.to_rgb8())
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
    }
}
