//! The data loader's options for each use in a run, from the experiment config (the loader
//! itself, in `data`, knows nothing of experiments).
use crate::data::{LoaderOptions, TransformOptions};
use crate::train::config::ExperimentConfig;

/// The training loader of an experiment (shuffled, augmented, full batches).
pub fn training(cfg: &ExperimentConfig) -> LoaderOptions {
    LoaderOptions {
        batch_size: cfg.train.batch_size,
        seed: cfg.train.seed,
        transform: TransformOptions {
            resolution: cfg.data.resolution,
            center_crop: cfg.data.center_crop,
            random_flip: cfg.data.random_flip,
        },
        caption_dropout: cfg.data.caption_dropout,
        shuffle: true,
        drop_last: true,
        num_workers: cfg.data.num_workers,
        prefetch: 2,
        buckets: cfg.data.bucket_spec(),
    }
}

/// Salts of the second streams' shuffle seeds.
pub const CLASS_STREAM: u64 = 0xC1A5_5E5E_D000_0001;
pub const PRIOR_STREAM: u64 = 0x9219_0A11_D000_0002;

/// A second training stream (DreamBooth's class images, `data.prior_mix`'s prior images): the
/// training loader with its own shuffle seed.
pub fn second_stream(cfg: &ExperimentConfig, salt: u64) -> LoaderOptions {
    let training = training(cfg);
    LoaderOptions {
        seed: training.seed ^ salt,
        ..training
    }
}

/// The validation loader of an experiment: file order, center crop, no flip, no caption
/// dropout, last batch kept, square crops (also with aspect buckets, so that the fixed
/// validation set is one tensor) — the same samples every time.
pub fn validation(cfg: &ExperimentConfig) -> LoaderOptions {
    LoaderOptions {
        buckets: None,
        ..fixed_order(cfg)
    }
}

/// What the latent cache encodes: the training images as training sees them without
/// randomness (center crop, no flip), in their aspect buckets when those are on.
pub fn fixed_order(cfg: &ExperimentConfig) -> LoaderOptions {
    let training = training(cfg);
    LoaderOptions {
        shuffle: false,
        drop_last: false,
        caption_dropout: 0.0,
        transform: TransformOptions {
            center_crop: true,
            random_flip: false,
            ..training.transform
        },
        ..training
    }
}
