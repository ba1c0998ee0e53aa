//! Which files of a repo a pipeline reads: chosen from the repo's file list (the hub's
//! `siblings`, or a cached snapshot's files) by the same rules the loaders apply to a folder
//! (`weights::component_files` and the loader's variant fallback), so that exactly the files
//! that will be read are downloaded. Weights are safetensors only: a component that has only
//! pickles (`.bin`, `.ckpt`, `.pt`, `.pth`) is an error.
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What the files are for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pipeline {
    /// A diffusers Stable Diffusion 1.x repo; `variant` (`fp16`) is preferred where a component
    /// has it, as `LoadOptions::variant`.
    StableDiffusion { variant: Option<String> },
    /// A transformers BLIP captioning repo.
    Blip,
}

/// The SD components with weights: (folder, file stem).
const SD_WEIGHTS: [(&str, &str); 3] = [
    ("unet", "diffusion_pytorch_model"),
    ("vae", "diffusion_pytorch_model"),
    ("text_encoder", "model"),
];

/// Tokenizer files the CLIP and BERT tokenizers read, where present.
const TOKENIZER_FILES: [&str; 7] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
];

const PICKLE_EXTS: [&str; 4] = ["bin", "ckpt", "pt", "pth"];

/// The files `pipeline` needs from `listing` (repo-relative paths). Sharded weights appear as
/// their index (`*.safetensors.index.json`); see [`shards`] for the files it names.
pub fn needed(listing: &BTreeSet<String>, pipeline: &Pipeline) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let require = |name: &str, out: &mut Vec<String>| -> Result<()> {
        if !listing.contains(name) {
            bail!("no {name}");
        }
        out.push(name.to_string());
        Ok(())
    };
    match pipeline {
        Pipeline::StableDiffusion { variant } => {
            require("model_index.json", &mut out)?;
            require("scheduler/scheduler_config.json", &mut out)?;
            tokenizer(
                listing,
                "tokenizer/",
                &["vocab.json", "merges.txt"],
                &mut out,
            )?;
            for (folder, stem) in SD_WEIGHTS {
                require(&format!("{folder}/config.json"), &mut out)?;
                out.push(weights(
                    listing,
                    &format!("{folder}/"),
                    stem,
                    variant.as_deref(),
                )?);
            }
        }
        Pipeline::Blip => {
            require("config.json", &mut out)?;
            out.push(weights(listing, "", "model", None)?);
            tokenizer(listing, "", &["vocab.txt"], &mut out)?;
            let processor: Vec<&str> = ["preprocessor_config.json", "processor_config.json"]
                .into_iter()
                .filter(|f| listing.contains(*f))
                .collect();
            if processor.is_empty() {
                bail!("no preprocessor_config.json or processor_config.json");
            }
            out.extend(processor.into_iter().map(String::from));
        }
    }
    Ok(out)
}

/// The tokenizer files under `prefix`: `tokenizer.json`, or else all of `fallback`, plus the
/// configs beside them.
fn tokenizer(
    listing: &BTreeSet<String>,
    prefix: &str,
    fallback: &[&str],
    out: &mut Vec<String>,
) -> Result<()> {
    let has = |f: &str| listing.contains(&format!("{prefix}{f}"));
    if !has("tokenizer.json") && !fallback.iter().all(|f| has(f)) {
        bail!(
            "no {prefix}tokenizer.json (or {})",
            fallback
                .iter()
                .map(|f| format!("{prefix}{f}"))
                .collect::<Vec<_>>()
                .join(" + ")
        );
    }
    out.extend(
        TOKENIZER_FILES
            .iter()
            .filter(|f| has(f))
            .map(|f| format!("{prefix}{f}")),
    );
    Ok(())
}

