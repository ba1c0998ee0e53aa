//! Pipelines: a loaded set of Stable Diffusion components ([`StableDiffusion`]) and, built on it,
//! the sampling loops. Refused requests are [`request::RequestError`]s, worded in the API's
//! field names.
pub mod budget;
mod loader;

pub use loader::{
    normalize_text_encoder_names, ComponentInfo, LoadOptions, ModelLayout, StableDiffusion,
};
pub mod caption;
pub mod embedding;
pub mod img2img;
pub mod lora;
pub mod request;
pub mod sampling;
pub mod text2img;
