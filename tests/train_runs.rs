//! Training runs on the shapes dataset: kill -9 + resume equal to an uninterrupted run, a
//! non-finite loss stopping the run as diverged with the last good checkpoint kept, config
//! errors naming the key and file, the latent cache giving the same run, and aspect buckets
//! training on wide, square and tall photos.
mod common;

use common::csv_rows;
use common::train_run::{rel, setup};

use common::train_quiet as train;

#[test]
fn kill_and_resume_equals_an_uninterrupted_run() {
    let a = tempfile::tempdir().unwrap();
    let cfg_a = setup(a.path(), "");
    assert!(train(&cfg_a, &[]).status.success());
    let b = tempfile::tempdir().unwrap();
    let cfg_b = setup(b.path(), "");
    // Start B and kill -9 it once it has passed its second checkpoint.
    let mut child = common::train_command(&cfg_b).spawn().unwrap();
    let metrics = b.path().join("run/metrics.csv");
    let t0 = std::time::Instant::now();
    loop {
        let n = std::fs::read_to_string(&metrics)
            .map(|s| s.lines().count())
            .unwrap_or(0);
        if n > 24 || t0.elapsed().as_secs() > 120 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let killed_at = csv_rows(&metrics).len();
    assert!(
        killed_at < 30,
        "the run finished before it was killed ({killed_at} steps)"
    );
    // Without --resume the run folder is protected.
    let out = train(&cfg_b, &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--resume"));
    let out = train(&cfg_b, &["--resume"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ra, rb) = (
        csv_rows(&a.path().join("run/metrics.csv")),
        csv_rows(&metrics),
    );
    assert_eq!(ra.len(), rb.len());
    for (x, y) in ra.iter().zip(&rb) {
        // step, epoch, loss, lr, grad_norm agree; timings differ.
        for col in 0..5 {
            let (p, q): (f64, f64) = (x[col].parse().unwrap(), y[col].parse().unwrap());
            assert!(
                rel(p, q) < 1e-6 || (p - q).abs() < 1e-12,
                "step {}: column {col}: {p} vs {q}",
                x[0]
            );
        }
    }
    let (va, vb) = (
        csv_rows(&a.path().join("run/validation.csv")),
        csv_rows(&b.path().join("run/validation.csv")),
    );
    assert_eq!(va, vb, "validation losses differ after resume");
}

#[test]
fn non_finite_loss_stops_the_run_as_diverged_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path(), "");
    let out = train(
        &cfg,
        &[
            "--set",
            "train.learning_rate=1e30",
            "--set",
            "train.max_grad_norm=1e30",
            "--set",
            "train.lr_schedule=\"constant\"",
            "--set",
            "train.checkpoint_every=1",
        ],
    );
    // A diverged run is a result, not an error.
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = dir.path().join("run");
    let status: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("status.json")).unwrap()).unwrap();
    assert_eq!(status["state"], "stopped", "{status}");
    let reason = status["reason"].as_str().unwrap();
    let step = status["step"].as_u64().unwrap();
    assert!(
        reason.starts_with(&format!("diverged at step {step}:")) && reason.contains("NaN"),
        "{reason}"
    );
    let ckpts: Vec<u64> = std::fs::read_dir(run.join("checkpoints"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.strip_prefix("step-")?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        ckpts.iter().all(|&c| c < step),
        "checkpoint after the failure: {ckpts:?} (failed at {step})"
    );
    assert!(
        !ckpts.is_empty(),
        "the checkpoints before the divergence are kept"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("stopped at step"));
}

#[test]
fn config_errors_name_the_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path(), "learnin_rate = 3");
    let out = train(&cfg, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("learnin_rate") && err.contains("exp.toml"),
        "{err}"
    );
    let cfg = setup(dir.path(), "");
    let out = train(&cfg, &["--set", "train.steps=\"many\""]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("train.steps"),
        "{err}"
    );
}