/// The weight file (or shard index) of one component, tried in the loaders' order: the
/// requested variant, then the plain file, then any variant present.
fn weights(
    listing: &BTreeSet<String>,
    prefix: &str,
    stem: &str,
    variant: Option<&str>,
) -> Result<String> {
    let mut candidates: Vec<Option<String>> = Vec::new();
    candidates.extend(variant.map(|v| Some(v.to_string())));
    candidates.push(None);
    candidates.extend(
        variants_present(listing, prefix, stem)
            .into_iter()
            .map(Some),
    );
    for v in &candidates {
        let (single, index) = match v {
            None => (
                format!("{prefix}{stem}.safetensors"),
                format!("{prefix}{stem}.safetensors.index.json"),
            ),
            Some(v) => (
                format!("{prefix}{stem}.{v}.safetensors"),
                format!("{prefix}{stem}.safetensors.index.{v}.json"),
            ),
        };
        if listing.contains(&single) {
            return Ok(single);
        }
        if listing.contains(&index) {
            return Ok(index);
        }
    }
    let pickles: Vec<&String> = listing
        .iter()
        .filter(|f| {
            f.strip_prefix(prefix).is_some_and(|rest| {
                !rest.contains('/')
                    && rest.contains(stem)
                    && PICKLE_EXTS.iter().any(|e| rest.ends_with(&format!(".{e}")))
            })
        })
        .collect();
    match pickles.first() {
        Some(p) => bail!(
            "only pickle weights for {} ({p}): studioize loads safetensors only, because unpickling can run arbitrary code",
            if prefix.is_empty() { "the model" } else { prefix.trim_end_matches('/') }
        ),
        None => bail!("no {prefix}{stem}.safetensors (or sharded index)"),
    }
}

/// Variants saved beside a component, as `weights::files` finds them in a folder.
fn variants_present(listing: &BTreeSet<String>, prefix: &str, stem: &str) -> BTreeSet<String> {
    listing
        .iter()
        .filter_map(|f| f.strip_prefix(prefix).filter(|n| !n.contains('/')))
        .filter_map(|name| crate::weights::files::variant_of(name, stem))
        .collect()
}

/// Refuses a `model_index.json` that is not Stable Diffusion 1.x's before its weights are
/// downloaded (the loader checks the same on load).
pub fn check_model_index(path: &Path) -> Result<()> {
    crate::weights::layout::check_model_index(
        path,
        "model_index.json",
        &crate::weights::layout::SD_COMPONENTS,
    )
}

/// Whether a needed file is a shard index.
pub fn is_shard_index(name: &str) -> bool {
    name.contains(".safetensors.index.") && name.ends_with(".json")
}

