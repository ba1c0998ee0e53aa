//! `studioize export`: the tiny models as original single files (CompVis/LDM names). The fp32
//! export of tiny-a equals the reference file written by `tools/make_sd_fixtures.py` (checked
//! there with diffusers' converters); exports reload in studioize's single-file loader with the
//! folder's weights (exact in fp32, rounded in fp16) and in diffusers' `from_single_file` with
//! the same state dicts and images (`tools/check_export.py`); a training checkpoint exports its
//! own UNet and text encoder; bad input gives one-line errors.
mod common;

use common::fixtures;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use studioize::pipelines::{LoadOptions, StableDiffusion};
use studioize::weights::compvis::{split_and_convert, UNetLayout, VaeLayout};
use studioize::weights::WeightSet;
use tch::nn::VarStore;
use tch::{Kind, Tensor};

fn sd(name: &str) -> PathBuf {
    fixtures().join("sd").join(name)
}

fn studioize(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_studioize"))
        .args(args)
        .output()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs `studioize export MODEL --out OUT --dtype DTYPE EXTRA...` and asserts success.
fn export(model: &Path, out: &Path, dtype: &str, extra: &[&str]) {
    let mut args = vec!["export", s(model), "--out", s(out), "--dtype", dtype];
    args.extend_from_slice(extra);
    let o = studioize(&args);
    assert!(
        o.status.success(),
        "export {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn read(path: &Path) -> BTreeMap<String, Tensor> {
    Tensor::read_safetensors(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .into_iter()
        .collect()
}

fn assert_same_tensors(
    what: &str,
    got: &BTreeMap<String, Tensor>,
    want: &BTreeMap<String, Tensor>,
) {
    let (g, w): (Vec<_>, Vec<_>) = (got.keys().collect(), want.keys().collect());
    assert_eq!(g, w, "{what}: names differ");
    for (k, e) in want {
        let a = &got[k];
        assert_eq!(a.size(), e.size(), "{what}: '{k}' shape");
        assert_eq!(a.kind(), e.kind(), "{what}: '{k}' dtype");
        assert!(a.equal(e), "{what}: '{k}' values differ");
    }
}

#[test]
fn tiny_a_fp32_export_equals_the_reference_single_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tiny-a.safetensors");
    export(&sd("tiny-a"), &out, "fp32", &[]);
    assert_same_tensors("export", &read(&out), &read(&sd("tiny-a.safetensors")));
    // Single file in, single file out: the same bytes as from the folder.
    let again = dir.path().join("again.safetensors");
    export(
        &sd("tiny-a.safetensors"),
        &again,
        "fp32",
        &["--config", s(&sd("tiny-a"))],
    );
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap());
}

fn load(path: &Path, config: Option<&Path>) -> StableDiffusion {
    let opts = LoadOptions {
        config_dir: config.map(Path::to_path_buf),
        ..Default::default()
    };
    StableDiffusion::load(path, &opts).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()))
}

/// Every variable of `got` equals `want`'s rounded to `kind` (exactly equal for fp32).
fn assert_vars_equal(what: &str, got: &VarStore, want: &VarStore, kind: Kind) {
    let (g, w) = (got.variables(), want.variables());
    assert_eq!(g.len(), w.len(), "{what}: variable count");
    for (name, e) in &w {
        let a = &g[name];
        let e = e.to_kind(kind).to_kind(e.kind());
        assert!(a.equal(&e), "{what}: '{name}' differs");
    }
}

