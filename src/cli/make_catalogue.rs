//! `studioize make-catalogue DIR`: the synthetic product catalogue (paired studio and casual
//! photos with masks, plus a general set); see `data::catalogue` for the layout.
use crate::data::catalogue::{generate, CatalogueOptions};
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output folder (gets studio/, casual/, masks/ and general/).
    pub out: PathBuf,
    /// Product pairs (a studio and a casual photo each).
    #[arg(long, default_value_t = 480)]
    pub products: usize,
    /// General scenes without products (the prior).
    #[arg(long, default_value_t = 240)]
    pub general: usize,
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
