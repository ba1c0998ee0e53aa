//! Error paths and conventions of checkpoint reading (`studioize::weights`).
use std::path::Path;
use studioize::weights::{component_files, parameter_count, WeightSet};
use tch::{nn, Device, Kind, Tensor};

/// A two-layer model whose variables are named like a diffusers state dict.
fn model() -> nn::VarStore {
    let vs = nn::VarStore::new(Device::Cpu);
    let p = vs.root();
    let _ = nn::linear(&p / "proj_in", 3, 4, Default::default());
    let _ = nn::linear(&p / "blocks" / 0 / "ff", 4, 2, Default::default());
    vs
}

fn good_tensors() -> Vec<(String, Tensor)> {
    vec![
        (
            "proj_in.weight".into(),
            Tensor::randn([4, 3], (Kind::Float, Device::Cpu)),
        ),
        (
            "proj_in.bias".into(),
            Tensor::randn([4], (Kind::Float, Device::Cpu)),
        ),
        (
            "blocks.0.ff.weight".into(),
            Tensor::randn([2, 4], (Kind::Float, Device::Cpu)),
        ),
        (
            "blocks.0.ff.bias".into(),
            Tensor::randn([2], (Kind::Float, Device::Cpu)),
        ),
    ]
}

fn write(path: &Path, tensors: &[(String, Tensor)]) {
    let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    Tensor::write_safetensors(&refs, path).unwrap();
}

fn load(path: &Path) -> anyhow::Result<nn::VarStore> {
    let vs = model();
    WeightSet::read_files(&[path.to_path_buf()])?
        .load_into(&vs, "unet", |n| n.ends_with("position_ids"))?;
    Ok(vs)
}

#[test]
fn loads_matching_weights_and_converts_dtype() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("diffusion_pytorch_model.safetensors");
    let tensors = good_tensors();
    // Saved in fp16 as a variant would be; the model is fp32.
    let half: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.to_kind(Kind::Half)))
        .collect();
    write(&path, &half);
    let vs = load(&path).unwrap();
    let vars = vs.variables();
    for (name, t) in &half {
        let v = &vars[name];
        assert_eq!(v.kind(), Kind::Float);
        assert!(
            v.allclose(&t.to_kind(Kind::Float), 0.0, 0.0, false),
            "{name}"
        );
    }
    assert_eq!(parameter_count(&vs), 4 * 3 + 4 + 2 * 4 + 2);
}

#[test]
fn missing_tensor_names_tensor_file_and_shape() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let mut t = good_tensors();
    t.retain(|(n, _)| n != "blocks.0.ff.weight");
    write(&path, &t);
    let err = load(&path).unwrap_err().to_string();
    assert!(err.contains("'blocks.0.ff.weight'"), "{err}");
    assert!(err.contains("missing"), "{err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("[2, 4]"), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");
}

#[test]
fn unexpected_tensor_is_an_error_but_ignored_buffers_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let mut t = good_tensors();
    t.push((
        "blocks.1.ff.weight".into(),
        Tensor::zeros([2, 2], (Kind::Float, Device::Cpu)),
    ));
    write(&path, &t);
    let err = load(&path).unwrap_err().to_string();
    assert!(
        err.contains("unexpected tensor 'blocks.1.ff.weight'"),
        "{err}"
    );
    assert!(err.contains(&path.display().to_string()), "{err}");

    let mut t = good_tensors();
    t.push((
        "embeddings.position_ids".into(),
        Tensor::arange(77, (Kind::Int64, Device::Cpu)),
    ));
    write(&path, &t);
    load(&path).expect("position_ids is ignored, as transformers does");
}

#[test]
fn shape_mismatch_names_both_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let mut t = good_tensors();
    t[0].1 = Tensor::zeros([5, 3], (Kind::Float, Device::Cpu));
    write(&path, &t);
    let err = load(&path).unwrap_err().to_string();
    assert!(err.contains("'proj_in.weight'"), "{err}");
    assert!(
        err.contains("[5, 3]") && err.contains("expected [4, 3]"),
        "{err}"
    );
}

