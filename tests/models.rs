//! Parity of the SD 1.x components with diffusers / transformers, on the tiny fixtures loaded
//! through the public loading code (`StableDiffusion::load`).
mod common;

use common::{assert_close, fixtures, read_refs};
use studioize::pipelines::{LoadOptions, StableDiffusion};
use studioize::weights::parameter_count;
use tch::{Kind, Tensor};

const TOL: f64 = 1e-4;

fn sd_dir() -> std::path::PathBuf {
    fixtures().join("sd")
}

fn load(name: &str) -> StableDiffusion {
    StableDiffusion::load(&sd_dir().join(name), &LoadOptions::default())
        .unwrap_or_else(|e| panic!("loading {name}: {e:#}"))
}

fn check_model(name: &str) {
    let sd = load(name);
    let r = read_refs(&sd_dir().join(format!("{name}.refs.safetensors")));
    tch::no_grad(|| {
        // Text encoder, on the reference's own token ids and on ours.
        let ids = &r["input_ids"];
        let ours: Vec<i64> = ["a product photo of a leather bag", ""]
            .iter()
            .flat_map(|p| sd.tokenizer.encode(p).unwrap())
            .collect();
        assert_eq!(
            Tensor::from_slice(&ours).view([2, 77]),
            *ids,
            "{name}: token ids"
        );
        let emb = sd.text_encoder.forward(ids);
        assert_close(
            &format!("{name} text embeddings"),
            &emb,
            &r["text_embeddings"],
            TOL,
        );

        // UNet with per-sample and scalar timesteps.
        let out = sd.unet.forward(
            &r["unet_sample"],
            &r["unet_timesteps"],
            &r["text_embeddings"],
        );
        assert_close(&format!("{name} unet"), &out, &r["unet_out"], TOL);
        let t = Tensor::from(500i64);
        let out = sd
            .unet
            .forward(&r["unet_sample"], &t, &r["text_embeddings"]);
        assert_close(
            &format!("{name} unet, scalar t"),
            &out,
            &r["unet_out_scalar_t"],
            TOL,
        );
        // A float timestep gives the same as the integer one.
        let out_f = sd.unet.forward(
            &r["unet_sample"],
            &Tensor::from(500.0f64),
            &r["text_embeddings"],
        );
        assert_close(&format!("{name} unet, float t"), &out_f, &out, 1e-6);

        // VAE: posterior, seeded sample, decode.
        let post = sd.vae.encode(&r["vae_image"]);
        assert_close(&format!("{name} vae mean"), &post.mean, &r["vae_mean"], TOL);
        assert_close(&format!("{name} vae std"), &post.std, &r["vae_std"], TOL);
        assert_close(
            &format!("{name} vae logvar"),
            &post.logvar,
            &r["vae_logvar"],
            TOL,
        );
        tch::manual_seed(42);
        assert_close(
            &format!("{name} vae sample"),
            &post.sample(),
            &r["vae_sample"],
            TOL,
        );
        let dec = sd.vae.decode(&r["vae_latent"]);
        assert_close(&format!("{name} vae decode"), &dec, &r["vae_decoded"], TOL);
    });
}

#[test]
fn tiny_a_matches_reference() {
    check_model("tiny-a");
}

#[test]
fn tiny_b_matches_reference() {
    // Three levels, list head dims, linear projections, upcast attention, sharded UNet,
    // fp16-variant text encoder in transformers 5's un-prefixed layout.
    check_model("tiny-b");
}

#[test]
fn single_file_compvis_checkpoint_matches_the_folder() {
    let dir = sd_dir();
    let opts = LoadOptions {
        config_dir: Some(dir.join("tiny-a")),
        ..Default::default()
    };
    let single = StableDiffusion::load(&dir.join("tiny-a.safetensors"), &opts).unwrap();
    let folder = load("tiny-a");
    for (a, b, what) in [
        (&single.unet_vs, &folder.unet_vs, "unet"),
        (&single.vae_vs, &folder.vae_vs, "vae"),
        (
            &single.text_encoder_vs,
            &folder.text_encoder_vs,
            "text_encoder",
        ),
    ] {
        let (va, vb) = (a.variables(), b.variables());
        assert_eq!(va.len(), vb.len(), "{what}");
        for (k, t) in &va {
            assert!(t.equal(&vb[k]), "{what}: {k} differs");
        }
    }
    let r = read_refs(&dir.join("tiny-a.refs.safetensors"));
    let out = tch::no_grad(|| {
        single.unet.forward(
            &r["unet_sample"],
            &r["unet_timesteps"],
            &r["text_embeddings"],
        )
    });
    assert_close("single-file unet", &out, &r["unet_out"], TOL);
}

