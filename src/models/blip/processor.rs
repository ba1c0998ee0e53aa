//! BLIP's image preprocessing (transformers' `BlipImageProcessor`, Pillow backend): RGB
//! conversion, resize to the configured size with Pillow's filter, rescale, normalise with the
//! configured mean and std. Read from `preprocessor_config.json`, or from the `image_processor`
//! entry of `processor_config.json` (how transformers 5 saves a processor).
use super::resample::{self, Filter};
use crate::models::config::read_json;
use anyhow::{bail, Result};
use image::RgbImage;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use tch::Tensor;

#[derive(Debug, Clone, Deserialize)]
pub struct Size {
    pub height: Option<u32>,
    pub width: Option<u32>,
    pub shortest_edge: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ImageProcessorConfig {
    pub do_convert_rgb: bool,
    pub do_resize: bool,
    pub size: Size,
    pub resample: i64,
    pub do_rescale: bool,
    pub rescale_factor: f64,
    pub do_normalize: bool,
    pub image_mean: [f64; 3],
    pub image_std: [f64; 3],
}

impl Default for ImageProcessorConfig {
    /// BlipImageProcessor's defaults (OpenAI CLIP mean/std, bicubic, 384×384).
    fn default() -> Self {
        Self {
            do_convert_rgb: true,
            do_resize: true,
            size: Size {
                height: Some(384),
                width: Some(384),
                shortest_edge: None,
            },
            resample: 3,
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: [0.48145466, 0.4578275, 0.40821073],
            image_std: [0.26862954, 0.26130258, 0.27577711],
        }
    }
}

/// Preprocessing ready to apply: the resolved output size and filter.
#[derive(Debug, Clone)]
pub struct ImageProcessor {
    pub config: ImageProcessorConfig,
    pub width: u32,
    pub height: u32,
    pub filter: Filter,
    /// The file the config came from, for messages.
    pub source: PathBuf,
}

impl ImageProcessor {
    /// Finds the image processor config of a model folder.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let pre = dir.join("preprocessor_config.json");
        let proc = dir.join("processor_config.json");
        let (config, source) = if pre.is_file() {
            (read_json::<ImageProcessorConfig>(&pre)?, pre)
        } else if proc.is_file() {
            #[derive(Deserialize)]
            struct Wrapper {
                image_processor: Option<ImageProcessorConfig>,
            }
            let Some(cfg) = read_json::<Wrapper>(&proc)?.image_processor else {
                bail!("{}: has no image_processor entry", proc.display());
            };
            (cfg, proc)
        } else {
            bail!(
                "{}: no preprocessor_config.json or processor_config.json (not a BLIP model folder?)",
                dir.display()
            );
        };
        Self::new(config, source)
    }

    pub fn new(config: ImageProcessorConfig, source: PathBuf) -> Result<Self> {
        let err = |m: String| anyhow::anyhow!("{}: {m}", source.display());
        let (width, height) = match (
            &config.size.width,
            &config.size.height,
            &config.size.shortest_edge,
        ) {
            (Some(w), Some(h), _) => (*w, *h),
            (_, _, Some(s)) => (*s, *s),
            _ => return Err(err("size needs height and width".into())),
        };
        if width == 0 || height == 0 {
            return Err(err("size must be positive".into()));
        }
        if config.image_std.contains(&0.0) {
            return Err(err("image_std has a zero".into()));
        }
        let filter = Filter::from_pil(config.resample).map_err(|e| err(e.to_string()))?;
        Ok(Self {
            config,
            width,
            height,
            filter,
            source,
        })
    }

    /// Decodes an image file as `ImageOps.exif_transpose(Image.open(path))` (Pillow's pixels,
    /// upright: what transformers' `load_image` does for a path) and makes it RGB as the
    /// processor's `convert_rgb` does: grey and palette expanded, transparency composited over
    /// white (Pillow's `alpha_composite` arithmetic). For a path transformers itself would drop
    /// alpha (`load_image` ends in `convert("RGB")`); compositing is what it does for the
    /// Pillow images the fixture and benchmark scripts pass, and suits cut-out product shots.
    pub fn read(path: &Path) -> Result<RgbImage> {
        let img = crate::imageio::decode_upright(path)?;
        if !img.color().has_alpha() {
            return Ok(img.to_rgb8());
        }
        let rgba = img.to_rgba8();
        let mut out = RgbImage::new(rgba.width(), rgba.height());
        for (o, p) in out.pixels_mut().zip(rgba.pixels()) {
            *o = image::Rgb(over_white(p.0));
        }
        Ok(out)
    }

    /// Resized image, before rescaling (what Pillow hands back to the processor).
    pub fn resize(&self, img: &RgbImage) -> RgbImage {
        if !self.config.do_resize || (img.width() == self.width && img.height() == self.height) {
            return img.clone();
        }
        resample::resize(img, self.width, self.height, self.filter)
    }

    /// `pixel_values` of one image, `[3, H, W]` f32.
    pub fn pixel_values(&self, img: &RgbImage) -> Tensor {
        let img = self.resize(img);
        let (w, h) = (img.width() as usize, img.height() as usize);
        let c = &self.config;
        let mut data = vec![0f32; 3 * w * h];
        for (i, px) in img.pixels().enumerate() {
            for ch in 0..3 {
                let mut v = f64::from(px.0[ch]);
                if c.do_rescale {
                    v *= c.rescale_factor;
                }
                if c.do_normalize {
                    v = (v - c.image_mean[ch]) / c.image_std[ch];
                }
                data[ch * w * h + i] = v as f32;
            }
        }
        Tensor::from_slice(&data).view([3, h as i64, w as i64])
    }

    /// Reads and preprocesses a file.
    pub fn load(&self, path: &Path) -> Result<Tensor> {
        Ok(self.pixel_values(&Self::read(path)?))
    }
}

/// One RGBA pixel composited over opaque white, in Pillow's 7-bit fixed point with its rounded
/// division by 255.
fn over_white([r, g, b, a]: [u8; 4]) -> [u8; 3] {
    if a == 0 {
        return [255; 3];
    }
    let a = u32::from(a);
    let coef1 = a * 128;
    let coef2 = (255 - a) * 128;
    let mix = |c: u8| {
        let t = u32::from(c) * coef1 + 255 * coef2 + (0x80 << 7);
        ((((t >> 8) + t) >> 8) >> 7) as u8
    };
    [mix(r), mix(g), mix(b)]
}

#[cfg(test)]
mod tests {
    use super::over_white;

    #[test]
    fn opaque_pixels_are_unchanged_and_transparent_ones_white() {
        for v in 0..=255u8 {
            assert_eq!(over_white([v, v, 255 - v, 255]), [v, v, 255 - v]);
            assert_eq!(over_white([v, 0, 7, 0]), [255, 255, 255]);
        }
        // Half-transparent black is mid grey.
        assert_eq!(over_white([0, 0, 0, 128]), [127, 127, 127]);
    }
}
