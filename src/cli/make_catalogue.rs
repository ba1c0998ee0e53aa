//! `studioize make-catalogue DIR`: the synthetic product catalogue (paired studio and casual
//! photos with masks, plus a general set); see `data::catalogue` for the layout. With
//! `--per-product N`: the catalogue per product (`DIR/products/<kind>-<colour>/`, N studio
//! photos of one product each), for DreamBooth over a catalogue.
use crate::data::catalogue::per_product::{generate_products, PRODUCTS_DIR};
use crate::data::catalogue::{generate, validate, CatalogueOptions};
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output folder (gets studio/, casual/, masks/ and general/; with --per-product only
    /// products/).
    pub out: PathBuf,
    /// Product pairs (a studio and a casual photo each); with --per-product, products.
    #[arg(long, default_value_t = 480)]
    pub products: usize,
    /// General scenes without products (the prior).
    #[arg(long, default_value_t = 240)]
    pub general: usize,
    /// Instead of the paired catalogue, write products/<kind>-<colour>/ with this many studio
    /// photos of each product (sizes and positions vary) and its metadata.csv (kind = class).
    #[arg(long, value_name = "N")]
    pub per_product: Option<usize>,
    /// Width and height in pixels (64 or 128 for the tiny model; a multiple of 8).
    #[arg(long, default_value_t = 64)]
    pub size: u32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(a: Args) -> Result<()> {
    let opts = CatalogueOptions {
        products: a.products,
        general: a.general,
        size: a.size,
        seed: a.seed,
    };
    let start = std::time::Instant::now();
    if let Some(n) = a.per_product {
        validate(&CatalogueOptions { general: 0, ..opts })?;
        let products = generate_products(&a.out, a.products, n, a.size, a.seed)?;
        eprintln!(
            "wrote {} products of {n} photos each ({}x{}) to {} in {:.1}s",
            products.len(),
            a.size,
            a.size,
            a.out.join(PRODUCTS_DIR).display(),
            start.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let cat = generate(&a.out, &opts)?;
    eprintln!(
        "wrote {} product pairs and {} general scenes ({}x{}) to {} in {:.1}s",
        cat.pairs.len(),
        cat.general.len(),
        a.size,
        a.size,
        a.out.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
