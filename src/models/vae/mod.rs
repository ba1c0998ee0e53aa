//! AutoencoderKL, the SD VAE (diffusers' `AutoencoderKL`): an encoder to a diagonal Gaussian over
//! latents, and a decoder back to pixels.
mod attention;
mod autoencoder;
mod coder;
mod config;

pub use autoencoder::{rename_legacy_vae_keys, AutoencoderKL, DiagonalGaussian};
pub use config::VaeConfig;