/// The repo-relative shard files that the index `name` (read from `path`) lists.
pub fn shards(path: &Path, name: &str) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: BTreeMap<String, String>,
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let index: Index = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: not a shard index ({e})", path.display()))?;
    let folder = name
        .rsplit_once('/')
        .map(|(d, _)| format!("{d}/"))
        .unwrap_or_default();
    let files: BTreeSet<&String> = index.weight_map.values().collect();
    files
        .into_iter()
        .map(|f| {
            if f.is_empty() || f.contains('/') || f.contains('\\') || f.starts_with('.') {
                bail!("{}: shard name {f:?} is not a file name", path.display());
            }
            Ok(format!("{folder}{f}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(files: &[&str]) -> BTreeSet<String> {
        files.iter().map(|s| s.to_string()).collect()
    }

    const SD14: [&str; 24] = [
        ".gitattributes",
        "README.md",
        "model_index.json",
        "feature_extractor/preprocessor_config.json",
        "safety_checker/config.json",
        "safety_checker/model.safetensors",
        "safety_checker/pytorch_model.bin",
        "scheduler/scheduler_config.json",
        "text_encoder/config.json",
        "text_encoder/model.fp16.safetensors",
        "text_encoder/model.safetensors",
        "text_encoder/pytorch_model.bin",
        "tokenizer/merges.txt",
        "tokenizer/special_tokens_map.json",
        "tokenizer/tokenizer_config.json",
        "tokenizer/vocab.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.bin",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.bin",
        "vae/diffusion_pytorch_model.safetensors",
        "sd-v1-4.ckpt",
    ];

    #[test]
    fn stable_diffusion_plain_and_fp16() {
        let l = listing(&SD14);
        let plain = needed(&l, &Pipeline::StableDiffusion { variant: None }).unwrap();
        assert_eq!(
            plain,
            [
                "model_index.json",
                "scheduler/scheduler_config.json",
                "tokenizer/tokenizer_config.json",
                "tokenizer/special_tokens_map.json",
                "tokenizer/vocab.json",
                "tokenizer/merges.txt",
                "unet/config.json",
                "unet/diffusion_pytorch_model.safetensors",
                "vae/config.json",
                "vae/diffusion_pytorch_model.safetensors",
                "text_encoder/config.json",
                "text_encoder/model.safetensors",
            ]
        );
        let fp16 = Pipeline::StableDiffusion {
            variant: Some("fp16".into()),
        };
        let f = needed(&l, &fp16).unwrap();
        assert!(f.contains(&"unet/diffusion_pytorch_model.fp16.safetensors".to_string()));
        assert!(f.contains(&"text_encoder/model.fp16.safetensors".to_string()));
        // no fp16 VAE: the plain one, as the loader falls back
        assert!(f.contains(&"vae/diffusion_pytorch_model.safetensors".to_string()));
        assert!(!f
            .iter()
            .any(|f| f.ends_with(".bin") || f.ends_with(".ckpt")));
    }

    #[test]
    fn only_variant_sharded_and_pickles() {
        let mut l = listing(&SD14);
        l.remove("text_encoder/model.safetensors");
        let f = needed(&l, &Pipeline::StableDiffusion { variant: None }).unwrap();
        assert!(f.contains(&"text_encoder/model.fp16.safetensors".to_string()));
        l.remove("unet/diffusion_pytorch_model.safetensors");
        l.remove("unet/diffusion_pytorch_model.fp16.safetensors");
        l.insert("unet/diffusion_pytorch_model.safetensors.index.json".into());
        l.insert("unet/diffusion_pytorch_model-00001-of-00002.safetensors".into());
        let f = needed(&l, &Pipeline::StableDiffusion { variant: None }).unwrap();
        assert!(f.contains(&"unet/diffusion_pytorch_model.safetensors.index.json".to_string()));
        assert!(is_shard_index(
            "unet/diffusion_pytorch_model.safetensors.index.json"
        ));
        assert!(is_shard_index(
            "unet/diffusion_pytorch_model.safetensors.index.fp16.json"
        ));
        l.remove("unet/diffusion_pytorch_model.safetensors.index.json");
        let e = needed(&l, &Pipeline::StableDiffusion { variant: None }).unwrap_err();
        assert_eq!(
            e.to_string(),
            "only pickle weights for unet (unet/diffusion_pytorch_model.bin): studioize loads safetensors only, because unpickling can run arbitrary code"
        );
        l.remove("unet/diffusion_pytorch_model.bin");
        let e = needed(&l, &Pipeline::StableDiffusion { variant: None }).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no unet/diffusion_pytorch_model.safetensors (or sharded index)"
        );
    }

    #[test]
    fn blip_files() {
        let l = listing(&[
            "config.json",
            "model.safetensors",
            "pytorch_model.bin",
            "tf_model.h5",
            "preprocessor_config.json",
            "special_tokens_map.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "vocab.txt",
            "README.md",
        ]);
        let f = needed(&l, &Pipeline::Blip).unwrap();
        assert_eq!(
            f,
            [
                "config.json",
                "model.safetensors",
                "tokenizer.json",
                "tokenizer_config.json",
                "special_tokens_map.json",
                "vocab.txt",
                "preprocessor_config.json",
            ]
        );
        let only_bin = listing(&[
            "config.json",
            "pytorch_model.bin",
            "vocab.txt",
            "preprocessor_config.json",
        ]);
        let e = needed(&only_bin, &Pipeline::Blip).unwrap_err().to_string();
        assert!(
            e.starts_with("only pickle weights for the model (pytorch_model.bin)"),
            "{e}"
        );
        let no_proc = listing(&["config.json", "model.safetensors", "vocab.txt"]);
        let e = needed(&no_proc, &Pipeline::Blip).unwrap_err().to_string();
        assert_eq!(e, "no preprocessor_config.json or processor_config.json");
    }

    #[test]
    fn shard_names_from_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i.json");
        std::fs::write(&p, r#"{"weight_map": {"a": "m-1.safetensors", "b": "m-2.safetensors", "c": "m-1.safetensors"}}"#).unwrap();
        let s = shards(&p, "unet/m.safetensors.index.json").unwrap();
        assert_eq!(s, ["unet/m-1.safetensors", "unet/m-2.safetensors"]);
        std::fs::write(&p, r#"{"weight_map": {"a": "../../etc/passwd"}}"#).unwrap();
        assert!(shards(&p, "x.safetensors.index.json")
            .unwrap_err()
            .to_string()
            .contains("not a file name"));
    }
}
