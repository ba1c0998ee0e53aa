//! The experiment config: the examples, defaults and paths relative to the file, `--set`
//! overrides, and the errors (unknown keys, wrong types, bad enums, bad overrides, invalid
//! values) naming the key and file. (Round trips, the key set and sweeps:
//! tests/train_config_keys.rs.)
mod common;

use common::config::{assert_names, experiments, load_err, write, MINIMAL};
use std::path::PathBuf;
use studioize::train::config::{ExperimentConfig, LrSchedule, MixedPrecision, PredictionType};

#[test]
fn examples_parse() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let c = ExperimentConfig::load(&experiments().join("studio-sd14.toml"), &[]).unwrap();
    assert_eq!(c.experiment, "studio-sd14");
    assert_eq!(c.train.learning_rate, 1e-5);
    assert_eq!(c.train.steps, 15000);
    assert_eq!(c.train.lr_schedule, LrSchedule::ConstantWithWarmup);
    assert_eq!(c.data.resolution, 512);
    assert_eq!(c.data.validation_split(), 0.1);
    assert_eq!(c.train.validation_prompts.len(), 2);
    assert_eq!(c.output.dir, root.join("runs/studio-sd14"));
    assert_eq!(c.model.base, root.join("models/stable-diffusion-v1-4"));
    assert!(c.sweep.is_none());
    assert_eq!(c.sweep_points().unwrap().len(), 1);

    let s = ExperimentConfig::load(&experiments().join("lr-sweep.toml"), &[]).unwrap();
    assert_eq!(s.experiment, "lr-sweep", "defaults to the file stem");
    let ids: Vec<String> = s
        .sweep_points()
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(ids, ["lr=1e-06", "lr=3e-06", "lr=1e-05", "lr=3e-05"]);

    let t = ExperimentConfig::load(&experiments().join("tiny-smoke.toml"), &[]).unwrap();
    assert_eq!(t.model.base, root.join("tests/fixtures/sd/tiny-a"));
    assert_eq!(t.data.images, root.join("tests/fixtures/shapes/train"));
    assert_eq!(t.data.resolution, 32);
    assert!(t.train.steps < 1000);
}

#[test]
fn defaults_and_paths_relative_to_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "my-exp.toml", MINIMAL);
    let c = ExperimentConfig::load(&p, &[]).unwrap();
    let folder = std::path::absolute(dir.path()).unwrap();
    assert_eq!(c.experiment, "my-exp");
    assert_eq!(c.model.base, folder.join("models/sd"));
    assert_eq!(c.data.images, folder.join("data/imgs"));
    assert_eq!(c.output.dir, std::path::absolute("runs/my-exp").unwrap());
    let t = &c.train;
    assert_eq!(
        (t.steps, t.batch_size, t.gradient_accumulation),
        (15000, 4, 1)
    );
    assert_eq!((t.learning_rate, t.warmup_steps, t.seed), (1e-5, 500, 0));
    assert_eq!((t.checkpoint_every, t.validate_every), (1000, 250));
    assert_eq!(
        (
            t.adam_beta1,
            t.adam_beta2,
            t.adam_weight_decay,
            t.adam_epsilon
        ),
        (0.9, 0.999, 1e-2, 1e-8)
    );
    assert_eq!((t.max_grad_norm, t.ema, t.ema_decay), (1.0, false, 0.9999));
    assert_eq!(
        (t.prediction_type, t.snr_gamma, t.noise_offset),
        (None, None, 0.0)
    );
    assert_eq!(
        (t.mixed_precision, t.validation_timesteps),
        (MixedPrecision::No, 10)
    );
    let d = &c.data;
    assert_eq!(
        (
            d.resolution,
            d.center_crop,
            d.random_flip,
            d.caption_dropout
        ),
        (512, false, true, 0.0)
    );
    assert_eq!(
        (d.num_workers, d.validation_seed, d.validation_split()),
        (2, 0, 0.1)
    );
}

#[test]
fn overrides_apply() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "a.toml", MINIMAL);
    let ov: Vec<String> = [
        "train.learning_rate=3e-6",
        "steps=200",                // short key, resolved against [train]
        "output.dir=\"runs/x\"",    // quoted string
        "train.lr_schedule=cosine", // unquoted string
        "train.prediction_type=v_prediction",
        "data.center_crop=true",
        "train.validation_prompts=[\"a\", \"b\"]",
        "snr_gamma = 5", // integer for a float, spaces around '='
        "experiment=renamed",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let c = ExperimentConfig::load(&p, &ov).unwrap();
    assert_eq!(c.train.learning_rate, 3e-6);
    assert_eq!(c.train.steps, 200);
    assert_eq!(
        c.output.dir,
        std::path::absolute("runs/x").unwrap(),
        "override paths are cwd-relative"
    );
    assert_eq!(c.train.lr_schedule, LrSchedule::Cosine);
    assert_eq!(c.train.prediction_type, Some(PredictionType::VPrediction));
    assert!(c.data.center_crop);
    assert_eq!(c.train.validation_prompts, ["a", "b"]);
    assert_eq!(c.train.snr_gamma, Some(5.0));
    assert_eq!(c.experiment, "renamed");
}

