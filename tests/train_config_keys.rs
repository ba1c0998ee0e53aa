//! The experiment config's keys: to_toml round trips, every serialized field a known key that
//! `--set` and a sweep take, short keys preferring [train], and sweeps (dotted and quoted keys,
//! grid and zip, errors, Python-spelled point ids).
mod common;

use common::config::{assert_names, experiments, load_err, write, MINIMAL};
use studioize::train::config::{ExperimentConfig, SweepMode};

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
