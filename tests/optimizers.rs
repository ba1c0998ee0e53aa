//! 8-bit AdamW and Adafactor against their Python implementations
//! (tools/make_optimizer_fixtures.py: bitsandbytes 0.50.2's AdamW8bit on its CPU backend,
//! transformers 5.24.0's Adafactor, four steps on fixed gradients), their saved state and exact
//! resumption, and whole `studioize train` runs with each that resume exactly.
mod common;

use common::{csv_rows, fixtures, read_refs, train_quiet};
use std::collections::HashMap;
use std::path::Path;
use studioize::train::optim::quant::{self, DynamicMap};
use studioize::train::optim::{Adafactor, AdafactorSettings, AdamW8bit, Optimizer};
use tch::{Device, Kind, Tensor};

const PARAMS: [&str; 5] = ["bias", "small", "linear", "conv", "long"];
const STEPS: usize = 4;

/// Fresh parameters from the fixture's `<p>.start`, each with a (zero) gradient, and views of
/// them for the optimizer.
fn parameters(refs: &HashMap<String, Tensor>) -> (Vec<Tensor>, HashMap<String, Tensor>) {
    let params: Vec<Tensor> = PARAMS
        .iter()
        .map(|n| {
            let p = refs[&format!("{n}.start")].copy().set_requires_grad(true);
            (&p * 0.0).sum(Kind::Float).backward();
            p
        })
        .collect();
    let named = PARAMS
        .iter()
        .zip(&params)
        .map(|(n, p)| (n.to_string(), p.shallow_clone()))
        .collect();
    (params, named)
}

/// Sets the gradients of step `k` (1-based) and steps.
fn step(opt: &mut dyn Optimizer, params: &[Tensor], refs: &HashMap<String, Tensor>, k: usize) {
    for (n, p) in PARAMS.iter().zip(params) {
        tch::no_grad(|| p.grad().copy_(&refs[&format!("{n}.grad{k}")]));
    }
    opt.step(1e-3);
}

fn state_map(opt: &dyn Optimizer) -> HashMap<String, Tensor> {
    opt.state().into_iter().collect()
}

/// Tolerance of the fp32 values (parameters, Adafactor's moments): 1 ulp. Both are the same
/// libtorch kernels in the same order as the Python references, and on the fixtures' machine
/// (AVX-512) they are bit-identical; the ulp allows for a CPU whose kernels round one fused
/// multiply-add differently. The 8-bit codes and absmax are compared exactly.
///
/// Largest difference in units of the fp32 spacing at the reference's magnitude: max over
/// elements of |a - e| / ulp(|e|).
fn ulps(actual: &Tensor, expected: &Tensor) -> f64 {
    let a = actual.to_kind(Kind::Double);
    let e = expected.to_kind(Kind::Double);
    // ulp(x) = 2^(floor(log2 |x|) - 23), floored at the smallest normal's.
    let ulp = (e.abs().clamp_min(f32::MIN_POSITIVE as f64).log2().floor() - 23.0).exp2();
    f64::try_from(((a - e).abs() / ulp).max()).unwrap()
}

fn adamw8bit(params: HashMap<String, Tensor>) -> AdamW8bit {
    AdamW8bit::new(params, 0.9, 0.999, 1e-8, 1e-2, 4096)
}

#[test]
fn dynamic_maps_and_blockwise_codes_are_bitsandbytes() {
    let refs = read_refs(&fixtures().join("train").join("adamw8bit.safetensors"));
    let signed = DynamicMap::new(true, Device::Cpu);
    let unsigned = DynamicMap::new(false, Device::Cpu);
    assert!(signed.code.equal(&refs["qmap1"]), "signed map");
    assert!(unsigned.code.equal(&refs["qmap2"]), "unsigned map");
    // A block of zeros: absmax 0, codes 0, values 0.
    let (codes, absmax) =
        quant::quantize(&Tensor::zeros([300], (Kind::Float, Device::Cpu)), &signed);
    assert_eq!(Vec::<u8>::try_from(&codes).unwrap(), vec![0u8; 300]);
    assert_eq!(Vec::<f32>::try_from(&absmax).unwrap(), vec![0.0f32; 2]);
}

