//! The key formats of LoRA files, parsed into (component, module, part).
//!
//! - diffusers / PEFT: `unet.<module>.lora_A.weight` (down), `.lora_B.weight` (up),
//!   `text_encoder.<module>...`; without a prefix the module decides (`text_model.` is the
//!   text encoder);
//! - older diffusers: `unet.<module>.lora.down.weight` / `.lora.up.weight` (also
//!   `.lora_linear_layer.`), and the attention-processor form `<attn>.processor.to_q_lora.
//!   down.weight` (`to_out_lora` is `to_out.0`; in the text encoder `q_proj` ... `out_proj`);
//! - kohya (A1111, ComfyUI): `lora_unet_<module with '_'>.lora_down.weight`, `.lora_up.weight`,
//!   `.alpha`; `lora_te_<module with '_'>` for the text encoder. The flat module name is
//!   resolved against the model's own module paths later (it cannot be split back reliably).
use anyhow::{bail, Result};

/// Which network a LoRA module belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    Unet,
    TextEncoder,
}

impl Component {
    /// The prefix of its keys in diffusers' format (and its name in messages).
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Unet => "unet",
            Self::TextEncoder => "text_encoder",
        }
    }
}

/// A module as a file names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ModuleName {
    /// A module path with dots, in the model's own names.
    Path(String),
    /// kohya's flattened name (dots as `_`), diffusers or LDM module names.
    Flat(String),
}

impl ModuleName {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Path(s) | Self::Flat(s) => s,
        }
    }
}

/// Which tensor of an adapter a key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Down,
    Up,
    Alpha,
}

/// The format a key is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    Peft,
    OldDiffusers,
    Kohya,
}

/// One parsed key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedKey {
    pub component: Component,
    pub module: ModuleName,
    pub part: Part,
    pub format: KeyFormat,
}

/// Parses `key`; the error says what the key is when it is known but not supported.
pub fn parse(key: &str) -> Result<ParsedKey> {
    if let Some(rest) = key.strip_prefix("lora_") {
        return parse_kohya(key, rest);
    }
    if key.contains("lora_magnitude_vector") || key.ends_with(".dora_scale") {
        bail!("key '{key}' is a DoRA magnitude: DoRA adapters are not supported");
    }
    let (component, rest) = if let Some(r) = key.strip_prefix("unet.") {
        (Component::Unet, r)
    } else if let Some(r) = key.strip_prefix("text_encoder.") {
        (Component::TextEncoder, r)
    } else if key.starts_with("text_encoder_2.") || key.starts_with("transformer.") {
        bail!(
            "key '{key}' belongs to another architecture (SDXL / a transformer model), not SD 1.x"
        );
    } else if key.starts_with("text_model.") {
        (Component::TextEncoder, key)
    } else {
        (Component::Unet, key)
    };
    for (suffix, part) in [(".lora_A.weight", Part::Down), (".lora_B.weight", Part::Up)] {
        if let Some(m) = rest.strip_suffix(suffix) {
            return Ok(key_of(component, m.to_string(), part, KeyFormat::Peft));
        }
    }
    for (suffix, part) in [
        (".lora.down.weight", Part::Down),
        (".lora.up.weight", Part::Up),
        (".lora_linear_layer.down.weight", Part::Down),
        (".lora_linear_layer.up.weight", Part::Up),
    ] {
        if let Some(m) = rest.strip_suffix(suffix) {
            return Ok(key_of(
                component,
                m.to_string(),
                part,
                KeyFormat::OldDiffusers,
            ));
        }
    }
    for (suffix, part) in [(".down.weight", Part::Down), (".up.weight", Part::Up)] {
        if let Some(m) = rest.strip_suffix(suffix) {
            if let Some(module) = processor_module(component, m) {
                return Ok(key_of(component, module, part, KeyFormat::OldDiffusers));
            }
        }
    }
    if let Some(m) = rest.strip_suffix(".alpha") {
        return Ok(key_of(
            component,
            m.to_string(),
            Part::Alpha,
            KeyFormat::OldDiffusers,
        ));
    }
    bail!("key '{key}' is not a LoRA key in the diffusers, PEFT or kohya format")
}

fn key_of(component: Component, module: String, part: Part, format: KeyFormat) -> ParsedKey {
    ParsedKey {
        component,
        module: ModuleName::Path(module),
        part,
        format,
    }
}

/// `<attn>.processor.to_q_lora` -> `<attn>.to_q` (UNet) or `<attn>.q_proj` (text encoder).
fn processor_module(component: Component, m: &str) -> Option<String> {
    let (head, tail) = m.rsplit_once('.')?;
    let head = head.strip_suffix(".processor").unwrap_or(head);
    let name = match (component, tail) {
        (Component::Unet, "to_q_lora") => "to_q",
        (Component::Unet, "to_k_lora") => "to_k",
        (Component::Unet, "to_v_lora") => "to_v",
        (Component::Unet, "to_out_lora") => "to_out.0",
        (Component::TextEncoder, "to_q_lora") => "q_proj",
        (Component::TextEncoder, "to_k_lora") => "k_proj",
        (Component::TextEncoder, "to_v_lora") => "v_proj",
        (Component::TextEncoder, "to_out_lora") => "out_proj",
        _ => return None,
    };
    Some(format!("{head}.{name}"))
}

