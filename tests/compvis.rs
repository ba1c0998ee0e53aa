//! Loading an original CompVis single-file SD 1.x checkpoint by converting its keys to the
//! diffusers layout, checked against the same weights saved by diffusers.
mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use studioize::weights::compvis::{
    convert_text_encoder, convert_unet, convert_vae, is_compvis, split_and_convert, UNetLayout,
    VaeLayout,
};
use studioize::weights::WeightSet;
use tch::{Kind, Tensor};

fn tiny_a_dir() -> PathBuf {
    common::fixtures().join("sd").join("tiny-a")
}

fn tiny_a_single_file() -> PathBuf {
    common::fixtures().join("sd").join("tiny-a.safetensors")
}

/// `(levels, layers_per_block)` from a diffusers `config.json`.
fn geometry(config: &Path) -> (usize, usize) {
    let text = std::fs::read_to_string(config)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", config.display()));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let levels = json["block_out_channels"]
        .as_array()
        .expect("block_out_channels")
        .len();
    let lpb = json["layers_per_block"].as_u64().expect("layers_per_block") as usize;
    (levels, lpb)
}

fn tiny_a_layouts() -> (UNetLayout, VaeLayout) {
    let (levels, layers_per_block) = geometry(&tiny_a_dir().join("unet").join("config.json"));
    let unet = UNetLayout {
        levels,
        layers_per_block,
    };
    let (levels, layers_per_block) = geometry(&tiny_a_dir().join("vae").join("config.json"));
    let vae = VaeLayout {
        levels,
        layers_per_block,
    };
    (unet, vae)
}

fn read(path: &Path) -> WeightSet {
    WeightSet::read_files(&[path.to_path_buf()])
        .unwrap_or_else(|e| panic!("cannot read {}: {e:#}", path.display()))
}

fn names(ws: &WeightSet) -> BTreeSet<String> {
    ws.names()
        .filter(|n| !n.ends_with("position_ids"))
        .map(str::to_string)
        .collect()
}

/// Asserts that `converted` holds exactly the tensors of the diffusers-layout file `reference`
/// (same names, dtypes, shapes and values), `position_ids` buffers aside.
fn assert_same_as(component: &str, converted: &WeightSet, reference: &Path) {
    let refs = read(reference);
    let (got, want) = (names(converted), names(&refs));
    let missing: Vec<_> = want.difference(&got).collect();
    let extra: Vec<_> = got.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{component}: name sets differ; missing {missing:?}; unexpected {extra:?}"
    );
    assert!(
        !want.is_empty(),
        "{component}: reference {} is empty",
        reference.display()
    );
    for name in &want {
        let a = &converted.get(name).unwrap().tensor;
        let e = &refs.get(name).unwrap().tensor;
        assert_eq!(a.size(), e.size(), "{component}: '{name}' shape");
        assert_eq!(a.kind(), e.kind(), "{component}: '{name}' dtype");
        assert!(a.equal(e), "{component}: '{name}' values differ");
    }
}

#[test]
fn tiny_a_single_file_matches_diffusers_components() {
    let file = tiny_a_single_file();
    assert!(file.is_file(), "fixture {} is missing", file.display());
    let ws = read(&file);
    assert!(is_compvis(&ws));
    let (unet, vae) = tiny_a_layouts();
    let parts = split_and_convert(ws, &unet, &vae).unwrap_or_else(|e| panic!("{e:#}"));
    let dir = tiny_a_dir();
    assert_same_as(
        "unet",
        &parts.unet,
        &dir.join("unet").join("diffusion_pytorch_model.safetensors"),
    );
    assert_same_as(
        "vae",
        &parts.vae,
        &dir.join("vae").join("diffusion_pytorch_model.safetensors"),
    );
    assert_same_as(
        "text_encoder",
        &parts.text_encoder,
        &dir.join("text_encoder").join("model.safetensors"),
    );
    assert!(!parts
        .text_encoder
        .names()
        .any(|n| n.ends_with("position_ids")));
}

