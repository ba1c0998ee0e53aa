//! `studioize compare` on a tiny run with two checkpoints: the grid's layout, one image per
//! checkpoint and input equal to `transform --unet <checkpoint>` with the same seed, compare.csv,
//! and the unknown-checkpoint error.
mod common;

use common::fixtures;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_studioize")
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A 4-step run with checkpoints (and validations) at steps 2 and 4, in `dir/run`.
fn train_run(dir: &Path) -> PathBuf {
    let cfg = format!(
        r#"
{tables}[train]
steps = 4
batch_size = 4
learning_rate = 1e-3
lr_schedule = "constant"
checkpoint_every = 2
validate_every = 2
validation_timesteps = 2
seed = 3
[output]
dir = "{run}"
"#,
        tables = common::tiny_experiment_tables(dir, 16, 7),
        run = dir.join("run").display(),
    );
    let path = dir.join("exp.toml");
    std::fs::write(&path, cfg).unwrap();
    ok(&common::train_quiet(&path, &[]));
    dir.join("run")
}

const PARAMS: [&str; 10] = [
    "--prompt",
    "a red circle",
    "--strength",
    "0.5",
    "--steps",
    "4",
    "--seed",
    "5",
    "--device",
    "cpu",
];

#[test]
fn compare_draws_one_row_per_checkpoint_equal_to_transform() {
    let dir = tempfile::tempdir().unwrap();
    let run = train_run(dir.path());
    // Two inputs: a 40x32 photo and a 32x32 shape.
    let photo = fixtures().join("pipelines").join("input-photo.png");
    let shape = dir.path().join("shape.png");
    let first_shape = std::fs::read_dir(dir.path().join("shapes/train"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .min()
        .unwrap();
    std::fs::copy(first_shape, &shape).unwrap();
    let out_dir = dir.path().join("cmp");
    let t0 = std::time::Instant::now();
    ok(&Command::new(exe())
        .arg("compare")
        .arg(&run)
        .arg("--inputs")
        .arg(&photo)
        .arg(&shape)
        .args(PARAMS)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap());
    eprintln!("compare took {:.1}s", t0.elapsed().as_secs_f64());

    // Grid: label column + 2 cells wide, header + 2 cells high; images (at most 40x32) are
    // enlarged 4x to reach the 160-pixel minimum cell.
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("compare.json")).unwrap())
            .unwrap();
    let g = &meta["grid"];
    let n = |k: &str| g[k].as_u64().unwrap() as u32;
    assert_eq!(n("scale"), 4, "{g}");
    assert_eq!((n("cell_width"), n("cell_height")), (160, 128), "{g}");
    let (w, h) = image::image_dimensions(out_dir.join("grid.png")).unwrap();
    let gap = n("gap");
    assert_eq!(w, n("label_width") + 2 * (160 + gap) + gap);
    assert_eq!(h, n("header_height") + 2 * (128 + gap) + gap);
    assert!((140..=420).contains(&n("label_width")), "{g}");
    assert!((40..=80).contains(&n("header_height")), "{g}");
    // compare.png holds the grid and the loss chart side by side.
    let (cw, ch) = image::image_dimensions(out_dir.join("compare.png")).unwrap();
    let (mw, mh) = image::image_dimensions(out_dir.join("metrics.png")).unwrap();
    assert!(mw >= 800 && mh >= 500, "metrics.png {mw}x{mh}");
    assert!(cw >= w + mw && ch == h.max(mh), "compare.png {cw}x{ch}");

    // One image per checkpoint and input; the checkpoints' images differ ...
    let img = |rel: &str| studioize::imageio::read_rgb(&out_dir.join(rel)).unwrap();
    let a2 = img("step-2/input-photo.png");
    let a4 = img("step-4/input-photo.png");
    assert_eq!(a2.dimensions(), (40, 32));
    assert_eq!(img("step-4/shape.png").dimensions(), (32, 32));
    assert_ne!(a2, a4, "different UNet weights must give different images");
    // ... and each equals a plain `transform --unet <checkpoint>` with the same parameters.
    for step in [2, 4] {
        let reference = dir.path().join(format!("t{step}.png"));
        ok(&Command::new(exe())
            .args(["transform", "--model"])
            .arg(fixtures().join("sd").join("tiny-a"))
            .arg("--unet")
            .arg(run.join(format!("checkpoints/step-{step}/unet")))
            .args(PARAMS)
            .arg("--out")
            .arg(&reference)
            .arg(&photo)
            .output()
            .unwrap());
        let r = studioize::imageio::read_rgb(&reference).unwrap();
        assert!(
            r == img(&format!("step-{step}/input-photo.png")),
            "step-{step}: compare and transform --unet disagree"
        );
    }

    // compare.csv: one row per image, with the validation and prior losses at that step.
    let mut rd = csv::Reader::from_path(out_dir.join("compare.csv")).unwrap();
    let header: Vec<String> = rd.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(
        header,
        [
            "run",
            "checkpoint",
            "step",
            "val_loss",
            "prior_loss",
            "input",
            "image"
        ]
    );
    let rows: Vec<csv::StringRecord> = rd.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 4);
    let val = std::fs::read_to_string(run.join("validation.csv")).unwrap();
    for (i, (step, input)) in [
        (2, "input-photo"),
        (2, "shape"),
        (4, "input-photo"),
        (4, "shape"),
    ]
    .iter()
    .enumerate()
    {
        let r = &rows[i];
        assert_eq!(&r[0], "run");
        assert_eq!(&r[1], format!("step-{step}"));
        assert_eq!(&r[2], step.to_string());
        assert_eq!(&r[5], *input);
        assert!(out_dir.join(&r[6]).is_file(), "{}", &r[6]);
        let logged = val
            .lines()
            .find(|l| l.starts_with(&format!("{step},")))
            .unwrap();
        let v: f64 = logged.split(',').nth(1).unwrap().parse().unwrap();
        let p: f64 = logged.split(',').nth(2).unwrap().parse().unwrap();
        assert_eq!(r[3].parse::<f64>().unwrap(), v);
        assert_eq!(r[4].parse::<f64>().unwrap(), p);
    }

    // An unknown checkpoint is named, with the available ones.
    let out = Command::new(exe())
        .arg("compare")
        .arg(&run)
        .args(["--checkpoints", "step-2,step-3", "--inputs"])
        .arg(&photo)
        .args(PARAMS)
        .arg("--out")
        .arg(dir.path().join("bad"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("no checkpoint step-3") && err.contains("available: step-2, step-4"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // --checkpoints picks rows; --include-base adds the base model first.
    let sel = dir.path().join("sel");
    ok(&Command::new(exe())
        .arg("compare")
        .arg(&run)
        .args(["--checkpoints", "step-4", "--include-base", "--inputs"])
        .arg(&photo)
        .args(PARAMS)
        .arg("--out")
        .arg(&sel)
        .output()
        .unwrap());
    assert!(sel.join("base/input-photo.png").is_file());
    assert!(!sel.join("step-2").exists());
    assert_eq!(
        studioize::imageio::read_rgb(&sel.join("step-4/input-photo.png")).unwrap(),
        a4,
        "the base row must not leak into the checkpoint rows"
    );
}
