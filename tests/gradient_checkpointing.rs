//! Gradient checkpointing (`train.gradient_checkpointing`) changes memory, not results: on the
//! tiny model, the loss and every trained parameter's gradient equal the plain pass's for a
//! full UNet fine-tune, a LoRA run (UNet and text-encoder adapters, LoCon), a run that trains
//! the text encoder and textual inversion; three AdamW steps end at the same parameters; a
//! whole `studioize train` run writes the same losses; LoRA dropout is refused with it.
mod common;

use common::{one_line_error, tiny_experiment_tables};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use studioize::train::config::TrainSection;
use studioize::train::forward::Forward;
use studioize::train::objective::mse;
use studioize::train::optim::AdamW;
use studioize::train::trainable::Trainables;
use studioize::train::ExperimentConfig;
use tch::{Device, Kind, Tensor};

/// The `[train]` keys both passes share: four steps, validated every second.
const TRAIN: &str = "steps = 4\nbatch_size = 2\nlearning_rate = 1e-3\nlr_schedule = \"constant\"
checkpoint_every = 0\nvalidate_every = 2\nvalidation_timesteps = 2\nseed = 7\n";

/// Writes an experiment on the tiny model with `train` keys and `extra` sections into
/// `dir/exp.toml`.
fn experiment(dir: &Path, train: &str, extra: &str) -> PathBuf {
    let tables = tiny_experiment_tables(dir, 8, 3);
    let run = dir.join("run");
    let output = format!("[output]\ndir = \"{}\"\n", run.display());
    let text = format!("{tables}[train]\n{TRAIN}{train}\n{extra}\n{output}");
    let path = dir.join("exp.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// What one training pass gave: losses, and per step every trained parameter's gradient, and
/// the parameters at the end.
struct Trace {
    losses: Vec<f64>,
    grads: Vec<HashMap<String, Tensor>>,
    params: HashMap<String, Tensor>,
}

/// Three AdamW steps of `cfg`'s trainables on fixed random inputs, through `Forward` with or
/// without checkpointing. AdamW's epsilon is 1e-4: with 1e-8 an element whose gradient is
/// rounding noise moves by the learning rate either way, in both passes alike.
fn trace(cfg: &ExperimentConfig, checkpointing: bool) -> Trace {
    let mut sd = common::load_tiny_a();
    tch::manual_seed(3); // the same LoRA / token-row initialisation in both passes
    let trainables = Trainables::for_config(cfg, &mut sd).unwrap();
    let params = trainables.parameters(&sd).unwrap();
    let shared = params.iter().map(|(n, p)| (n.clone(), p.shallow_clone()));
    let mut opt = AdamW::new(shared.collect(), 0.9, 0.999, 1e-4, 1e-2);
    let t = TrainSection {
        gradient_checkpointing: checkpointing,
        ..cfg.train.clone()
    };
    let forward = Forward::for_config(&t, Device::Cpu).unwrap();
    let captions = vec![
        "a red circle on a blue background".to_string(),
        "<zwx> shape".to_string(),
    ];
    let mut out = Trace {
        losses: vec![],
        grads: vec![],
        params: HashMap::new(),
    };
    for step in 0..3 {
        tch::manual_seed(100 + step);
        let latents = Tensor::randn([2, 4, 4, 4], (Kind::Float, Device::Cpu));
        let noise = latents.randn_like();
        let timesteps = Tensor::from_slice(&[10i64, 700]);
        let noisy = &latents + &noise * 0.5;
        let text = trainables.trains_text_path();
        trainables.set_training(&sd, true);
        let embeddings = forward.embed(&sd, &captions, text).unwrap();
        let pred = forward.predict(&sd, &noisy, &timesteps, &embeddings);
        trainables.set_training(&sd, false);
        let loss = mse(&pred, &noise, None);
        out.losses.push(f64::try_from(&loss).unwrap());
        forward.backward(&sd, &loss);
        out.grads.push(
            params
                .iter()
                .map(|(n, p)| (n.clone(), p.grad().copy()))
                .collect(),
        );
        opt.step(1e-3);
        opt.zero_grad();
    }
    out.params = params.iter().map(|(n, p)| (n.clone(), p.copy())).collect();
    out
}

fn abs_max(t: &Tensor) -> f64 {
    f64::try_from(t.abs().max()).unwrap()
}

/// The largest difference over the tensors of `a` against `b`, relative to the largest value
/// of all `b` (the gradients' or parameters' scale), and the largest relative to the tensor's
/// own largest value, with its name (reported: rounding differs in the order in which a skip
/// connection's or the time embedding's gradient is summed, which tells on tiny tensors).
fn worst(a: &HashMap<String, Tensor>, b: &HashMap<String, Tensor>) -> (f64, f64, String) {
    assert_eq!(a.len(), b.len());
    let scale = b.values().map(abs_max).fold(0.0, f64::max).max(1e-30);
    let mut out = (0.0, 0.0, String::new());
    for (n, x) in a {
        let (d, own) = (abs_max(&(x - &b[n])), abs_max(&b[n]));
        out.0 = f64::max(out.0, d / scale);
        if d > 0.0 && d / own.max(1e-30) > out.1 {
            out = (out.0, d / own.max(1e-30), n.clone());
        }
    }
    out
}

/// Checkpointing against the plain pass for the run of `extra`.
fn same_as_plain(what: &str, train: &str, extra: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ExperimentConfig::load(&experiment(dir.path(), train, extra), &[]).unwrap();
    let (plain, ckpt) = (trace(&cfg, false), trace(&cfg, true));
    assert!(!plain.grads[0].is_empty(), "{what}: nothing trains");
    for (step, (a, b)) in ckpt.losses.iter().zip(&plain.losses).enumerate() {
        let d = (a - b).abs() / b.abs();
        eprintln!("{what}: step {step} loss {a} vs {b}: rel diff {d:.2e}");
        assert!(d <= 1e-5, "{what}: step {step}: loss {a} vs {b}");
    }
    for (step, (a, b)) in ckpt.grads.iter().zip(&plain.grads).enumerate() {
        let nonzero = b.values().filter(|g| g.abs().max().double_value(&[]) > 0.0);
        assert!(nonzero.count() > 0, "{what}: step {step}: no gradient");
        let (d, own, name) = worst(a, b);
        eprintln!(
            "{what}: step {step}: {} gradients, max diff {d:.2e} of the largest gradient \
             (per tensor at most {own:.2e}: {name})",
            a.len()
        );
        assert!(d <= 1e-5, "{what}: step {step}: gradients differ by {d:e}");
    }
    let (d, own, name) = worst(&ckpt.params, &plain.params);
    eprintln!(
        "{what}: parameters after 3 steps: max diff {d:.2e} of the largest \
         (per tensor at most {own:.2e}: {name})"
    );
    assert!(
        d <= 1e-5,
        "{what}: parameters after 3 steps differ by {d:e}"
    );
}

#[test]
fn full_unet_gradients_equal_the_plain_pass() {
    same_as_plain("full UNet", "", "");
}

#[test]
fn text_encoder_gradients_equal_the_plain_pass() {
    same_as_plain("UNet + text encoder", "train_text_encoder = true", "");
}

#[test]
fn lora_gradients_equal_the_plain_pass() {
    let lora = "[lora]\nrank = 2\nconv_rank = 2\ntext_encoder = true";
    same_as_plain("LoRA (UNet, LoCon, text encoder)", "", lora);
}

#[test]
fn textual_inversion_gradients_equal_the_plain_pass() {
    let ti = "[textual_inversion]\ntoken = \"<zwx>\"\ninitializer = \"shape\"\nnum_vectors = 2\nprompts = \"captions\"";
    same_as_plain("textual inversion", "", ti);
}

#[test]
fn a_whole_run_writes_the_same_losses() {
    let runs: Vec<_> = [false, true]
        .iter()
        .map(|on| {
            let dir = tempfile::tempdir().unwrap();
            let train = format!("gradient_checkpointing = {on}\ntrain_text_encoder = true");
            let cfg = experiment(dir.path(), &train, "");
            let out = common::train_quiet(&cfg, &[]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            common::run_logs(&dir.path().join("run"))
        })
        .collect();
    common::assert_same_logs(&runs[0], &runs[1], 4);
}

#[test]
fn lora_dropout_is_refused_with_checkpointing() {
    let dir = tempfile::tempdir().unwrap();
    let train = "gradient_checkpointing = true";
    let cfg = experiment(dir.path(), train, "[lora]\ndropout = 0.1");
    let err = one_line_error(&common::train_quiet(&cfg, &[]));
    assert!(err.contains("lora.dropout") && err.contains("gradient_checkpointing"));
}
