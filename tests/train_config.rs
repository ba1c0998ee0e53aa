//! The experiment config: examples, overrides, errors, round trip, sweeps.
use std::path::{Path, PathBuf};
use studioize::train::config::{
    ExperimentConfig, LrSchedule, MixedPrecision, PredictionType, SweepMode,
};

fn experiments() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("experiments")
}

/// Writes `body` as `<dir>/<name>` and returns the path.
fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

const MINIMAL: &str = r#"
[model]
base = "models/sd"
[data]
images = "data/imgs"
"#;

fn load_err(path: &Path, overrides: &[&str]) -> String {
    let ov: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    match ExperimentConfig::load(path, &ov) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => format!("{e:#}"),
    }
}

fn assert_names(err: &str, file: &Path, key: &str) {
    assert!(
        err.contains(&file.display().to_string()),
        "error does not name the file: {err}"
    );
    assert!(err.contains(key), "error does not name '{key}': {err}");
}

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

#[test]
fn to_toml_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["studio-sd14.toml", "lr-sweep.toml", "tiny-smoke.toml"] {
        let c = ExperimentConfig::load(&experiments().join(name), &[]).unwrap();
        let run = dir.path().join("run").join(name.trim_end_matches(".toml"));
        std::fs::create_dir_all(&run).unwrap();
        let p = write(&run, "config.toml", &c.to_toml());
        let again = ExperimentConfig::load(&p, &[]).unwrap();
        assert_eq!(c, again, "{name}:\n{}", c.to_toml());
    }
    // every optional key set
    let p = write(dir.path(), "full.toml", MINIMAL);
    let ov: Vec<String> = EVERY_OPTIONAL_KEY
        .iter()
        .chain(&[
            "train.learning_rate=3e-6",
            "train.validation_inputs=[\"in/a.png\"]",
            "train.stop_on=[\"watermark\"]",
        ])
        .map(|s| s.to_string())
        .collect();
    let c = ExperimentConfig::load(&p, &ov).unwrap();
    let text = c.to_toml();
    let p2 = write(dir.path(), "full-again.toml", &text);
    assert_eq!(ExperimentConfig::load(&p2, &[]).unwrap(), c);
    // the written keys are exactly the known keys
    let table: toml::Table = text.parse().unwrap();
    let mut written = vec![];
    for (k, v) in &table {
        match v {
            toml::Value::Table(t) => written.extend(t.keys().map(|f| format!("{k}.{f}"))),
            _ => written.push(k.clone()),
        }
    }
    let mut known = ExperimentConfig::known_keys();
    written.sort();
    known.sort();
    assert_eq!(written, known);
}

#[test]
fn sweep_dotted_keys_equal_quoted_keys() {
    let dir = tempfile::tempdir().unwrap();
    let load = |name: &str, body: &str| {
        let p = write(
            dir.path(),
            name,
            &format!("{MINIMAL}[output]\ndir = \"out\"\n[sweep]\n{body}"),
        );
        ExperimentConfig::load(&p, &[]).map(|c| c.sweep_points().unwrap())
    };
    let ids = |points: Vec<studioize::train::config::SweepPoint>| -> Vec<String> {
        points.into_iter().map(|p| p.id).collect()
    };
    let dotted = load("dotted.toml", "train.warmup_steps = [100, 0]\n").unwrap();
    let quoted = load("quoted.toml", "\"train.warmup_steps\" = [100, 0]\n").unwrap();
    assert_eq!(dotted[1].config.train.warmup_steps, 0);
    assert_eq!(ids(dotted), ids(quoted));
    let e = load("bad.toml", "train.warmup_steps = 3\n").unwrap_err();
    assert!(
        format!("{e:#}")
            .contains("sweep.train.warmup_steps: expected a list of values, found integer"),
        "{e:#}"
    );
}

