//! studioize: a research toolkit for AI product photography.
//!
//! The crate is split by pipeline stage (see `docs/ARCHITECTURE.md`):
//! - [`weights`]: reading checkpoints (safetensors, sharded, fp16 variants, CompVis single files)
//!   into `tch` variable stores, with strict name and shape checks;
//! - [`models`]: the networks (CLIP text encoder and tokenizer, UNet, VAE), each configured
//!   from its own `config.json`;
//! - [`schedulers`]: samplers (pndm, ddim, euler, euler-a, dpmpp-2m, lms);
//! - [`pipelines`]: a loaded SD model, text-to-image and image-to-image;
//! - [`data`], [`train`]: the training data pipeline and fine-tuning;
//! - [`pretrain`]: the tiny SD 1.x model trained from scratch on the synthetic catalogue;
//! - [`device`]: device and precision selection, CUDA library loading;
//! - [`monitor`]: run health (divergence / deconvergence detector) over training metrics;
//! - [`plot`]: loss-curve plots of runs and sweeps, checkpoint comparison grids;
//! - [`report`]: the self-contained HTML report of an experiment;
//! - [`profile`]: wall-clock time per named stage of a command (`--profile`);
//! - [`cli`]: the `studioize` command line.
pub mod captions;
pub mod cli;
pub mod data;
pub mod device;
pub mod evaluate;
pub mod fsutil;
pub mod imageio;
pub mod models;
pub mod monitor;
pub mod pipelines;
pub mod plot;
pub mod pretrain;
pub mod profile;
pub mod report;
pub mod schedulers;
pub mod train;
pub mod weights;