#[test]
fn non_model_keys_are_dropped_and_components_convert_separately() {
    let file = tiny_a_single_file();
    let mut ws = read(&file);
    for extra in [
        "model_ema.decay",
        "model_ema.num_updates",
        "model_ema.diffusion_modelinput_blocks00weight",
        "betas",
        "alphas_cumprod",
        "alphas_cumprod_prev",
        "sqrt_alphas_cumprod",
        "sqrt_recipm1_alphas_cumprod",
        "log_one_minus_alphas_cumprod",
        "posterior_variance",
        "posterior_mean_coef2",
    ] {
        ws.insert(
            extra.to_string(),
            Tensor::zeros([4], (Kind::Float, tch::Device::Cpu)),
            file.clone(),
        );
    }
    ws.insert(
        "cond_stage_model.transformer.text_model.embeddings.position_ids".to_string(),
        Tensor::arange(77, (Kind::Int64, tch::Device::Cpu)).unsqueeze(0),
        file.clone(),
    );
    let (unet_layout, vae_layout) = tiny_a_layouts();
    let parts =
        split_and_convert(ws, &unet_layout, &vae_layout).unwrap_or_else(|e| panic!("{e:#}"));
    let dir = tiny_a_dir();
    assert_same_as(
        "text_encoder",
        &parts.text_encoder,
        &dir.join("text_encoder").join("model.safetensors"),
    );
    assert!(!parts
        .text_encoder
        .names()
        .any(|n| n.ends_with("position_ids")));

    // The per-component entry points, on names without the CompVis prefixes.
    let mut ws = read(&file);
    let unet = convert_unet(ws.split_prefix("model.diffusion_model."), &unet_layout).unwrap();
    assert_same_as(
        "unet",
        &unet,
        &dir.join("unet").join("diffusion_pytorch_model.safetensors"),
    );
    let vae = convert_vae(ws.split_prefix("first_stage_model."), &vae_layout).unwrap();
    assert_same_as(
        "vae",
        &vae,
        &dir.join("vae").join("diffusion_pytorch_model.safetensors"),
    );
}

#[test]
fn older_unprefixed_text_encoder_layout_converts() {
    let mut ws = read(&tiny_a_single_file());
    let text = ws.split_prefix("cond_stage_model.transformer.");
    assert!(
        text.names().all(|n| n.starts_with("text_model.")),
        "fixture uses the newer layout"
    );
    // Rewrite to the layout of older transformers versions, which had no `text_model.` level.
    let mut old = text.map_names(|n| Some(n.strip_prefix("text_model.").unwrap().to_string()));
    old.insert(
        "embeddings.position_ids".to_string(),
        Tensor::arange(77, (Kind::Int64, tch::Device::Cpu)).unsqueeze(0),
        PathBuf::from("old.safetensors"),
    );
    assert!(
        old.contains("final_layer_norm.weight")
            && old.contains("embeddings.token_embedding.weight")
    );
    let converted = convert_text_encoder(old).unwrap_or_else(|e| panic!("{e:#}"));
    assert_same_as(
        "text_encoder",
        &converted,
        &tiny_a_dir().join("text_encoder").join("model.safetensors"),
    );
}

/// Writes `tensors` to `dir/name` and reads it back, so that entries carry a real file.
fn temp_set(dir: &Path, name: &str, tensors: &[(&str, Tensor)]) -> (WeightSet, PathBuf) {
    let path = dir.join(name);
    Tensor::write_safetensors(tensors, &path).unwrap();
    (read(&path), path)
}

fn t(shape: &[i64]) -> Tensor {
    Tensor::ones(shape, (Kind::Float, tch::Device::Cpu))
}

/// A minimal CompVis-keyed set: one valid tensor per component, plus `extra`.
fn minimal(extra: &str) -> Vec<(&str, Tensor)> {
    vec![
        ("model.diffusion_model.time_embed.0.weight", t(&[4, 4])),
        ("first_stage_model.quant_conv.weight", t(&[8, 8, 1, 1])),
        (
            "cond_stage_model.transformer.text_model.final_layer_norm.weight",
            t(&[4]),
        ),
        (extra, t(&[2])),
    ]
}

const LAYOUTS: (UNetLayout, VaeLayout) = (
    UNetLayout {
        levels: 2,
        layers_per_block: 1,
    },
    VaeLayout {
        levels: 2,
        layers_per_block: 1,
    },
);

fn expect_error(tensors: &[(&str, Tensor)]) -> (String, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (ws, path) = temp_set(dir.path(), "model.safetensors", tensors);
    let err = match split_and_convert(ws, &LAYOUTS.0, &LAYOUTS.1) {
        Ok(_) => panic!(
            "conversion of {:?} should fail",
            tensors.iter().map(|p| p.0).collect::<Vec<_>>()
        ),
        Err(e) => format!("{e:#}"),
    };
    (err, path)
}