#[test]
fn sweep_grid_and_zip() {
    let dir = tempfile::tempdir().unwrap();
    let grid = write(
        dir.path(),
        "grid.toml",
        &format!("{MINIMAL}[output]\ndir = \"out\"\n[sweep]\nlearning_rate = [3e-6, 1e-4]\n\"train.warmup_steps\" = [100, 0, 7]\n"),
    );
    let c = ExperimentConfig::load(&grid, &[]).unwrap();
    assert_eq!(c.sweep.as_ref().unwrap().mode, SweepMode::Grid);
    let points = c.sweep_points().unwrap();
    let ids: Vec<&str> = points.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "lr=3e-06,warmup=100",
            "lr=3e-06,warmup=0",
            "lr=3e-06,warmup=7",
            "lr=0.0001,warmup=100",
            "lr=0.0001,warmup=0",
            "lr=0.0001,warmup=7"
        ]
    );
    let p = &points[4].config;
    assert_eq!((p.train.learning_rate, p.train.warmup_steps), (1e-4, 0));
    assert_eq!(p.output.dir, c.output.dir.join("lr=0.0001,warmup=0"));
    assert!(p.sweep.is_none());
    // a point's config round-trips too
    let back = write(dir.path(), "point.toml", &p.to_toml());
    assert_eq!(&ExperimentConfig::load(&back, &[]).unwrap(), p);

    let zip = write(
        dir.path(),
        "zip.toml",
        &format!(
            "{MINIMAL}[sweep]\nmode = \"zip\"\nlearning_rate = [1e-5, 2e-5]\nbatch_size = [2, 8]\n"
        ),
    );
    let z = ExperimentConfig::load(&zip, &[]).unwrap();
    let points = z.sweep_points().unwrap();
    let ids: Vec<&str> = points.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(
        ids,
        ["bs=2,lr=1e-05", "bs=8,lr=2e-05"],
        "keys in alphabetical order"
    );
    assert_eq!(points[1].config.train.batch_size, 8);

    // the sweep can be set from the command line
    let c = ExperimentConfig::load(
        &write(dir.path(), "m.toml", MINIMAL),
        &["sweep.seed=[1, 2]".into()],
    )
    .unwrap();
    let ids: Vec<String> = c
        .sweep_points()
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(ids, ["seed=1", "seed=2"]);
}

#[test]
fn sweep_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "zip.toml",
        &format!("{MINIMAL}[sweep]\nmode = \"zip\"\nlearning_rate = [1e-5, 2e-5]\nbatch_size = [2, 8, 16]\n"),
    );
    let e = load_err(&p, &[]);
    assert_names(&e, &p, "train.batch_size");
    assert!(e.contains("zip"), "{e}");
    let p = write(
        dir.path(),
        "bad.toml",
        &format!("{MINIMAL}[sweep]\nlearnin_rate = [1e-5]\n"),
    );
    assert_names(&load_err(&p, &[]), &p, "learnin_rate");
    let p = write(
        dir.path(),
        "val.toml",
        &format!("{MINIMAL}[sweep]\nlearning_rate = [1e-5, 0.0]\n"),
    );
    assert_names(&load_err(&p, &[]), &p, "train.learning_rate");
    let p = write(
        dir.path(),
        "ty.toml",
        &format!("{MINIMAL}[sweep]\nsteps = [10, \"x\"]\n"),
    );
    assert_names(&load_err(&p, &[]), &p, "train.steps");
    let p = write(
        dir.path(),
        "mode.toml",
        &format!("{MINIMAL}[sweep]\nmode = \"random\"\nsteps = [10]\n"),
    );
    assert_names(&load_err(&p, &[]), &p, "sweep.mode");
}

#[test]
fn python_float_ids() {
    use studioize::train::config::py_float;
    for (x, s) in [
        (3e-6, "3e-06"),
        (1e-4, "0.0001"),
        (1e-5, "1e-05"),
        (0.1, "0.1"),
        (1.0, "1.0"),
        (2.5e16, "2.5e+16"),
        (123.25, "123.25"),
        (1.5e-7, "1.5e-07"),
    ] {
        assert_eq!(py_float(x), s);
    }
}

/// Overrides that set every optional key, so that the serialized config shows every field.
const EVERY_OPTIONAL_KEY: [&str; 27] = [
    "model.config=cfg",
    "model.variant=fp16",
    "model.weights_dtype=bf16",
    "data.captions=c.csv",
    "data.validation_images=v",
    "data.validation_captions=v.csv",
    "data.prior_images=p",
    "data.prior_captions=p.csv",
    "train.prediction_type=epsilon",
    "train.snr_gamma=5.0",
    "train.checkpoints_total_limit=3",
    "train.optimizer=adafactor",
    "train.adafactor_beta1=0.9",
    "train.gradient_checkpointing=true",
    "data.aspect_buckets=true",
    "data.bucket_min_side=256",
    "data.bucket_max_side=1024",
    "data.bucket_step=64",
    "lora.rank=8",
    "dreambooth.instance_prompt=zwx",
    "dreambooth.instance_captions=true",
    "dreambooth.class_prompt=mug",
    "dreambooth.class_images=cls",
    "dreambooth.class_sampler=ddim",
    "textual_inversion.token=zwx",
    "textual_inversion.initializer=mug",
    "textual_inversion.prompts=captions",
];

/// Every (section, field, value) of a config as serde serializes it (the structs' own fields,
/// independent of the key lists), top-level values with section "".
fn serialized_fields(c: &ExperimentConfig) -> Vec<(String, String, toml::Value)> {
    let toml::Value::Table(table) = toml::Value::try_from(c).unwrap() else {
        panic!("a config serializes to a table")
    };
    let mut out = vec![];
    for (k, v) in table {
        match v {
            toml::Value::Table(t) if k != "sweep" => {
                out.extend(t.into_iter().map(|(f, v)| (k.clone(), f, v)));
            }
            other => out.push((String::new(), k, other)),
        }
    }
    out
}

