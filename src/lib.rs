//! studioize: a research toolkit for AI product photography.
//!
//! The crate is split by pipeline stage (see `docs/ARCHITECTURE.md`):
//! - [`weights`]: reading checkpoints (safetensors, sharded, fp16 variants, CompVis single files)
//!   into `tch` variable stores, with strict name and shape checks;
//! - [`models`]: the networks (CLIP text encoder and tokenizer, UNet, VAE), each configured
//!   from its own `config.json`;
//! - [`device`]: device and precision selection, CUDA library loading;
//! - [`monitor`]: run health (divergence / deconvergence detector) over training metrics;
//! - [`plot`]: loss-curve plots of runs and sweeps;
//! - [`cli`]: the `studioize` command line.
pub mod cli;
pub mod device;
pub mod models;
pub mod monitor;
pub mod plot;
pub mod weights;
