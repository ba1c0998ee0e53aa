//! Pipelines: a loaded set of Stable Diffusion components ([`StableDiffusion`]) and, built on it,
//! the sampling loops.
pub mod budget;
mod loader;

pub use loader::{
    normalize_text_encoder_names, ComponentInfo, LoadOptions, ModelLayout, StableDiffusion,
};
pub mod caption;
pub mod img2img;
pub mod sampling;
pub mod text2img;
