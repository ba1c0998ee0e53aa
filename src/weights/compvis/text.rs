//! Text encoder: the CLIP text model of a CompVis checkpoint to transformers' `CLIPTextModel`
//! names (`text_model.*`).
//!
//! Checkpoints saved with recent transformers versions already carry `text_model.*` names under
//! `cond_stage_model.transformer.`; older ones (e.g. the original SD 1.x releases) stored the
//! inner module directly (`embeddings.*`, `encoder.*`, `final_layer_norm.*`). Both are
//! accepted. The `position_ids` buffer is dropped: transformers recreates it.
use super::{index, is_leaf, rename_all};
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

/// The transformers name of one CLIP text model tensor, or `None` if it has none.
fn map_name(name: &str) -> Option<String> {
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
