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
