//! Pipelines: a loaded set of Stable Diffusion components ([`StableDiffusion`]) and, built on it,
//! the sampling loops.
mod loader;

pub use loader::{ComponentInfo, LoadOptions, ModelLayout, StableDiffusion};
pub mod sampling;
pub mod img2img;
pub mod text2img;
