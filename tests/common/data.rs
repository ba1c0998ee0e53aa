//! Image folders and loader options of the data tests (tests/data.rs, tests/data_loader.rs).
use image::{Rgb, RgbImage};
use std::path::Path;
use studioize::data::loader::LoaderOptions;
use studioize::data::transform::TransformOptions;

/// Writes a `w` x `h` pattern (varied by `seed`) as `dir/name`, making its folders.
pub fn png(dir: &Path, name: &str, w: u32, h: u32, seed: u8) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let img = RgbImage::from_fn(w, h, |x, y| {
        Rgb([
            (x as u8).wrapping_mul(7) ^ seed,
            (y as u8).wrapping_mul(13),
            seed,
        ])
    });
    img.save(path).unwrap();
}

/// Shuffled batches of 16 px random crops with flips, caption dropout 0.3, the last partial
/// batch dropped.
pub fn opts(batch_size: usize, seed: u64, num_workers: usize) -> LoaderOptions {
    LoaderOptions {
        batch_size,
        seed,
        transform: TransformOptions {
            resolution: 16,
            center_crop: false,
            random_flip: true,
        },
        caption_dropout: 0.3,
        shuffle: true,
        drop_last: true,
        num_workers,
        prefetch: 2,
        buckets: None,
    }
}
