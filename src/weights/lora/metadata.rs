//! PEFT's adapter config as diffusers stores it in a LoRA file's safetensors header: the
//! `__metadata__` entry `lora_adapter_metadata` holds one JSON object whose keys are each
//! component's `LoraConfig` fields prefixed by the component (`unet.r`, `unet.lora_alpha`,
//! `unet.alpha_pattern`, `text_encoder.target_modules`, ...).
use super::keys::Component;
use anyhow::{bail, Result};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};

/// The `__metadata__` key diffusers' `save_lora_weights` writes.
pub const METADATA_KEY: &str = "lora_adapter_metadata";

/// The fields of one component's `LoraConfig` that change what the adapter computes.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterConfig {
    pub r: i64,
    pub lora_alpha: f64,
    /// Module-name patterns with their own rank / alpha (PEFT matches a pattern against the
    /// end of the module path, at a `.` boundary).
    pub rank_pattern: BTreeMap<String, i64>,
    pub alpha_pattern: BTreeMap<String, f64>,
    pub use_rslora: bool,
    pub lora_dropout: f64,
    /// The module paths the adapter is on.
    pub target_modules: Vec<String>,
}

impl AdapterConfig {
    /// The alpha of module `path`: its `alpha_pattern` entry, else `lora_alpha`.
    pub fn alpha_of(&self, path: &str) -> f64 {
        let hit = self
            .alpha_pattern
            .iter()
            .filter(|(p, _)| path == p.as_str() || path.ends_with(&format!(".{p}")))
            .max_by_key(|(p, _)| p.len());
        hit.map_or(self.lora_alpha, |(_, a)| *a)
    }

    /// The JSON fields (unprefixed) diffusers turns back into a `LoraConfig`.
    fn to_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("r".into(), json!(self.r));
        m.insert("lora_alpha".into(), json!(self.lora_alpha));
        m.insert("lora_dropout".into(), json!(self.lora_dropout));
        m.insert("rank_pattern".into(), json!(self.rank_pattern));
        m.insert("alpha_pattern".into(), json!(self.alpha_pattern));
        m.insert("target_modules".into(), json!(self.target_modules));
        m.insert("use_rslora".into(), json!(self.use_rslora));
        m.insert("use_dora".into(), json!(false));
        m.insert("bias".into(), json!("none"));
        m.insert("init_lora_weights".into(), json!(true));
        m
    }
}

/// The configs in a header's metadata (none when it has no `lora_adapter_metadata`).
pub fn read(meta: &BTreeMap<String, String>) -> Result<HashMap<Component, AdapterConfig>> {
    let Some(raw) = meta.get(METADATA_KEY) else {
        return Ok(HashMap::new());
    };
    let all: Map<String, Value> = serde_json::from_str(raw)?;
    let mut out = HashMap::new();
    for c in [Component::Unet, Component::TextEncoder] {
        let prefix = format!("{}.", c.prefix());
        let fields: Map<String, Value> = all
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.to_string(), v.clone())))
            .collect();
        if fields.is_empty() {
            continue;
        }
        if fields.get("use_dora").and_then(Value::as_bool) == Some(true) {
            bail!("{prefix}use_dora is true: DoRA adapters are not supported");
        }
        let num = |k: &str| fields.get(k).and_then(Value::as_f64);
        let Some(r) = num("r") else {
            bail!("{prefix}r is missing");
        };
        let patterns = |k: &str| -> BTreeMap<String, f64> {
            fields
                .get(k)
                .and_then(Value::as_object)
                .map(|o| {
                    o.iter()
                        .filter_map(|(p, v)| Some((p.clone(), v.as_f64()?)))
                        .collect()
                })
                .unwrap_or_default()
        };
        let targets = match fields.get("target_modules") {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            Some(Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        };
        out.insert(
            c,
            AdapterConfig {
                r: r as i64,
                lora_alpha: num("lora_alpha").unwrap_or(r),
                rank_pattern: patterns("rank_pattern")
                    .into_iter()
                    .map(|(k, v)| (k, v as i64))
                    .collect(),
                alpha_pattern: patterns("alpha_pattern"),
                use_rslora: fields.get("use_rslora").and_then(Value::as_bool) == Some(true),
                lora_dropout: num("lora_dropout").unwrap_or(0.0),
                target_modules: targets,
            },
        );
    }
    Ok(out)
}

/// The `lora_adapter_metadata` value for these components' configs (sorted keys, as diffusers
/// writes it).
pub fn to_string(configs: &[(Component, &AdapterConfig)]) -> String {
    let mut all = BTreeMap::new();
    for (c, cfg) in configs {
        for (k, v) in cfg.to_json() {
            all.insert(format!("{}.{k}", c.prefix()), v);
        }
    }
    serde_json::to_string_pretty(&all).expect("JSON of plain values")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AdapterConfig {
        AdapterConfig {
            r: 4,
            lora_alpha: 8.0,
            rank_pattern: BTreeMap::from([("resnets.0.conv1".into(), 2)]),
            alpha_pattern: BTreeMap::from([("resnets.0.conv1".into(), 1.0)]),
            use_rslora: false,
            lora_dropout: 0.0,
            target_modules: vec!["to_q".into()],
        }
    }

    #[test]
    fn round_trips_through_the_header_string() {
        let cfg = config();
        let s = to_string(&[(Component::Unet, &cfg)]);
        let meta = BTreeMap::from([(METADATA_KEY.to_string(), s)]);
        let back = read(&meta).unwrap();
        assert_eq!(back[&Component::Unet], cfg);
        assert!(!back.contains_key(&Component::TextEncoder));
    }

    #[test]
    fn alpha_pattern_matches_whole_trailing_names() {
        let cfg = config();
        assert_eq!(cfg.alpha_of("down_blocks.0.resnets.0.conv1"), 1.0);
        assert_eq!(cfg.alpha_of("down_blocks.0.resnets.10.conv1"), 8.0);
        assert_eq!(cfg.alpha_of("x.attn1.to_q"), 8.0);
    }
}