#[test]
fn adamw8bit_matches_bitsandbytes_over_four_steps() {
    let refs = read_refs(&fixtures().join("train").join("adamw8bit.safetensors"));
    let (params, named) = parameters(&refs);
    let mut opt = adamw8bit(named);
    for k in 1..=STEPS {
        step(&mut opt, &params, &refs, k);
        let state = state_map(&opt);
        for (n, p) in PARAMS.iter().zip(&params) {
            // Codes and absmax: exactly bitsandbytes' (the same fp32 operations in the same
            // order, the same table lookup).
            for (ours, theirs) in [("m", "state1"), ("v", "state2")] {
                let want = &refs[&format!("{n}.{theirs}_{k}")];
                let got = &state[&format!("{ours}.{n}")];
                assert!(got.equal(want), "step {k} {n}: {ours}");
            }
            for (ours, theirs) in [("m_absmax", "absmax1"), ("v_absmax", "absmax2")] {
                if let Some(want) = refs.get(&format!("{n}.{theirs}_{k}")) {
                    assert!(
                        state[&format!("{ours}.{n}")].equal(want),
                        "step {k} {n}: {ours}"
                    );
                }
            }
            let want = &refs[&format!("{n}.param{k}")];
            let d = ulps(p, want);
            assert!(d <= 1.0, "step {k} {n}: parameter off by {d} ulp");
        }
    }
}

#[test]
fn adamw8bit_state_is_uint8_codes_and_fp32_block_maxima() {
    let refs = read_refs(&fixtures().join("train").join("adamw8bit.safetensors"));
    let (_params, named) = parameters(&refs);
    let opt = adamw8bit(named);
    let state = state_map(&opt);
    let mut bytes = 0;
    for n in PARAMS {
        let numel = refs[&format!("{n}.start")].numel() as i64;
        let shape = refs[&format!("{n}.start")].size();
        let (m, v) = (&state[&format!("m.{n}")], &state[&format!("v.{n}")]);
        if numel >= 4096 {
            assert_eq!((m.kind(), v.kind()), (Kind::Uint8, Kind::Uint8), "{n}");
            let blocks = (numel + 255) / 256;
            for k in ["m_absmax", "v_absmax"] {
                let a = &state[&format!("{k}.{n}")];
                assert_eq!((a.kind(), a.size()), (Kind::Float, vec![blocks]), "{n} {k}");
            }
        } else {
            // bitsandbytes' min_8bit_size: small tensors keep fp32 moments
            assert_eq!((m.kind(), v.kind()), (Kind::Float, Kind::Float), "{n}");
            assert!(!state.contains_key(&format!("m_absmax.{n}")));
        }
        assert_eq!((m.size(), v.size()), (shape.clone(), shape), "{n}");
        bytes += state
            .iter()
            .filter(|(k, _)| k.ends_with(&format!(".{n}")))
            .map(|(_, t)| t.numel() * t.kind().elt_size_in_bytes())
            .sum::<usize>();
    }
    // 2 bytes + 8 / 256 per element of the large tensors, 8 bytes for the small ones
    let (small, large) = (320 + 2000, 65 * 97 + 33 * 16 * 9 + 5000);
    let blocks = [65 * 97, 33 * 16 * 9, 5000].map(|n: usize| n.div_ceil(256));
    assert_eq!(
        bytes,
        8 * small + 2 * large + 8 * blocks.iter().sum::<usize>()
    );
}

fn adafactor_settings(setting: &str) -> AdafactorSettings {
    match setting {
        "plain" => AdafactorSettings::default(),
        _ => AdafactorSettings {
            beta1: Some(0.9),
            weight_decay: 1e-2,
            clip_threshold: 0.5,
            ..AdafactorSettings::default()
        },
    }
}

#[test]
fn adafactor_matches_transformers_over_four_steps() {
    let refs = read_refs(&fixtures().join("train").join("adafactor.safetensors"));
    for setting in ["plain", "beta1"] {
        let (params, named) = parameters(&refs);
        let mut opt = Adafactor::new(named, adafactor_settings(setting));
        for k in 1..=STEPS {
            step(&mut opt, &params, &refs, k);
            for (n, p) in PARAMS.iter().zip(&params) {
                let want = &refs[&format!("{setting}.{n}.param{k}")];
                let d = ulps(p, want);
                assert!(d <= 1.0, "{setting} step {k} {n}: parameter off by {d} ulp");
            }
        }
        let state = state_map(&opt);
        for n in PARAMS {
            for (ours, theirs) in [("row", "row"), ("col", "col"), ("v", "sq"), ("m", "m")] {
                let want = refs.get(&format!("{setting}.{n}.{theirs}"));
                let got = state.get(&format!("{ours}.{n}"));
                match (got, want) {
                    (Some(g), Some(w)) => {
                        let d = ulps(g, w);
                        assert!(d <= 1.0, "{setting} {n}: {ours} off by {d} ulp");
                    }
                    (None, None) => {}
                    _ => panic!("{setting} {n}: {ours} present in only one state"),
                }
            }
        }
    }
}

