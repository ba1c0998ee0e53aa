//! The networks of Stable Diffusion 1.x and BLIP, each in its own module with a typed
//! config read from the checkpoint's own `config.json`.
//!
//! Conventions shared by every model:
//! - variables are created through `tch::nn::Path` under exactly the names of the reference
//!   libraries' state dicts (diffusers / transformers), so a checkpoint loads by name;
//! - configs are serde structs that tolerate unknown keys and honour every key that changes
//!   the graph;
//! - `forward` methods take and return `tch::Tensor`s in the reference layout (NCHW images);
//!   single-input layers implement `tch::nn::Module`, so that layers chain with `apply`;
//! - layers with more than their channels to set take a config struct with `Default`
//!   ([`blocks::ResnetConfig`], [`blocks::BlockConfig`], the UNet's `Transformer2DConfig`);
//! - every attention goes through [`layers::attention`];
//! - every linear and convolution layer of the UNet and the text encoder is adaptable (LoRA /
//!   LoCon, [`lora`]), listed by module path in the model's `lora_layers()`;
//! - the UNet and the CLIP text encoder run their forward pass as [`segments`] (one per resnet,
//!   transformer and encoder layer), for gradient checkpointing.
pub mod blip;
pub mod blocks;
pub mod clip;
pub mod config;
pub mod layers;
pub mod lora;
pub mod segments;
pub mod unet;
pub mod vae;
pub mod vars;
