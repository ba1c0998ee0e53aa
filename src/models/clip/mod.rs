//! CLIP, as Stable Diffusion 1.x uses it: the byte-level BPE tokenizer and the text encoder
//! (transformers' `CLIPTextModel`).
mod config;
mod text_model;
mod tokenizer;

pub use config::ClipTextConfig;
pub use text_model::ClipTextModel;
pub use tokenizer::ClipTokenizer;