#[test]
fn minimal_valid_set_converts() {
    let dir = tempfile::tempdir().unwrap();
    let (ws, _) = temp_set(
        dir.path(),
        "ok.safetensors",
        &minimal("model.diffusion_model.out.2.bias"),
    );
    let parts = split_and_convert(ws, &LAYOUTS.0, &LAYOUTS.1).unwrap_or_else(|e| panic!("{e:#}"));
    let unet: Vec<&str> = parts.unet.names().collect();
    assert_eq!(unet, ["conv_out.bias", "time_embedding.linear_1.weight"]);
    assert_eq!(parts.vae.names().collect::<Vec<_>>(), ["quant_conv.weight"]);
    assert_eq!(
        parts.vae.get("quant_conv.weight").unwrap().tensor.size(),
        [8, 8, 1, 1]
    );
    assert_eq!(
        parts.text_encoder.names().collect::<Vec<_>>(),
        ["text_model.final_layer_norm.weight"]
    );
}

#[test]
fn unknown_unet_key_is_an_error_naming_key_and_file() {
    for key in [
        "model.diffusion_model.input_blocks.1.0.bogus.weight",
        "model.diffusion_model.input_blocks.9.0.in_layers.0.weight", // past the 2 levels
        "model.diffusion_model.input_blocks.4.0.op.weight", // no downsampler on the last level
        "model.diffusion_model.output_blocks.5.1.conv.weight", // no upsampler on the top level
        "model.diffusion_model.label_emb.0.0.weight",
    ] {
        let (err, path) = expect_error(&minimal(key));
        assert!(
            err.contains(&format!("'{key}'")),
            "error does not name the key {key}: {err}"
        );
        assert!(
            err.contains(&path.display().to_string()),
            "error does not name the file: {err}"
        );
        assert!(
            err.contains("unet"),
            "error does not name the component: {err}"
        );
    }
}

#[test]
fn unknown_vae_text_and_top_level_keys_are_errors() {
    for key in [
        "first_stage_model.encoder.down.0.attn.0.q.weight",
        "first_stage_model.decoder.up.0.upsample.conv.weight", // the top decoder level does not upsample
        "first_stage_model.loss.logvar",
        "cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.qkv.weight",
        "cond_stage_model.transformer.pooler.dense.weight",
        "cond_stage_model.model.token_embedding.weight",
        "lora_te_text_model_encoder_layers_0_mlp_fc1.alpha",
    ] {
        let (err, path) = expect_error(&minimal(key));
        assert!(
            err.contains(&format!("'{key}'")),
            "error does not name the key {key}: {err}"
        );
        assert!(
            err.contains(&path.display().to_string()),
            "error does not name the file: {err}"
        );
    }
}

#[test]
fn vae_attention_with_a_non_1x1_kernel_is_an_error() {
    let key = "first_stage_model.encoder.mid.attn_1.q.weight";
    let mut tensors = minimal("first_stage_model.post_quant_conv.bias");
    tensors.push((key, t(&[4, 4, 3, 3])));
    let (err, path) = expect_error(&tensors);
    assert!(
        err.contains("encoder.mid_block.attentions.0.to_q.weight") && err.contains("[4, 4, 3, 3]"),
        "{err}"
    );
    assert!(err.contains(&path.display().to_string()), "{err}");
}

#[test]
fn both_text_layouts_at_once_is_an_error() {
    let (err, path) = expect_error(&minimal(
        "cond_stage_model.transformer.final_layer_norm.weight",
    ));
    assert!(
        err.contains("both map to 'text_model.final_layer_norm.weight'"),
        "{err}"
    );
    assert!(err.contains(&path.display().to_string()), "{err}");
}

#[test]
fn non_compvis_file_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (ws, path) = temp_set(
        dir.path(),
        "diffusers-unet.safetensors",
        &[
            ("conv_in.weight", t(&[4, 4, 3, 3])),
            ("time_embedding.linear_1.weight", t(&[8, 4])),
        ],
    );
    assert!(!is_compvis(&ws));
    let err = format!(
        "{:#}",
        split_and_convert(ws, &LAYOUTS.0, &LAYOUTS.1).expect_err("must fail")
    );
    assert!(err.contains("not a CompVis SD checkpoint"), "{err}");
    assert!(
        err.contains(&path.display().to_string()),
        "error does not name the file: {err}"
    );
}