#[test]
fn exports_reload_in_studioize_with_the_folder_weights() {
    let dir = tempfile::tempdir().unwrap();
    for model in ["tiny-a", "tiny-b"] {
        let folder = load(&sd(model), None);
        for (dtype, kind) in [("fp32", Kind::Float), ("fp16", Kind::Half)] {
            let out = dir.path().join(format!("{model}-{dtype}.safetensors"));
            export(&sd(model), &out, dtype, &[]);
            assert!(read(&out).values().all(|t| t.kind() == kind));
            let single = load(&out, Some(&sd(model)));
            let what = format!("{model} {dtype}");
            assert_vars_equal(
                &format!("{what} unet"),
                &single.unet_vs,
                &folder.unet_vs,
                kind,
            );
            assert_vars_equal(&format!("{what} vae"), &single.vae_vs, &folder.vae_vs, kind);
            assert_vars_equal(
                &format!("{what} text encoder"),
                &single.text_encoder_vs,
                &folder.text_encoder_vs,
                kind,
            );
        }
    }
}

/// Runs `tools/check_export.py` on `cases` (see the script) with the pinned interpreter.
fn python_check(dir: &Path, cases: serde_json::Value) {
    let python = option_env!("STUDIOIZE_PYTHON")
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .expect(
            "STUDIOIZE_PYTHON (written by setup.sh into .cargo/config.toml) must point at the venv",
        );
    let file = dir.join("cases.json");
    std::fs::write(&file, cases.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/check_export.py");
    let out = Command::new(python)
        .arg(script)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "diffusers disagrees: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn exports_load_in_diffusers_with_identical_images() {
    let dir = tempfile::tempdir().unwrap();
    let mut cases = Vec::new();
    for (model, dtype) in [
        ("tiny-a", "fp32"),
        ("tiny-a", "fp16"),
        ("tiny-b", "fp32"),
        ("tiny-b", "fp16"),
        ("tiny-b", "bf16"),
    ] {
        let out = dir.path().join(format!("{model}-{dtype}.safetensors"));
        export(&sd(model), &out, dtype, &[]);
        cases.push(serde_json::json!({"file": out, "folder": sd(model), "dtype": dtype}));
    }
    python_check(dir.path(), cases.into());
}

/// A 2-step run of tiny-a that also trains the text encoder, checkpointed at step 2.
fn train_run(dir: &Path) -> PathBuf {
    let cfg = format!(
        r#"{tables}[train]
steps = 2
batch_size = 2
learning_rate = 1e-3
lr_schedule = "constant"
checkpoint_every = 2
train_text_encoder = true
seed = 3
[output]
dir = "{run}"
"#,
        tables = common::tiny_experiment_tables(dir, 8, 7),
        run = dir.join("run").display(),
    );
    let path = dir.join("exp.toml");
    std::fs::write(&path, cfg).unwrap();
    let out = studioize(&["train", s(&path), "--device", "cpu", "--quiet"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("run").join("checkpoints").join("step-2")
}

fn layouts(folder: &Path) -> (UNetLayout, VaeLayout) {
    let geometry = |c: &str| {
        let text = std::fs::read_to_string(folder.join(c).join("config.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let levels = v["block_out_channels"].as_array().unwrap().len();
        (levels, v["layers_per_block"].as_u64().unwrap() as usize)
    };
    let ((ul, ulpb), (vl, vlpb)) = (geometry("unet"), geometry("vae"));
    (
        UNetLayout {
            levels: ul,
            layers_per_block: ulpb,
        },
        VaeLayout {
            levels: vl,
            layers_per_block: vlpb,
        },
    )
}

/// The exported file's components in diffusers names (through the single-file loader's
/// conversion, which `tiny_a_fp32_export_equals_the_reference_single_file` pins to diffusers').
fn parts_of(file: &Path) -> [BTreeMap<String, Tensor>; 3] {
    let ws = WeightSet::read_files(&[file.to_path_buf()]).unwrap();
    let (u, v) = layouts(&sd("tiny-a"));
    let p = split_and_convert(ws, &u, &v).unwrap_or_else(|e| panic!("{e:#}"));
    let map = |w: &WeightSet| {
        w.iter()
            .map(|(n, e)| (n.to_string(), e.tensor.shallow_clone()))
            .collect::<BTreeMap<_, _>>()
    };
    [map(&p.unet), map(&p.vae), map(&p.text_encoder)]
}

/// A component file's tensors, with the text encoder's `text_model.` prefix made uniform.
fn component(file: &Path) -> BTreeMap<String, Tensor> {
    read(file)
        .into_iter()
        .filter(|(n, _)| !n.ends_with("position_ids"))
        .map(|(n, t)| {
            let is_text = file.file_name().is_some_and(|f| f == "model.safetensors");
            match is_text && !n.starts_with("text_model.") {
                true => (format!("text_model.{n}"), t),
                false => (n, t),
            }
        })
        .collect()
}

#[test]
fn training_checkpoint_exports_its_own_unet_and_text_encoder() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = train_run(dir.path());
    let (unet_dir, te_dir) = (ckpt.join("unet"), ckpt.join("text_encoder"));
    let trained_unet = component(&unet_dir.join("diffusion_pytorch_model.safetensors"));
    let trained_te = component(&te_dir.join("model.safetensors"));
    let base_te = component(&sd("tiny-a").join("text_encoder/model.safetensors"));
    let base_vae = component(&sd("tiny-a").join("vae/diffusion_pytorch_model.safetensors"));

    // --unet: the checkpoint's UNet, the base model's text encoder and VAE.
    let with_unet = dir.path().join("with-unet.safetensors");
    export(&sd("tiny-a"), &with_unet, "fp32", &["--unet", s(&unet_dir)]);
    let [u, v, t] = parts_of(&with_unet);
    assert_same_tensors("--unet: unet", &u, &trained_unet);
    assert_same_tensors("--unet: vae", &v, &base_vae);
    assert_same_tensors("--unet: text encoder", &t, &base_te);

    // The checkpoint folder as MODEL: its UNet and text encoder over the run's base model.
    let whole = dir.path().join("checkpoint.safetensors");
    export(&ckpt, &whole, "fp32", &[]);
    let [u, v, t] = parts_of(&whole);
    assert_same_tensors("checkpoint: unet", &u, &trained_unet);
    assert_same_tensors("checkpoint: vae", &v, &base_vae);
    assert_same_tensors("checkpoint: text encoder", &t, &trained_te);
    assert!(
        !t.iter().all(|(k, x)| base_te[k].equal(x)),
        "the text encoder did not train"
    );

    // diffusers agrees (fp16, the default dtype), with the checkpoint's components.
    let half = dir.path().join("checkpoint-fp16.safetensors");
    export(&ckpt, &half, "fp16", &[]);
    python_check(
        dir.path(),
        serde_json::json!([{"file": half, "folder": sd("tiny-a"), "dtype": "fp16",
                           "unet": unet_dir, "text_encoder": te_dir}]),
    );

    // A checkpoint outside a run (no config.toml) names the missing file.
    let lone = dir.path().join("lone").join("step-2");
    std::fs::create_dir_all(lone.join("unet")).unwrap();
    std::fs::copy(unet_dir.join("config.json"), lone.join("unet/config.json")).unwrap();
    let out = dir.path().join("x.safetensors");
    let err = common::sole_error_line(&studioize(&["export", s(&lone), "--out", s(&out)]));
    assert!(
        err.contains("config.toml") && err.contains("--unet"),
        "{err}"
    );
}

/// A copy of tiny-a's UNet folder whose weights are changed by `edit`.
fn unet_variant(dir: &Path, name: &str, edit: impl FnOnce(&mut Vec<(String, Tensor)>)) -> PathBuf {
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    let src = sd("tiny-a").join("unet");
    std::fs::copy(src.join("config.json"), folder.join("config.json")).unwrap();
    let mut tensors: Vec<(String, Tensor)> = read(&src.join("diffusion_pytorch_model.safetensors"))
        .into_iter()
        .collect();
    edit(&mut tensors);
    Tensor::write_safetensors(&tensors, folder.join("diffusion_pytorch_model.safetensors"))
        .unwrap();
    folder
}

#[test]
fn bad_input_gives_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("out.safetensors");

    // Not a model: an empty folder, a text file, a diffusers component file.
    let empty = d.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = common::sole_error_line(&studioize(&["export", s(&empty), "--out", s(&out)]));
    assert!(
        err.contains(s(&empty)) && err.contains("not a model"),
        "{err}"
    );
    let notes = d.join("notes.txt");
    std::fs::write(&notes, "hello").unwrap();
    let err = common::sole_error_line(&studioize(&[
        "export",
        s(&notes),
        "--out",
        s(&out),
        "--config",
        s(&sd("tiny-a")),
    ]));
    assert!(
        err.contains(s(&notes)) && err.contains("not a .safetensors"),
        "{err}"
    );
    let unet_file = sd("tiny-a").join("unet/diffusion_pytorch_model.safetensors");
    let err = common::sole_error_line(&studioize(&[
        "export",
        s(&unet_file),
        "--out",
        s(&out),
        "--config",
        s(&sd("tiny-a")),
    ]));
    assert!(
        err.contains(s(&unet_file)) && err.contains("not a CompVis SD checkpoint"),
        "{err}"
    );
    let err = common::sole_error_line(&studioize(&[
        "export",
        s(&sd("tiny-a.safetensors")),
        "--out",
        s(&out),
    ]));
    assert!(err.contains("--config"), "{err}");

    // --out is an input (a copy of the fixture, which must stay as it was).
    let input = d.join("input.safetensors");
    std::fs::copy(sd("tiny-a.safetensors"), &input).unwrap();
    let before = std::fs::read(&input).unwrap();
    let err = common::sole_error_line(&studioize(&[
        "export",
        s(&input),
        "--config",
        s(&sd("tiny-a")),
        "--out",
        s(&input),
    ]));
    assert!(err.contains(s(&input)) && err.contains("input"), "{err}");
    assert_eq!(std::fs::read(&input).unwrap(), before);

    // An out folder that cannot be created (its parent is a file): nothing is left behind.
    let blocked = notes.join("model.safetensors");
    let err = common::sole_error_line(&studioize(&[
        "export",
        s(&sd("tiny-a")),
        "--out",
        s(&blocked),
    ]));
    assert!(
        err.contains(s(&notes)) && err.contains("cannot create folder"),
        "{err}"
    );
    let err = common::sole_error_line(&studioize(&[
        "export",
        s(&sd("tiny-a")),
        "--out",
        s(&d.join("m.ckpt")),
    ]));
    assert!(
        err.contains("m.ckpt") && err.contains(".safetensors"),
        "{err}"
    );

    // A tensor without an LDM counterpart is named with its file.
    let extra = unet_variant(d, "extra", |t| {
        t.push((
            "add_embedding.linear_1.weight".into(),
            Tensor::ones([4, 4], (Kind::Float, tch::Device::Cpu)),
        ))
    });
    let err = common::sole_error_line(&studioize(&[
        "export",
        s(&sd("tiny-a")),
        "--out",
        s(&out),
        "--unet",
        s(&extra),
    ]));
    assert!(
        err.contains("'add_embedding.linear_1.weight'")
            && err.contains(s(&extra))
            && err.contains("CompVis/LDM"),
        "{err}"
    );

    // A weight beyond fp16's range: an error for fp16, exported as fp32.
    let big = unet_variant(d, "big", |t| {
        let (_, w) = t.iter_mut().find(|(n, _)| n == "conv_in.weight").unwrap();
        *w = &*w * 1e6;
    });
    let err = common::sole_error_line(&studioize(&[
        "export",
        s(&sd("tiny-a")),
        "--out",
        s(&out),
        "--unet",
        s(&big),
    ]));
    assert!(
        err.contains("'conv_in.weight'") && err.contains("fp16") && err.contains(s(&big)),
        "{err}"
    );
    assert!(!out.exists(), "a failed export leaves no file");
    let leftovers: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    export(&sd("tiny-a"), &out, "fp32", &["--unet", s(&big)]);
}