/// Two steps, a save and a load into a fresh optimizer, two more: the same bits as four
/// uninterrupted steps.
fn resumes_exactly(make: &dyn Fn(HashMap<String, Tensor>) -> Box<dyn Optimizer>, file: &str) {
    let refs = read_refs(&fixtures().join("train").join(file));
    let (params, named) = parameters(&refs);
    let mut straight = make(named);
    for k in 1..=STEPS {
        step(straight.as_mut(), &params, &refs, k);
    }
    let (resumed_params, named) = parameters(&refs);
    let mut first = make(named);
    for k in 1..=2 {
        step(first.as_mut(), &resumed_params, &refs, k);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("optimizer.safetensors");
    Tensor::write_safetensors(&first.state(), &path).unwrap();
    let saved = Tensor::read_safetensors(&path).unwrap();
    let named = PARAMS
        .iter()
        .zip(&resumed_params)
        .map(|(n, p)| (n.to_string(), p.shallow_clone()))
        .collect();
    let mut second = make(named);
    second.load_state(saved, first.steps()).unwrap();
    for k in 3..=STEPS {
        step(second.as_mut(), &resumed_params, &refs, k);
    }
    for (n, (a, b)) in PARAMS.iter().zip(params.iter().zip(&resumed_params)) {
        assert!(a.equal(b), "{file} {n}: parameter differs after resuming");
    }
    let (sa, sb) = (state_map(straight.as_ref()), state_map(second.as_ref()));
    assert_eq!(sa.len(), sb.len());
    for (k, t) in &sa {
        assert!(t.equal(&sb[k]), "{file} {k}: state differs after resuming");
    }
}

#[test]
fn both_resume_exactly_from_a_saved_state() {
    resumes_exactly(&|p| Box::new(adamw8bit(p)), "adamw8bit.safetensors");
    resumes_exactly(
        &|p| Box::new(Adafactor::new(p, adafactor_settings("beta1"))),
        "adafactor.safetensors",
    );
}

#[test]
fn a_state_of_another_optimizer_is_refused_by_name() {
    let refs = read_refs(&fixtures().join("train").join("adamw8bit.safetensors"));
    let (_p, named) = parameters(&refs);
    let eight = adamw8bit(named);
    let (_p, named) = parameters(&refs);
    let mut ada = Adafactor::new(named, AdafactorSettings::default());
    let e = ada.load_state(eight.state(), 3).unwrap_err().to_string();
    // (`v.bias`, fp32 in both, loads; the conv weight's factored moments are missing)
    assert!(e.contains("has no 'row.conv'"), "{e}");
    assert!(e.contains("train.optimizer"), "{e}");
}

/// A run of 12 steps against one of 6 resumed to 12 (constant learning rate, so the schedule
/// does not depend on `train.steps`): the resumed steps' losses and gradient norms are equal.
fn run_resumes_exactly(optimizer: &str) {
    let setup = |dir: &Path, steps: u64| {
        let cfg = format!(
            "{tables}[train]\nsteps = {steps}\nbatch_size = 2\nlearning_rate = 1e-3\n\
             lr_schedule = \"constant\"\nwarmup_steps = 0\ncheckpoint_every = 6\n\
             validate_every = 0\nseed = 5\noptimizer = \"{optimizer}\"\n\
             adamw8bit_min_size = 256\n[output]\ndir = \"{run}\"\n",
            tables = common::tiny_experiment_tables(dir, 12, 3),
            run = dir.join("run").display(),
        );
        let path = dir.join("exp.toml");
        std::fs::write(&path, cfg).unwrap();
        path
    };
    let a = tempfile::tempdir().unwrap();
    let out = train_quiet(&setup(a.path(), 12), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b = tempfile::tempdir().unwrap();
    assert!(train_quiet(&setup(b.path(), 6), &[]).status.success());
    let out = train_quiet(&setup(b.path(), 12), &["--resume"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ra = csv_rows(&a.path().join("run/metrics.csv"));
    let rb = csv_rows(&b.path().join("run/metrics.csv"));
    assert_eq!((ra.len(), rb.len()), (12, 12), "{optimizer}");
    for (x, y) in ra.iter().zip(&rb) {
        // step, epoch, loss, lr, grad_norm
        assert_eq!(x[..5], y[..5], "{optimizer}: step {}", x[0]);
    }
}

#[test]
fn training_runs_with_adamw8bit_and_adafactor_resume_exactly() {
    run_resumes_exactly("adamw8bit");
    run_resumes_exactly("adafactor");
}

#[test]
fn an_unknown_optimizer_is_refused_with_the_valid_names() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "{}[train]\noptimizer = \"lion\"\n[output]\ndir = \"run\"\n",
        common::tiny_experiment_tables(dir.path(), 4, 1)
    );
    let path = dir.path().join("exp.toml");
    std::fs::write(&path, cfg).unwrap();
    let out = train_quiet(&path, &[]);
    assert!(!out.status.success());
    let e = common::one_line_error(&out);
    for word in ["train.optimizer", "lion", "adamw", "adamw8bit", "adafactor"] {
        assert!(e.contains(word), "{e}");
    }
}
