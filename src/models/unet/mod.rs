//! The UNet of Stable Diffusion 1.x (diffusers' `UNet2DConditionModel`), split by job:
//! config, timestep embeddings, the cross-attention transformer, the blocks, the model.
mod attention;
mod blocks;
mod config;
mod embeddings;
mod model;

pub use config::UNetConfig;
pub use model::UNet2DConditionModel;
