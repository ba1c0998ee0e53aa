//! A synthetic product catalogue in which studio-izing is a real, measurable task: products
//! (mug, bottle, box, ball, bag, shoe) in eight colours and three sizes, each photographed
//! twice, as a **studio photo** (white seamless background, centred, soft contact shadow,
//! neutral light) and as a **casual photo** of the same product (cluttered table or coloured
//! wall, off-centre, tilted, colour cast, blur, noise), with product masks; plus a **general**
//! set of scenes without products (the prior of a fine-tune).
//!
//! Layout written by [`generate`] into `DIR`:
//! - `studio/` and `casual/`: `<pair>.png` (the same name in both folders: `p00000.png`, ...)
//!   and `metadata.csv` with `file_name,text,kind,colour,size,x0,y0,x1,y1,pair,background`
//!   (`file_name,text` first, as `train` reads it; the box is the product mask's pixels at
//!   >= 50% coverage, x1 / y1 exclusive; `background` is `white`, `table` or `wall`);
//! - `masks/<pair>.png` (the product in the studio photo) and `masks/<pair>-casual.png` (in
//!   the casual photo): 8-bit coverage, 255 = product, 0 = background;
//! - `general/`: `g00000.png`, ... and `metadata.csv` with `file_name,text,kind,colour`;
//! - or, with `--per-product N`, only `products/<kind>-<colour>/`: N studio photos of one
//!   product each, for DreamBooth over a catalogue ([`per_product`]).
//!
//! Product `i` is kind `KINDS[i % 6]` in colour `COLOURS[(i / 6) % 8]`, so every 48
//! consecutive products hold each kind x colour once; everything else (size, proportions,
//! backgrounds, clutter, camera) is drawn from a random stream of (seed, purpose, index), so
//! the same seed gives the same bytes whatever the thread count.
pub mod general;
pub mod per_product;
pub mod products;
pub mod raster;
pub mod render;

use super::rng::SplitMix64;
use crate::fsutil::write_atomic;
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use std::path::Path;

/// Purposes of the catalogue's random streams (beside `data::rng::stream`'s, which stay < 100).
pub mod stream {
    pub const PRODUCT: u64 = 101;
    pub const STUDIO: u64 = 102;
    pub const CASUAL: u64 = 103;
    pub const GENERAL: u64 = 104;
    pub const PER_PRODUCT: u64 = 105;
}

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogueOptions {
    /// Product pairs (one studio and one casual photo each).
    pub products: usize,
    /// General scenes.
    pub general: usize,
    /// Width and height in pixels (a multiple of 8, 32..=512).
    pub size: u32,
    pub seed: u64,
}

/// One product pair as written to the CSVs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairRecord {
    /// `p00042`: the file stem in `studio/` and `casual/`.
    pub pair: String,
    pub kind: &'static str,
    pub colour: &'static str,
    pub size: &'static str,
    pub studio_text: String,
    pub casual_text: String,
    pub studio_box: (u32, u32, u32, u32),
    pub casual_box: (u32, u32, u32, u32),
    /// `table` or `wall`.
    pub casual_background: &'static str,
}

/// One general scene as written to its CSV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneralRecord {
    pub file_name: String,
    pub text: String,
    pub kind: &'static str,
    pub colour: &'static str,
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalogue {
    pub pairs: Vec<PairRecord>,
    pub general: Vec<GeneralRecord>,
}

/// The pair id of product `index`.
pub fn pair_id(index: usize) -> String {
    format!("p{index:05}")
}

/// The rendered studio and casual photos of product `index`.
pub fn render_pair(
    size: u32,
    seed: u64,
    index: usize,
) -> (PairRecord, render::Photo, render::Photo) {
    let kind = products::KINDS[index % products::KINDS.len()];
    let (colour, rgb) =
        products::COLOURS[(index / products::KINDS.len()) % products::COLOURS.len()];
    let mut rng = SplitMix64::derived(&[seed, stream::PRODUCT, index as u64]);
    let (size_name, share) = products::SIZES[rng.below(products::SIZES.len() as u64) as usize];
    let parts = products::product(kind, rgb, colour, &mut rng);
    // a shoe is long and low: give it more of the frame so it reads at 64 pixels
    let share = if kind == "shoe" { share * 1.2 } else { share };
    let studio = render::studio(
        &parts,
        size,
        share,
        &mut SplitMix64::derived(&[seed, stream::STUDIO, index as u64]),
    );
    let casual = render::casual(
        &parts,
        size,
        share,
        &mut SplitMix64::derived(&[seed, stream::CASUAL, index as u64]),
    );
    let record = PairRecord {
        pair: pair_id(index),
        kind,
        colour,
        size: size_name,
        studio_text: format!("a {colour} {kind} {}", studio.setting),
        casual_text: format!("a {colour} {kind} {}", casual.setting),
        studio_box: studio.bbox,
        casual_box: casual.bbox,
        casual_background: casual.background,
    };
    (record, studio, casual)
}