#[test]
fn non_finite_weights_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let t = good_tensors();
    let _ = t[1].1.get(2).fill_(f64::NAN);
    write(&path, &t);
    let err = load(&path).unwrap_err().to_string();
    assert!(
        err.contains("'proj_in.bias'") && err.contains("NaN"),
        "{err}"
    );
}

#[test]
fn corrupt_and_pickle_files_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("model.safetensors");
    std::fs::write(&bad, b"this is not a safetensors file").unwrap();
    let err = WeightSet::read_files(std::slice::from_ref(&bad))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not a valid safetensors file") && err.contains(&bad.display().to_string()),
        "{err}"
    );

    let ckpt = dir.path().join("sd-v1-4.ckpt");
    std::fs::write(&ckpt, b"PK").unwrap();
    let err = WeightSet::read_files(&[ckpt]).unwrap_err().to_string();
    assert!(err.contains("convert it to safetensors"), "{err}");

    let comp = tempfile::tempdir().unwrap();
    std::fs::write(comp.path().join("diffusion_pytorch_model.bin"), b"PK").unwrap();
    let err = component_files(comp.path(), "diffusion_pytorch_model", None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("diffusion_pytorch_model.bin") && err.contains("convert"),
        "{err}"
    );

    let empty = tempfile::tempdir().unwrap();
    let err = component_files(empty.path(), "model", None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no model.safetensors"), "{err}");
    let err = component_files(&empty.path().join("nope"), "model", None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no such folder"), "{err}");
}

#[test]
fn variants_and_shards_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let t = good_tensors();
    // Only an fp16 variant: used when no variant is asked for.
    write(&d.join("model.fp16.safetensors"), &t);
    assert_eq!(
        component_files(d, "model", None).unwrap(),
        vec![d.join("model.fp16.safetensors")]
    );
    // A plain file is preferred once it exists; asking for the variant still gets it.
    write(&d.join("model.safetensors"), &t);
    assert_eq!(
        component_files(d, "model", None).unwrap(),
        vec![d.join("model.safetensors")]
    );
    assert_eq!(
        component_files(d, "model", Some("fp16")).unwrap(),
        vec![d.join("model.fp16.safetensors")]
    );

    // Sharded, with an index.
    let s = tempfile::tempdir().unwrap();
    let s = s.path();
    write(&s.join("w-00001-of-00002.safetensors"), &t[..2]);
    write(&s.join("w-00002-of-00002.safetensors"), &t[2..]);
    let index = serde_json::json!({"metadata": {}, "weight_map": {
        "proj_in.weight": "w-00001-of-00002.safetensors", "proj_in.bias": "w-00001-of-00002.safetensors",
        "blocks.0.ff.weight": "w-00002-of-00002.safetensors", "blocks.0.ff.bias": "w-00002-of-00002.safetensors"}});
    std::fs::write(s.join("w.safetensors.index.json"), index.to_string()).unwrap();
    let files = component_files(s, "w", None).unwrap();
    assert_eq!(files.len(), 2);
    let vs = model();
    WeightSet::read_files(&files)
        .unwrap()
        .load_into(&vs, "unet", |_| false)
        .unwrap();

    // A shard listed in the index but absent.
    std::fs::remove_file(s.join("w-00002-of-00002.safetensors")).unwrap();
    let err = component_files(s, "w", None).unwrap_err().to_string();
    assert!(
        err.contains("w-00002-of-00002.safetensors") && err.contains("missing"),
        "{err}"
    );
}

#[test]
fn duplicate_tensor_across_shards_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let t = good_tensors();
    let a = dir.path().join("a.safetensors");
    let b = dir.path().join("b.safetensors");
    write(&a, &t[..2]);
    write(&b, &t[1..]);
    let err = WeightSet::read_files(&[a, b]).unwrap_err().to_string();
    assert!(err.contains("'proj_in.bias' appears twice"), "{err}");
}
