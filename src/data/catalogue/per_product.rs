//! The catalogue laid out per product, for DreamBooth over a catalogue: `DIR/products/<name>/`
//! holds `per_product` studio photos of one product (the same object, as product `i` of the
//! paired catalogue: same kind, colour and proportions), each at its own size and position, and
//! a `metadata.csv` (`file_name,text,kind,colour,size,x0,y0,x1,y1,product`) whose `kind` is the
//! product's class. `DIR/products/catalogue.csv` lists the products
//! (`product,kind,colour,size,images`) and `DIR/products/sweep.toml` the `[sweep]` table of a
//! DreamBooth catalogue experiment over them (zip of the folders, as absolute paths, with
//! `a photo of zwx <kind>` / `a photo of a <kind>` and sample prompts; append it to an
//! experiment config). `<name>` is `<kind>-<colour>` (`mug-red`), with `-2`,
//! `-3`, ... from the 49th product on (every 48 products hold each kind x colour once).
//!
//! Photo `j` of product `i` is drawn from the random stream (seed, PER_PRODUCT, i, j), so the
//! same seed gives the same bytes whatever the thread count.
use super::super::rng::SplitMix64;
use super::{products, render, save_png, stream, write_csv};
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use std::path::Path;

/// The folder of the per-product layout inside the catalogue folder.
pub const PRODUCTS_DIR: &str = "products";
/// The product list in [`PRODUCTS_DIR`].
pub const CATALOGUE_CSV: &str = "catalogue.csv";
/// The sweep table in [`PRODUCTS_DIR`].
pub const SWEEP_TOML: &str = "sweep.toml";
/// The identifier of the instance prompts in [`SWEEP_TOML`].
pub const IDENTIFIER: &str = "zwx";
/// The columns of each product's `metadata.csv`.
pub const PRODUCT_COLUMNS: [&str; 10] = [
    "file_name",
    "text",
    "kind",
    "colour",
    "size",
    "x0",
    "y0",
    "x1",
    "y1",
    "product",
];

/// One product of the per-product layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductRecord {
    /// The folder name: `mug-red`.
    pub name: String,
    /// The class (`mug`).
    pub kind: &'static str,
    pub colour: &'static str,
    pub size: &'static str,
    pub photos: Vec<PhotoRecord>,
}

/// One photo of a product as written to its `metadata.csv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhotoRecord {
    pub file_name: String,
    pub text: String,
    /// (x0, y0, x1, y1) of the product's pixels at >= 50% coverage, x1 / y1 exclusive.
    pub bbox: (u32, u32, u32, u32),
}

/// The folder name of product `index`.
pub fn product_name(index: usize) -> String {
    let n = products::KINDS.len() * products::COLOURS.len();
    let kind = products::KINDS[index % products::KINDS.len()];
    let colour = products::COLOURS[(index / products::KINDS.len()) % products::COLOURS.len()].0;
    match index / n {
        0 => format!("{kind}-{colour}"),
        k => format!("{kind}-{colour}-{}", k + 1),
    }
}

/// Product `index`'s photos: `per_product` studio photos of one object.
pub fn render_product(
    size: u32,
    seed: u64,
    index: usize,
    per_product: usize,
) -> (ProductRecord, Vec<image::RgbImage>) {
    let kind = products::KINDS[index % products::KINDS.len()];
    let (colour, rgb) =
        products::COLOURS[(index / products::KINDS.len()) % products::COLOURS.len()];
    // The draws of the paired catalogue's product `index`: the same object.
    let mut rng = SplitMix64::derived(&[seed, stream::PRODUCT, index as u64]);
    let (size_name, _) = products::SIZES[rng.below(products::SIZES.len() as u64) as usize];
    let parts = products::product(kind, rgb, colour, &mut rng);
    let name = product_name(index);
    let s = size as f64;
    let mut photos = Vec::with_capacity(per_product);
    let mut images = Vec::with_capacity(per_product);
    for j in 0..per_product {
        let mut r = SplitMix64::derived(&[seed, stream::PER_PRODUCT, index as u64, j as u64]);
        let share = r.uniform(0.45, 0.72) * if kind == "shoe" { 1.2 } else { 1.0 };
        let room = ((1.0 - share) / 2.0 - 0.03).max(0.0);
        let centre = (
            s * (0.5 + r.uniform(-room, room)),
            s * (0.5 + r.uniform(-room, room) / 2.0),
        );
        let photo = render::studio_at(&parts, size, share, centre, &mut r);
        let text = format!("a {colour} {kind} {}", photo.setting);
        photos.push(PhotoRecord {
            file_name: format!("{name}-{j:02}.png"),
            text,
            bbox: photo.bbox,
        });
        images.push(photo.image);
    }
    let record = ProductRecord {
        name,
        kind,
        colour,
        size: size_name,
        photos,
    };
    (record, images)
}

