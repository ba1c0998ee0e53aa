//! The diffusers pipeline layout studioize reads: which `model_index.json` components a
//! Stable Diffusion 1.x folder has, and with which classes.
use anyhow::{bail, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// The components the SD 1.x loader reads, and the class each must be.
pub const SD_COMPONENTS: [(&str, &str); 4] = [
    ("unet", "UNet2DConditionModel"),
    ("vae", "AutoencoderKL"),
    ("text_encoder", "CLIPTextModel"),
    ("tokenizer", "CLIPTokenizer"),
];

/// Reads `index` (a `model_index.json`) and checks it with [`check_components`].
pub fn check_model_index(index: &Path, shown: &str, components: &[(&str, &str)]) -> Result<()> {
    let listed: BTreeMap<String, Value> = crate::models::config::read_json(index)?;
    check_components(&listed, shown, components)
}

/// Checks that a parsed `model_index.json` lists each of `components` with its class
/// (`"unet": ["diffusers", "UNet2DConditionModel"]`); errors name the file (as `shown`, e.g.
/// the full path or just `model_index.json`) and the component.
pub fn check_components(
    listed: &BTreeMap<String, Value>,
    shown: &str,
    components: &[(&str, &str)],
) -> Result<()> {
    for (key, class) in components {
        let found = listed
            .get(*key)
            .and_then(|v| v.as_array())
            .and_then(|a| a.get(1))
            .and_then(|c| c.as_str());
        match found {
            Some(c) if c == *class => {}
            Some(c) => bail!(
                "{shown}: component '{key}' is a {c}; studioize supports {class} (Stable Diffusion 1.x)"
            ),
            None => bail!("{shown}: no '{key}' component listed"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) -> Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("model_index.json");
        std::fs::write(&p, json).unwrap();
        check_model_index(&p, "model_index.json", &SD_COMPONENTS)
    }

    #[test]
    fn sd_layouts_pass_and_others_name_the_component() {
        let sd = r#"{"_class_name": "StableDiffusionPipeline",
            "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"]}"#;
        check(sd).unwrap();
        let sdxl = sd.replace(
            r#""text_encoder": ["transformers", "CLIPTextModel"]"#,
            r#""text_encoder": ["transformers", "CLIPTextModelWithProjection"]"#,
        );
        let e = check(&sdxl).unwrap_err().to_string();
        assert_eq!(
            e,
            "model_index.json: component 'text_encoder' is a CLIPTextModelWithProjection; \
             studioize supports CLIPTextModel (Stable Diffusion 1.x)"
        );
        let no_vae = sd.replace(r#""vae": ["diffusers", "AutoencoderKL"],"#, "");
        let e = check(&no_vae).unwrap_err().to_string();
        assert_eq!(e, "model_index.json: no 'vae' component listed");
    }
}
