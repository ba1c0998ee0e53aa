//! The tiny SD 1.x architecture as the diffusers folder writes it: each component's
//! `config.json` with the keys diffusers / transformers save (so both `studioize` and
//! `StableDiffusionPipeline.from_pretrained` build the same graph), SD 1.4's scheduler config,
//! and `model_index.json`.
use super::config::PretrainConfig;
use serde_json::{json, Value};

const DIFFUSERS_VERSION: &str = "0.42.1";

/// `vae/config.json` (AutoencoderKL); `scaling_factor` is the measured `1 / std` of latents.
pub fn vae_config(cfg: &PretrainConfig, scaling_factor: f64) -> Value {
    let v = &cfg.vae;
    let n = v.block_out_channels.len();
    json!({
        "_class_name": "AutoencoderKL",
        "_diffusers_version": DIFFUSERS_VERSION,
        "act_fn": "silu",
        "block_out_channels": v.block_out_channels,
        "down_block_types": vec!["DownEncoderBlock2D"; n],
        "force_upcast": true,
        "in_channels": 3,
        "latent_channels": v.latent_channels,
        "latents_mean": null,
        "latents_std": null,
        "layers_per_block": v.layers_per_block,
        "mid_block_add_attention": true,
        "norm_num_groups": v.norm_num_groups,
        "out_channels": 3,
        "sample_size": cfg.size,
        "scaling_factor": scaling_factor,
        "shift_factor": null,
        "up_block_types": vec!["UpDecoderBlock2D"; n],
        "use_post_quant_conv": true,
        "use_quant_conv": true
    })
}

/// The latent side: the image side over the VAE's factor.
pub fn latent_size(cfg: &PretrainConfig) -> i64 {
    cfg.size as i64 >> (cfg.vae.block_out_channels.len() - 1)
}

/// `unet/config.json` (UNet2DConditionModel): cross-attention down blocks from
/// `first_attention_level` to the last but one, a cross-attention mid block, the mirror image
/// going up, as SD 1.x (where `first_attention_level` is 0).
pub fn unet_config(cfg: &PretrainConfig) -> Value {
    let u = &cfg.unet;
    let n = u.block_out_channels.len();
    let attn = |level: usize| level >= u.first_attention_level && level + 1 < n;
    let down: Vec<&str> = (0..n)
        .map(|l| {
            if attn(l) {
                "CrossAttnDownBlock2D"
            } else {
                "DownBlock2D"
            }
        })
        .collect();
    let up: Vec<&str> = (0..n)
        .rev()
        .map(|l| {
            if attn(l) {
                "CrossAttnUpBlock2D"
            } else {
                "UpBlock2D"
            }
        })
        .collect();
    // two halves: one `json!` of all keys exceeds the macro recursion limit
    let mut head = json!({
        "_class_name": "UNet2DConditionModel",
        "_diffusers_version": DIFFUSERS_VERSION,
        "act_fn": "silu",
        "addition_embed_type": null,
        "addition_embed_type_num_heads": 64,
        "addition_time_embed_dim": null,
        "attention_head_dim": u.attention_heads,
        "attention_type": "default",
        "block_out_channels": u.block_out_channels,
        "center_input_sample": false,
        "class_embed_type": null,
        "class_embeddings_concat": false,
        "conv_in_kernel": 3,
        "conv_out_kernel": 3,
        "cross_attention_dim": cfg.text.hidden_size,
        "cross_attention_norm": null,
        "down_block_types": down,
        "downsample_padding": 1,
        "dropout": 0.0,
        "dual_cross_attention": false,
        "encoder_hid_dim": null,
        "encoder_hid_dim_type": null,
    });
    let rest = json!({
        "flip_sin_to_cos": true,
        "freq_shift": 0,
        "in_channels": cfg.vae.latent_channels,
        "layers_per_block": u.layers_per_block,
        "mid_block_only_cross_attention": null,
        "mid_block_scale_factor": 1,
        "mid_block_type": "UNetMidBlock2DCrossAttn",
        "norm_eps": 1e-05,
        "norm_num_groups": u.norm_num_groups,
        "num_attention_heads": null,
        "num_class_embeds": null,
        "only_cross_attention": false,
        "out_channels": cfg.vae.latent_channels,
        "projection_class_embeddings_input_dim": null,
        "resnet_out_scale_factor": 1.0,
        "resnet_skip_time_act": false,
        "resnet_time_scale_shift": "default",
        "reverse_transformer_layers_per_block": null,
        "sample_size": latent_size(cfg),
        "time_cond_proj_dim": null,
        "time_embedding_act_fn": null,
        "time_embedding_dim": null,
        "time_embedding_type": "positional",
        "timestep_post_act": null,
        "transformer_layers_per_block": 1,
        "up_block_types": up,
        "upcast_attention": false,
        "use_linear_projection": false
    });
    if let (Value::Object(a), Value::Object(b)) = (&mut head, rest) {
        a.extend(b);
    }
    head
}

/// `text_encoder/config.json` (transformers' CLIPTextModel) for a vocabulary of `vocab_size`
/// whose last two tokens are `<|startoftext|>` and `<|endoftext|>`.
pub fn text_encoder_config(cfg: &PretrainConfig, vocab_size: i64) -> Value {
    let t = &cfg.text;
    json!({
        "architectures": ["CLIPTextModel"],
        "attention_dropout": 0.0,
        "bos_token_id": vocab_size - 2,
        "dtype": "float32",
        "eos_token_id": vocab_size - 1,
        "hidden_act": "quick_gelu",
        "hidden_size": t.hidden_size,
        "initializer_factor": 1.0,
        "initializer_range": 0.02,
        "intermediate_size": t.intermediate_size,
        "layer_norm_eps": 1e-05,
        "max_position_embeddings": 77,
        "model_type": "clip_text_model",
        "num_attention_heads": t.num_attention_heads,
        "num_hidden_layers": t.num_hidden_layers,
        "pad_token_id": vocab_size - 1,
        "projection_dim": t.hidden_size,
        "transformers_version": "5.24.0",
        "vocab_size": vocab_size
    })
}

/// `scheduler/scheduler_config.json`: Stable Diffusion 1.4's PNDM config (the DDPM schedule
/// of training: scaled_linear betas 0.00085..0.012 over 1000 steps, epsilon).
pub fn scheduler_config() -> Value {
    json!({
        "_class_name": "PNDMScheduler",
        "_diffusers_version": DIFFUSERS_VERSION,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "beta_start": 0.00085,
        "clip_sample": false,
        "num_train_timesteps": 1000,
        "prediction_type": "epsilon",
        "set_alpha_to_one": false,
        "skip_prk_steps": true,
        "steps_offset": 1,
        "timestep_spacing": "leading",
        "trained_betas": null
    })
}

/// `model_index.json` of a StableDiffusionPipeline without safety checker.
pub fn model_index() -> Value {
    json!({
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": DIFFUSERS_VERSION,
        "feature_extractor": [null, null],
        "image_encoder": [null, null],
        "requires_safety_checker": false,
        "safety_checker": [null, null],
        "scheduler": ["diffusers", "PNDMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"]
    })
}
