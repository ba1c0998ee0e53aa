//! Text encoder: the CLIP text model of a CompVis checkpoint and transformers' `CLIPTextModel`
//! names (`text_model.*`), both ways.
//!
//! Checkpoints saved with recent transformers versions already carry `text_model.*` names under
//! `cond_stage_model.transformer.`; older ones (e.g. the original SD 1.x releases) stored the
//! inner module directly (`embeddings.*`, `encoder.*`, `final_layer_norm.*`). Both are
//! accepted; an export writes `text_model.*`, the names A1111 and ComfyUI convert to. The
//! `position_ids` buffer is dropped in both directions: transformers recreates it, and A1111
//! and ComfyUI load without it.
use super::rename_all;
use super::rules::{index, is_leaf};
use crate::weights::WeightSet;
use anyhow::Result;

/// Converts text encoder tensors (names without the `cond_stage_model.transformer.` prefix) to
/// transformers' `text_model.*` names.
pub fn convert_text_encoder(ws: WeightSet) -> Result<WeightSet> {
    convert(ws, "")
}

pub(super) fn convert(mut ws: WeightSet, shown_prefix: &str) -> Result<WeightSet> {
    for buffer in [
        "embeddings.position_ids",
        "text_model.embeddings.position_ids",
    ] {
        ws.remove(buffer);
    }
    rename_all(ws, "text_encoder", shown_prefix, map_name)
}

/// True for the `position_ids` buffer under either layout, which is not exported.
pub(super) fn is_position_ids(name: &str) -> bool {
    matches!(
        name,
        "embeddings.position_ids" | "text_model.embeddings.position_ids"
    )
}

/// The transformers name (`text_model.*`) of one CLIP text model tensor, or `None` if it has
/// none. The LDM name (under `cond_stage_model.transformer.`) is the same, so this serves both
/// directions: transformers 5 names without the `text_model.` level are accepted too.
pub(super) fn map_name(name: &str) -> Option<String> {
    let inner = name.strip_prefix("text_model.").unwrap_or(name);
    let parts: Vec<&str> = inner.split('.').collect();
    let known = match parts.as_slice() {
        ["embeddings", "token_embedding" | "position_embedding", "weight"] => true,
        ["final_layer_norm", leaf] => is_leaf(leaf),
        ["encoder", "layers", n, layer @ ..] => {
            index(n).is_some()
                && match layer {
                    ["self_attn", "q_proj" | "k_proj" | "v_proj" | "out_proj", leaf] => {
                        is_leaf(leaf)
                    }
                    ["layer_norm1" | "layer_norm2", leaf] => is_leaf(leaf),
                    ["mlp", "fc1" | "fc2", leaf] => is_leaf(leaf),
                    _ => false,
                }
        }
        _ => false,
    };
    known.then(|| format!("text_model.{inner}"))
}