fn parse_kohya(key: &str, rest: &str) -> Result<ParsedKey> {
    if rest.starts_with("te1_") || rest.starts_with("te2_") {
        bail!("key '{key}' is an SDXL text-encoder key (lora_te1_/lora_te2_): this LoRA is for SDXL, not SD 1.x");
    }
    let (component, rest) = if let Some(r) = rest.strip_prefix("unet_") {
        (Component::Unet, r)
    } else if let Some(r) = rest.strip_prefix("te_") {
        (Component::TextEncoder, r)
    } else {
        bail!("key '{key}' is neither a kohya UNet (lora_unet_) nor text-encoder (lora_te_) key");
    };
    let Some((module, tensor)) = rest.split_once('.') else {
        bail!("key '{key}' has no tensor name after the module");
    };
    let part = match tensor {
        "lora_down.weight" => Part::Down,
        "lora_up.weight" => Part::Up,
        "alpha" => Part::Alpha,
        "dora_scale" => bail!("key '{key}' is a DoRA scale: DoRA adapters are not supported"),
        t if t.starts_with("hada_") || t.starts_with("lokr_") => bail!(
            "key '{key}' is a LyCORIS LoHa/LoKr tensor: only LoRA and LoCon are supported"
        ),
        _ => bail!("key '{key}': '{tensor}' is not a kohya LoRA tensor (lora_down.weight, lora_up.weight, alpha)"),
    };
    Ok(ParsedKey {
        component,
        module: ModuleName::Flat(module.to_string()),
        part,
        format: KeyFormat::Kohya,
    })
}

/// kohya's flat name of a module path: dots become underscores.
pub fn flatten(path: &str) -> String {
    path.replace('.', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(c: Component, m: &str, part: Part, format: KeyFormat) -> ParsedKey {
        key_of(c, m.to_string(), part, format)
    }

    #[test]
    fn parses_every_format() {
        let u = Component::Unet;
        let t = Component::TextEncoder;
        let attn = "down_blocks.0.attentions.0.transformer_blocks.0.attn1";
        let cases = [
            (
                format!("unet.{attn}.to_q.lora_A.weight"),
                path(u, &format!("{attn}.to_q"), Part::Down, KeyFormat::Peft),
            ),
            (
                format!("{attn}.to_out.0.lora_B.weight"),
                path(u, &format!("{attn}.to_out.0"), Part::Up, KeyFormat::Peft),
            ),
            (
                "text_encoder.text_model.encoder.layers.1.self_attn.q_proj.lora_A.weight".into(),
                path(
                    t,
                    "text_model.encoder.layers.1.self_attn.q_proj",
                    Part::Down,
                    KeyFormat::Peft,
                ),
            ),
            (
                format!("unet.{attn}.to_k.lora.up.weight"),
                path(
                    u,
                    &format!("{attn}.to_k"),
                    Part::Up,
                    KeyFormat::OldDiffusers,
                ),
            ),
            (
                format!("unet.{attn}.processor.to_out_lora.down.weight"),
                path(
                    u,
                    &format!("{attn}.to_out.0"),
                    Part::Down,
                    KeyFormat::OldDiffusers,
                ),
            ),
            (
                "text_encoder.text_model.encoder.layers.0.self_attn.to_v_lora.up.weight".into(),
                path(
                    t,
                    "text_model.encoder.layers.0.self_attn.v_proj",
                    Part::Up,
                    KeyFormat::OldDiffusers,
                ),
            ),
        ];
        for (key, want) in cases {
            assert_eq!(parse(&key).unwrap(), want, "{key}");
        }
        let k = parse("lora_unet_input_blocks_1_1_proj_in.alpha").unwrap();
        assert_eq!(
            k.module,
            ModuleName::Flat("input_blocks_1_1_proj_in".into())
        );
        assert_eq!((k.component, k.part), (u, Part::Alpha));
        let k = parse("lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight").unwrap();
        assert_eq!((k.component, k.part), (t, Part::Up));
    }

    #[test]
    fn refuses_other_architectures_and_methods_by_key() {
        for (key, what) in [
            (
                "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight",
                "SDXL",
            ),
            (
                "text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight",
                "SDXL",
            ),
            ("lora_unet_down_blocks_0_resnets_0_conv1.hada_w1_a", "LoHa"),
            (
                "unet.mid_block.attentions.0.proj_in.lora_magnitude_vector",
                "DoRA",
            ),
            ("lora_unet_x.lora_mid.weight", "not a kohya"),
            ("unet.conv_in.weight", "not a LoRA key"),
        ] {
            let e = parse(key).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains(what), "{e}");
        }
    }
}
