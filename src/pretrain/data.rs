//! The pretraining images: a catalogue's general scenes, casual photos and a share of its studio
//! photos, with their captions (`metadata.csv` of each folder, as `make-catalogue` writes them),
//! decoded once into one `[N, 3, S, S]` tensor in [-1, 1].
use crate::data::captions::read_csv;
use crate::data::transform::load_image;
use anyhow::{bail, Result};
use rayon::prelude::*;
use std::path::Path;
use tch::{Kind, Tensor};

/// Which folder of the catalogue an image comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Studio,
    Casual,
    General,
}

impl Part {
    pub fn folder(self) -> &'static str {
        match self {
            Part::Studio => "studio",
            Part::Casual => "casual",
            Part::General => "general",
        }
    }
}

/// The decoded training images.
pub struct Images {
    /// `[N, 3, S, S]` fp32 in [-1, 1].
    pub pixels: Tensor,
    pub captions: Vec<String>,
    pub parts: Vec<Part>,
}

impl Images {
    pub fn len(&self) -> usize {
        self.captions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.captions.is_empty()
    }

    pub fn count(&self, part: Part) -> usize {
        self.parts.iter().filter(|&&p| p == part).count()
    }
}

/// Reads `dir/{studio,casual,general}/metadata.csv` and their images (the first
/// `studio_share` of the studio rows), resized to `size` when they differ.
pub fn read_catalogue(dir: &Path, size: u32, studio_share: f64) -> Result<Images> {
    if !dir.is_dir() {
        bail!(
            "{}: no such catalogue folder (write one with `studioize make-catalogue`)",
            dir.display()
        );
    }
    let mut rows = Vec::new();
    for part in [Part::General, Part::Casual, Part::Studio] {
        let folder = dir.join(part.folder());
        let csv = folder.join("metadata.csv");
        if !csv.is_file() {
            bail!(
                "{}: missing (not a catalogue written by `studioize make-catalogue`)",
                csv.display()
            );
        }
        let mut list = read_csv(&csv)?;
        if part == Part::Studio {
            let keep = ((list.len() as f64) * studio_share).ceil() as usize;
            list.truncate(keep);
        }
        rows.extend(
            list.into_iter()
                .map(|r| (folder.join(&r.file_name), r.text, part)),
        );
    }
    if rows.is_empty() {
        bail!("{}: the catalogue's CSVs list no images", dir.display());
    }
    let decoded: Vec<Vec<u8>> = rows
        .par_iter()
        .map(|(path, _, _)| {
            let img = load_image(path)?;
            let img = if img.width() != size || img.height() != size {
                crate::imageio::resize(&img, size, size)
            } else {
                img
            };
            Ok(img.into_raw())
        })
        .collect::<Result<_>>()?;
    let s = size as i64;
    let flat: Vec<u8> = decoded.concat();
    let pixels = Tensor::from_slice(&flat)
        .view([rows.len() as i64, s, s, 3])
        .permute([0, 3, 1, 2])
        .to_kind(Kind::Float)
        / 127.5
        - 1.0;
    let (captions, parts) = rows.into_iter().map(|(_, t, p)| (t, p)).unzip();
    Ok(Images {
        pixels: pixels.contiguous(),
        captions,
        parts,
    })
}