#[test]
fn unknown_key_names_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "a.toml",
        &format!("{MINIMAL}[train]\nlearnin_rate = 1e-5\n"),
    );
    let e = load_err(&p, &[]);
    assert_names(&e, &p, "unknown key 'train.learnin_rate'");
    assert!(e.contains("did you mean 'train.learning_rate'"), "{e}");

    let p2 = write(dir.path(), "b.toml", &format!("colour = 1\n{MINIMAL}"));
    assert_names(&load_err(&p2, &[]), &p2, "unknown key 'colour'");
    let p3 = write(
        dir.path(),
        "c.toml",
        &format!("{MINIMAL}[trian]\nsteps = 1\n"),
    );
    assert_names(&load_err(&p3, &[]), &p3, "unknown key 'trian'");
}

#[test]
fn wrong_type_names_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "a.toml",
        &format!("{MINIMAL}[train]\nsteps = \"many\"\n"),
    );
    let e = load_err(&p, &[]);
    assert_names(
        &e,
        &p,
        "train.steps: expected a non-negative integer, found string",
    );
    let p = write(
        dir.path(),
        "b.toml",
        &format!("{MINIMAL}[train]\nema = 1\n"),
    );
    assert_names(&load_err(&p, &[]), &p, "train.ema: expected a boolean");
    let p = write(
        dir.path(),
        "c.toml",
        &format!("{MINIMAL}[train]\nlearning_rate = \"fast\"\n"),
    );
    assert_names(
        &load_err(&p, &[]),
        &p,
        "train.learning_rate: expected a number",
    );
    let p = write(
        dir.path(),
        "d.toml",
        "[model]\nbase = \"m\"\n[data]\nresolution = 64\n",
    );
    assert_names(&load_err(&p, &[]), &p, "missing key 'data.images'");
    let p = write(dir.path(), "e.toml", "[model\nbase = 1");
    assert!(load_err(&p, &[]).contains(&p.display().to_string()));
}

#[test]
fn bad_enum_names_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "a.toml",
        &format!("{MINIMAL}[train]\nlr_schedule = \"exponential\"\n"),
    );
    let e = load_err(&p, &[]);
    assert_names(&e, &p, "train.lr_schedule");
    assert!(
        e.contains("exponential") && e.contains("constant_with_warmup"),
        "{e}"
    );
    let p = write(
        dir.path(),
        "b.toml",
        &format!("{MINIMAL}[train]\nmixed_precision = \"fp8\"\n"),
    );
    assert_names(&load_err(&p, &[]), &p, "train.mixed_precision");
}

#[test]
fn bad_overrides_name_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "a.toml", MINIMAL);
    assert_names(&load_err(&p, &["train.steps"]), &p, "train.steps");
    assert_names(
        &load_err(&p, &["train.learnin_rate=1"]),
        &p,
        "unknown key 'train.learnin_rate'",
    );
    let e = load_err(&p, &["train.steps=abc"]);
    assert_names(
        &e,
        &p,
        "--set train.steps: expected a non-negative integer, found string",
    );
    assert_names(
        &load_err(&p, &["train.batch_size=[1,"]),
        &p,
        "--set train.batch_size: cannot parse",
    );
    assert_names(&load_err(&p, &["=3"]), &p, "key is empty");
    assert_names(
        &load_err(&p, &["train.lr_schedule=steep"]),
        &p,
        "train.lr_schedule",
    );
}

#[test]
fn validation_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "a.toml", MINIMAL);
    for (ov, key) in [
        ("train.steps=0", "train.steps"),
        ("train.batch_size=0", "train.batch_size"),
        ("train.learning_rate=0", "train.learning_rate"),
        ("train.learning_rate=-1e-5", "train.learning_rate"),
        ("train.learning_rate=inf", "train.learning_rate"),
        ("train.learning_rate=nan", "train.learning_rate"),
        ("data.validation_split=1.0", "data.validation_split"),
        ("data.validation_split=-0.1", "data.validation_split"),
        ("data.resolution=500", "data.resolution"),
        ("data.caption_dropout=1.5", "data.caption_dropout"),
        ("data.bucket_step=64", "data.bucket_step"),
    ] {
        let e = load_err(&p, &[ov]);
        assert_names(&e, &p, key);
    }
    for (ov, key) in [
        ("data.bucket_step=12", "data.bucket_step"),
        ("data.bucket_min_side=4", "data.bucket_min_side"),
        ("data.bucket_max_side=8", "data.bucket_max_side"),
    ] {
        let e = load_err(&p, &[ov, "data.aspect_buckets=true"]);
        assert_names(&e, &p, key);
    }
    let c = ExperimentConfig::load(&p, &["data.aspect_buckets=true".into()]).unwrap();
    let spec = c.data.bucket_spec().unwrap();
    assert_eq!(spec.resolution, c.data.resolution);
    assert!(spec
        .buckets()
        .contains(&(c.data.resolution, c.data.resolution)));
    // warmup longer than the run is fine
    let c = ExperimentConfig::load(
        &p,
        &["train.steps=10".into(), "train.warmup_steps=100".into()],
    )
    .unwrap();
    assert_eq!(c.train.warmup_steps, 100);
    // a separate validation folder means no split by default
    let c = ExperimentConfig::load(&p, &["data.validation_images=val".into()]).unwrap();
    assert_eq!(c.data.validation_split(), 0.0);
}