#[test]
fn every_section_field_is_a_known_key() {
    use studioize::train::config::resolve_key;
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "full.toml", MINIMAL);
    let ov: Vec<String> = EVERY_OPTIONAL_KEY.iter().map(|s| s.to_string()).collect();
    let full = ExperimentConfig::load(&p, &ov).unwrap();
    let fields = serialized_fields(&full);
    let known = ExperimentConfig::known_keys();
    // all five sections are there; with every optional key set, serde writes every field
    for section in ["model", "data", "train", "monitor", "output"] {
        assert!(fields.iter().any(|(s, _, _)| s == section), "{section}");
    }
    assert_eq!(fields.len(), known.len(), "{known:?}");
    for (section, field, value) in &fields {
        let key = if section.is_empty() {
            field.clone()
        } else {
            format!("{section}.{field}")
        };
        assert!(known.contains(&key), "{key} is not a known key");
        assert_eq!(resolve_key(&key).as_deref(), Some(key.as_str()));
        // `--set` takes it: setting the value it has loads back to the same config
        let mut again = ov.clone();
        again.push(format!("{key}={value}"));
        let c = ExperimentConfig::load(&p, &again)
            .unwrap_or_else(|e| panic!("--set {key}={value}: {e:#}"));
        assert_eq!(c, full, "--set {key}={value}");
        // and a sweep over it gives one point with that config
        if section.is_empty() || key == "output.dir" {
            continue;
        }
        let mut swept = ov.clone();
        swept.push(format!("sweep.{key}=[{value}]"));
        let c = ExperimentConfig::load(&p, &swept)
            .unwrap_or_else(|e| panic!("--set sweep.{key}=[{value}]: {e:#}"));
        let points = c.sweep_points().unwrap();
        assert_eq!(points.len(), 1, "{key}");
        let mut point = points[0].config.clone();
        assert_eq!(point.output.dir, full.output.dir.join(&points[0].id));
        point.output.dir = full.output.dir.clone();
        assert_eq!(point, full, "sweep.{key}");
    }
}

#[test]
fn short_keys_prefer_train() {
    use studioize::train::config::resolve_key;
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "a.toml", MINIMAL);
    let c = ExperimentConfig::load(&p, &[]).unwrap();
    // short names by section, from the serialized structs
    let fields = serialized_fields(&c);
    let mut shared = 0;
    for (section, field, _) in fields.iter().filter(|(s, _, _)| !s.is_empty()) {
        let holders: Vec<&str> = fields
            .iter()
            .filter(|(s, f, _)| !s.is_empty() && f == field)
            .map(|(s, _, _)| s.as_str())
            .collect();
        let want = if holders.contains(&"train") {
            "train"
        } else {
            assert_eq!(holders.len(), 1, "{field} in {holders:?}");
            section.as_str()
        };
        shared += usize::from(holders.len() > 1);
        assert_eq!(
            resolve_key(field),
            Some(format!("{want}.{field}")),
            "{field} in {holders:?}"
        );
    }
    assert!(shared > 0, "some short key is in two sections");
    assert_eq!(resolve_key("experiment").as_deref(), Some("experiment"));
    assert_eq!(resolve_key("sweep"), None);
    assert_eq!(resolve_key("train.smoothing_window"), None);

    // `warmup_steps` is in [train] and [monitor]: the short key sets [train]
    let monitor_warmup = c.monitor.warmup_steps;
    let c = ExperimentConfig::load(&p, &["warmup_steps=7".into()]).unwrap();
    assert_eq!(
        (c.train.warmup_steps, c.monitor.warmup_steps),
        (7, monitor_warmup)
    );
    let c = ExperimentConfig::load(&p, &["monitor.warmup_steps=7".into()]).unwrap();
    assert_eq!(c.monitor.warmup_steps, 7);
    assert_ne!(c.train.warmup_steps, 7);
    // so does a short key in a sweep
    let s = write(
        dir.path(),
        "s.toml",
        &format!("{MINIMAL}[sweep]\nwarmup_steps = [3, 4]\n"),
    );
    let c = ExperimentConfig::load(&s, &[]).unwrap();
    let points = c.sweep_points().unwrap();
    let got: Vec<(u64, u64)> = points
        .iter()
        .map(|p| (p.config.train.warmup_steps, p.config.monitor.warmup_steps))
        .collect();
    assert_eq!(got, [(3, monitor_warmup), (4, monitor_warmup)]);
    // short keys of the other sections
    let c = ExperimentConfig::load(
        &p,
        &[
            "smoothing_window=5".into(),
            "variant=fp16".into(),
            "resolution=64".into(),
        ],
    )
    .unwrap();
    assert_eq!(c.monitor.smoothing_window, 5);
    assert_eq!(c.model.variant.as_deref(), Some("fp16"));
    assert_eq!(c.data.resolution, 64);
}