/// General scene `index`.
pub fn render_general(size: u32, seed: u64, index: usize) -> (GeneralRecord, image::RgbImage) {
    let mut rng = SplitMix64::derived(&[seed, stream::GENERAL, index as u64]);
    let scene = general::scene(size, &mut rng, index);
    let record = GeneralRecord {
        file_name: format!("g{index:05}.png"),
        text: scene.text,
        kind: scene.kind,
        colour: scene.colour,
    };
    (record, scene.image)
}

fn png_bytes<P, C>(img: &image::ImageBuffer<P, C>) -> Result<Vec<u8>>
where
    P: image::PixelWithColorType,
    [P::Subpixel]: image::EncodableLayout,
    C: std::ops::Deref<Target = [P::Subpixel]>,
{
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .context("cannot encode PNG")?;
    Ok(out.into_inner())
}

fn save_png<P, C>(path: &Path, img: &image::ImageBuffer<P, C>) -> Result<()>
where
    P: image::PixelWithColorType,
    [P::Subpixel]: image::EncodableLayout,
    C: std::ops::Deref<Target = [P::Subpixel]>,
{
    write_atomic(
        path,
        &png_bytes(img).with_context(|| path.display().to_string())?,
    )
}

/// Checks the options: a size the models take, something to make.
pub fn validate(opts: &CatalogueOptions) -> Result<()> {
    if opts.size < 32 || opts.size > 512 || !opts.size.is_multiple_of(8) {
        bail!(
            "--size {}: expected a multiple of 8 from 32 to 512 (64 or 128 for the tiny model)",
            opts.size
        );
    }
    if opts.products == 0 && opts.general == 0 {
        bail!("nothing to make: --products and --general are both 0");
    }
    if opts.products > 99_999 || opts.general > 99_999 {
        bail!("at most 99999 products and 99999 general scenes");
    }
    Ok(())
}

fn write_csv(path: &Path, header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> Result<()> {
    crate::fsutil::write_atomic_with(path, |w| {
        let mut csv = csv::Writer::from_writer(w);
        csv.write_record(header)?;
        for r in rows {
            csv.write_record(&r)?;
        }
        csv.flush()?;
        Ok(())
    })
}

fn pair_row(r: &PairRecord, studio: bool) -> Vec<String> {
    let (text, b, bg) = if studio {
        (&r.studio_text, r.studio_box, "white")
    } else {
        (&r.casual_text, r.casual_box, r.casual_background)
    };
    vec![
        format!("{}.png", r.pair),
        text.clone(),
        r.kind.into(),
        r.colour.into(),
        r.size.into(),
        b.0.to_string(),
        b.1.to_string(),
        b.2.to_string(),
        b.3.to_string(),
        r.pair.clone(),
        bg.into(),
    ]
}

/// The columns of `studio/metadata.csv` and `casual/metadata.csv`.
pub const PAIR_COLUMNS: [&str; 11] = [
    "file_name",
    "text",
    "kind",
    "colour",
    "size",
    "x0",
    "y0",
    "x1",
    "y1",
    "pair",
    "background",
];

/// The columns of `general/metadata.csv`.
pub const GENERAL_COLUMNS: [&str; 4] = ["file_name", "text", "kind", "colour"];

/// Renders and writes the catalogue into `dir` (see the module docs for the layout), in
/// parallel; files are written whole (temporary file + rename), the CSVs last.
pub fn generate(dir: &Path, opts: &CatalogueOptions) -> Result<Catalogue> {
    validate(opts)?;
    for sub in ["studio", "casual", "masks", "general"] {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d)
            .with_context(|| format!("{}: cannot create folder", d.display()))?;
    }
    let pairs: Vec<PairRecord> = (0..opts.products)
        .into_par_iter()
        .map(|i| {
            let (rec, studio, casual) = render_pair(opts.size, opts.seed, i);
            save_png(
                &dir.join("studio").join(format!("{}.png", rec.pair)),
                &studio.image,
            )?;
            save_png(
                &dir.join("casual").join(format!("{}.png", rec.pair)),
                &casual.image,
            )?;
            save_png(
                &dir.join("masks").join(format!("{}.png", rec.pair)),
                &studio.mask,
            )?;
            save_png(
                &dir.join("masks").join(format!("{}-casual.png", rec.pair)),
                &casual.mask,
            )?;
            Ok(rec)
        })
        .collect::<Result<_>>()?;
    let general: Vec<GeneralRecord> = (0..opts.general)
        .into_par_iter()
        .map(|i| {
            let (rec, img) = render_general(opts.size, opts.seed, i);
            save_png(&dir.join("general").join(&rec.file_name), &img)?;
            Ok(rec)
        })
        .collect::<Result<_>>()?;
    for (sub, studio) in [("studio", true), ("casual", false)] {
        write_csv(
            &dir.join(sub).join("metadata.csv"),
            &PAIR_COLUMNS,
            pairs.iter().map(|r| pair_row(r, studio)),
        )?;
    }
    write_csv(
        &dir.join("general").join("metadata.csv"),
        &GENERAL_COLUMNS,
        general.iter().map(|r| {
            vec![
                r.file_name.clone(),
                r.text.clone(),
                r.kind.into(),
                r.colour.into(),
            ]
        }),
    )?;
    Ok(Catalogue { pairs, general })
}