#[test]
fn single_file_without_config_is_a_clear_error() {
    let err = StableDiffusion::load(
        &sd_dir().join("tiny-a.safetensors"),
        &LoadOptions::default(),
    )
    .err()
    .expect("no config folder")
    .to_string();
    assert!(
        err.contains("tiny-a.safetensors") && err.contains("--config"),
        "{err}"
    );
}

#[test]
fn parameter_counts_match_pytorch() {
    let params: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sd_dir().join("params.json")).unwrap())
            .unwrap();
    for name in ["tiny-a", "tiny-b"] {
        let sd = load(name);
        for (component, vs) in [
            ("unet", &sd.unet_vs),
            ("vae", &sd.vae_vs),
            ("text_encoder", &sd.text_encoder_vs),
        ] {
            let want = params[name][component].as_i64().unwrap();
            assert_eq!(parameter_count(vs), want, "{name} {component}");
            let info = sd.components.iter().find(|c| c.name == component).unwrap();
            assert_eq!(info.parameters, Some(want), "{name} {component} info");
        }
    }
}

#[test]
fn tokenizer_matches_transformers_on_awkward_prompts() {
    let cases: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(sd_dir().join("tokens.json")).unwrap())
            .unwrap();
    // tiny-a has vocab.json + merges.txt (SD 1.4's layout), tiny-b a tokenizer.json.
    for dir in ["tiny-a", "tiny-b"] {
        let tok =
            studioize::models::clip::ClipTokenizer::from_dir(&sd_dir().join(dir).join("tokenizer"))
                .unwrap();
        for case in &cases {
            let prompt = case["prompt"].as_str().unwrap();
            let want: Vec<i64> = case["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            assert_eq!(tok.encode(prompt).unwrap(), want, "{dir}: {prompt:?}");
        }
    }
}

#[test]
fn half_precision_weights_load_into_fp32_models() {
    let sd = load("tiny-b");
    let info = sd
        .components
        .iter()
        .find(|c| c.name == "text_encoder")
        .unwrap();
    assert_eq!(info.stored_dtype.as_deref(), Some("float16"));
    for t in sd.text_encoder_vs.variables().values() {
        assert_eq!(t.kind(), Kind::Float);
    }
}

/// A copy of tiny-a whose `component/config.json` has `key` set to `value`.
fn tiny_a_with(
    dir: &std::path::Path,
    component: &str,
    key: &str,
    value: &str,
) -> std::path::PathBuf {
    let root = dir.join(format!("{component}-{key}-{value}"));
    for entry in walk(&sd_dir().join("tiny-a")) {
        let rel = entry.strip_prefix(sd_dir().join("tiny-a")).unwrap();
        let to = root.join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &to).unwrap();
    }
    let cfg = root.join(component).join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    json[key] = serde_json::Value::String(value.into());
    std::fs::write(&cfg, json.to_string()).unwrap();
    root
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn activation_names_are_parsed_once_and_checked_per_model() {
    let dir = tempfile::tempdir().unwrap();
    let err = |component: &str, key: &str, value: &str| -> String {
        let root = tiny_a_with(dir.path(), component, key, value);
        match StableDiffusion::load(&root, &LoadOptions::default()) {
            Ok(_) => panic!("{component}.{key} = {value} loaded"),
            Err(e) => format!("{e:#}"),
        }
    };
    // a name no model knows: the file and the key are named
    let e = err("unet", "act_fn", "relu");
    assert!(
        e.contains("unet/config.json") && e.contains("act_fn") && e.contains("relu"),
        "{e}"
    );
    // a known name a model does not implement
    let e = err("vae", "act_fn", "gelu");
    assert!(
        e.contains("vae/config.json") && e.contains("act_fn: 'gelu' is not supported (silu)"),
        "{e}"
    );
    let e = err("text_encoder", "hidden_act", "silu");
    assert!(
        e.contains("text_encoder/config.json")
            && e.contains("hidden_act 'silu' is not supported (quick_gelu, gelu)"),
        "{e}"
    );
    // diffusers' other spelling of silu loads, and gives the same model
    let root = tiny_a_with(dir.path(), "unet", "act_fn", "swish");
    let swish = StableDiffusion::load(&root, &LoadOptions::default()).unwrap();
    let base = load("tiny-a");
    assert_eq!(
        swish.unet.config().act_fn,
        base.unet.config().act_fn,
        "swish is silu"
    );
}