/// Writes `products` products of `per_product` photos each into `dir/products/` (see the
/// module docs), in parallel; the CSVs last.
pub fn generate_products(
    dir: &Path,
    products: usize,
    per_product: usize,
    size: u32,
    seed: u64,
) -> Result<Vec<ProductRecord>> {
    if products == 0 || per_product == 0 {
        bail!("--per-product {per_product} with --products {products}: nothing to make");
    }
    let root = dir.join(PRODUCTS_DIR);
    let records: Vec<ProductRecord> = (0..products)
        .into_par_iter()
        .map(|i| {
            let (rec, images) = render_product(size, seed, i, per_product);
            let folder = root.join(&rec.name);
            std::fs::create_dir_all(&folder)
                .with_context(|| format!("{}: cannot create folder", folder.display()))?;
            for (photo, img) in rec.photos.iter().zip(&images) {
                save_png(&folder.join(&photo.file_name), img)?;
            }
            write_csv(
                &folder.join("metadata.csv"),
                &PRODUCT_COLUMNS,
                rec.photos.iter().map(|p| {
                    let b = p.bbox;
                    vec![
                        p.file_name.clone(),
                        p.text.clone(),
                        rec.kind.into(),
                        rec.colour.into(),
                        rec.size.into(),
                        b.0.to_string(),
                        b.1.to_string(),
                        b.2.to_string(),
                        b.3.to_string(),
                        rec.name.clone(),
                    ]
                }),
            )?;
            Ok(rec)
        })
        .collect::<Result<_>>()?;
    write_csv(
        &root.join(CATALOGUE_CSV),
        &["product", "kind", "colour", "size", "images"],
        records.iter().map(|r| {
            vec![
                r.name.clone(),
                r.kind.into(),
                r.colour.into(),
                r.size.into(),
                r.photos.len().to_string(),
            ]
        }),
    )?;
    let abs = std::path::absolute(&root)
        .with_context(|| format!("{}: cannot make absolute", root.display()))?;
    let sweep = sweep_table(&abs, &records);
    crate::fsutil::write_atomic(&root.join(SWEEP_TOML), sweep.as_bytes())?;
    Ok(records)
}

/// The `[sweep]` table (TOML) of a DreamBooth experiment over `records` in `root`.
pub fn sweep_table(root: &Path, records: &[ProductRecord]) -> String {
    let q = |s: String| toml::Value::String(s).to_string();
    let list = |f: &dyn Fn(&ProductRecord) -> String| {
        let items: Vec<String> = records.iter().map(|r| format!("    {},\n", f(r))).collect();
        format!("[\n{}]\n", items.concat())
    };
    let id = IDENTIFIER;
    format!(
        "# Written by `studioize make-catalogue --per-product`: append to a DreamBooth experiment.\n\
         [sweep]\nmode = \"zip\"\n\
         \"data.images\" = {}\
         \"dreambooth.instance_prompt\" = {}\
         \"dreambooth.class_prompt\" = {}\
         \"train.validation_prompts\" = {}",
        list(&|r| q(root.join(&r.name).display().to_string())),
        list(&|r| q(format!("a photo of {id} {}", r.kind))),
        list(&|r| q(format!("a photo of a {}", r.kind))),
        list(&|r| format!(
            "[{}, {}]",
            q(format!("a photo of {id} {}", r.kind)),
            q(format!("a photo of a {}", r.kind))
        )),
    )
}