#[test]
fn latent_cache_gives_the_same_run() {
    let extra = "";
    let a = tempfile::tempdir().unwrap();
    let cfg_a = setup(a.path(), extra);
    let flags = [
        "--set",
        "data.center_crop=true",
        "--set",
        "data.random_flip=false",
        "--set",
        "train.steps=12",
    ];
    assert!(train(&cfg_a, &flags).status.success());
    let b = tempfile::tempdir().unwrap();
    let cfg_b = setup(b.path(), extra);
    let out = train(
        &cfg_b,
        &[&flags[..], &["--set", "data.latent_cache=true"]].concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ra, rb) = (
        csv_rows(&a.path().join("run/metrics.csv")),
        csv_rows(&b.path().join("run/metrics.csv")),
    );
    assert_eq!(ra.len(), 12);
    for (x, y) in ra.iter().zip(&rb) {
        let (p, q): (f64, f64) = (x[2].parse().unwrap(), y[2].parse().unwrap());
        assert!(rel(p, q) < 1e-4, "step {}: loss {p} vs {q}", x[0]);
    }
    // A random crop or flip cannot be cached.
    let c = tempfile::tempdir().unwrap();
    let cfg_c = setup(c.path(), "");
    let out = train(&cfg_c, &["--set", "data.latent_cache=true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("latent_cache"),
        "{err}"
    );
}

#[test]
fn aspect_buckets_train_on_wide_square_and_tall_photos() {
    let dir = tempfile::tempdir().unwrap();
    // Mixed-aspect training photos with sidecar captions (the shapes set stays the prior).
    let photos = dir.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    for i in 0..24u32 {
        let (w, h, what) = match i % 3 {
            0 => (48, 32, "wide"),
            1 => (32, 32, "square"),
            _ => (32, 48, "tall"),
        };
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 5 + i) as u8, (y * 7) as u8, (i * 10) as u8])
        });
        img.save(photos.join(format!("p{i:02}.png"))).unwrap();
        std::fs::write(
            photos.join(format!("p{i:02}.txt")),
            format!("a {what} product photo"),
        )
        .unwrap();
    }
    let cfg = setup(dir.path(), "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(
            &format!("images = \"{}/train\"", dir.path().join("shapes").display()),
            &format!("images = \"{}\"", photos.display()),
        )
        .replace(
            &format!(
                "captions = \"{}/train/metadata.csv\"\n",
                dir.path().join("shapes").display()
            ),
            "aspect_buckets = true\n",
        );
    assert!(text.contains("aspect_buckets = true"), "{text}");
    std::fs::write(&cfg, text).unwrap();
    let args = [
        "--set",
        "train.steps=6",
        "--set",
        "train.batch_size=2",
        "--set",
        "train.validate_every=3",
        "--set",
        "train.checkpoint_every=6",
    ];
    let out = train(&cfg, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = dir.path().join("run");
    // The buckets in use and their images: all three shapes, every training image counted.
    let buckets = csv_rows(&run.join("buckets.csv"));
    assert_eq!(buckets.len(), 3, "{buckets:?}");
    let shape = |r: &Vec<String>| (r[0].parse::<u32>().unwrap(), r[1].parse::<u32>().unwrap());
    assert!(buckets.iter().any(|r| shape(r) == (32, 32)));
    assert!(buckets.iter().any(|r| {
        let (w, h) = shape(r);
        w > h
    }));
    assert!(buckets.iter().any(|r| {
        let (w, h) = shape(r);
        w < h
    }));
    let total: usize = buckets.iter().map(|r| r[2].parse::<usize>().unwrap()).sum();
    assert_eq!(total, 18, "24 photos minus the 25% validation split");
    let metrics = csv_rows(&run.join("metrics.csv"));
    assert_eq!(metrics.len(), 6);
    assert!(metrics
        .iter()
        .all(|r| r[2].parse::<f64>().unwrap().is_finite()));
    assert!(run
        .join("checkpoints/step-6/unet/diffusion_pytorch_model.safetensors")
        .is_file());

    // The latent cache keeps one posterior per image, whatever its bucket's size.
    let out = train(
        &cfg,
        &[
            &args[..],
            &[
                "--set",
                "data.latent_cache=true",
                "--set",
                "data.center_crop=true",
                "--set",
                "data.random_flip=false",
                "--set",
                &format!("output.dir={}", dir.path().join("cached").display()),
            ],
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(csv_rows(&dir.path().join("cached/metrics.csv")).len(), 6);
}
