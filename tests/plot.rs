//! Plot tests on synthetic run folders. Set `STUDIOIZE_PLOT_SAMPLES=/some/dir` to keep the
//! rendered files there for a look.
use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use studioize::monitor::{analyze_experiment, DetectorConfig, Label};
use studioize::plot::{load_runs, plot_runs, Format, RunData, CHART_SIZE, OVERVIEW_SIZE};

struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (((z ^ (z >> 31)) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// A synthetic run: `peak_lr` with 500 warm-up steps and a cosine decay over `steps`;
/// validation every 250 steps; the prior loss starts rising at `forget_at`; the loss turns NaN at
/// `nan_at`.
struct Spec {
    peak_lr: f64,
    steps: u64,
    val_floor: f64,
    forget_at: Option<u64>,
    nan_at: Option<u64>,
    seed: u64,
}

fn write_run(dir: &Path, s: &Spec) {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = Rng(s.seed);
    let mut m = String::from("step,epoch,loss,lr,grad_norm,images_per_s,elapsed_s\n");
    let mut v = String::from("step,val_loss,prior_loss,val_t250,prior_t250\n");
    for step in 0..=s.steps {
        if step % 250 == 0 {
            let x = step as f64;
            let val = s.val_floor + 0.08 * (-x / 3000.0).exp();
            let val = val * (1.0 + 0.005 * rng.normal());
            let rise = s
                .forget_at
                .map_or(0.0, |k| 0.25 * step.saturating_sub(k) as f64 / 1000.0);
            let prior = 0.15 * (1.0 + rise) * (1.0 + 0.005 * rng.normal());
            let broken = s.nan_at.is_some_and(|k| step >= k);
            let (val, prior) = if broken {
                ("NaN".to_string(), "NaN".to_string())
            } else {
                (val.to_string(), prior.to_string())
            };
            writeln!(v, "{step},{val},{prior},{val},{prior}").unwrap();
        }
        if step == s.steps {
            break;
        }
        let step = step + 1;
        let x = step as f64;
        let lr = if step <= 500 {
            s.peak_lr * x / 500.0
        } else {
            let t = (x - 500.0) / (s.steps as f64 - 500.0);
            s.peak_lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
        };
        let base = 0.08 + 0.08 * (-x / 2500.0).exp();
        let mut loss = base * (0.5 * rng.normal() - 0.125).exp();
        let mut grad = 0.8 * (0.3 * rng.normal()).exp();
        if let Some(k) = s.nan_at {
            if step + 150 >= k {
                let blow = ((step + 150 - k) as f64 / 25.0).exp();
                loss *= blow;
                grad *= blow;
            }
            if step >= k {
                loss = f64::NAN;
                grad = f64::NAN;
            }
        }
        writeln!(
            m,
            "{step},{},{loss},{lr:e},{grad},11.8,{}",
            step / 1000,
            x * 0.42
        )
        .unwrap();
    }
    std::fs::write(dir.join("metrics.csv"), m).unwrap();
    std::fs::write(dir.join("validation.csv"), v).unwrap();
}

/// Where to render: the sample folder from the environment, else a temporary folder.
fn out_dir(name: &str) -> (PathBuf, Option<tempfile::TempDir>) {
    match std::env::var_os("STUDIOIZE_PLOT_SAMPLES") {
        Some(d) => {
            let p = PathBuf::from(d).join(name);
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            (p, None)
        }
        None => {
            let t = tempfile::tempdir().unwrap();
            (t.path().to_path_buf(), Some(t))
        }
    }
}

/// Decodes a PNG, checks its size, and returns its set of distinct colours.
fn png_colors(path: &Path, size: (u32, u32)) -> HashSet<[u8; 3]> {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8();
    assert_eq!(img.dimensions(), size, "{}", path.display());
    let colors: HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    let non_white = img.pixels().filter(|p| p.0 != [255, 255, 255]).count();
    let frac = non_white as f64 / (size.0 * size.1) as f64;
    assert!(
        frac > 0.01 && frac < 0.6,
        "{}: {:.1}% of the pixels are not white",
        path.display(),
        frac * 100.0
    );
    assert!(
        colors.len() > 20,
        "{}: only {} colours",
        path.display(),
        colors.len()
    );
    colors
}

fn names(paths: &[PathBuf]) -> Vec<String> {
    paths
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn single_run_plots() {
    let (out, _keep) = out_dir("single");
    let run_dir = out.join("runs").join("lr=1e-05");
    write_run(
        &run_dir,
        &Spec {
            peak_lr: 1e-5,
            steps: 8000,
            val_floor: 0.09,
            forget_at: Some(4000),
            nan_at: Some(7000),
            seed: 5,
        },
    );
    let a = studioize::monitor::analyze_run(&run_dir, &DetectorConfig::default()).unwrap();
    assert_eq!(a.label, Label::Diverged);
    assert!(a.events.iter().any(|e| e.label == Label::Deconverged));

    let run = RunData::load(&run_dir).unwrap();
    assert_eq!(run.label, "lr=1e-05");
    assert!(run.analysis.is_some());
    let plots = out.join("plots");
    let paths = plot_runs(&[run], &plots, &[Format::Png, Format::Svg]).unwrap();
    assert_eq!(
        names(&paths),
        [
            "train_loss.png",
            "val_loss.png",
            "lr.png",
            "grad_norm.png",
            "overview.png",
            "train_loss.svg",
            "val_loss.svg",
            "lr.svg",
            "grad_norm.svg",
            "overview.svg"
        ]
    );
    for p in &paths {
        assert!(p.is_file(), "{}", p.display());
        if p.extension().unwrap() == "png" {
            let size = if p.ends_with("overview.png") {
                OVERVIEW_SIZE
            } else {
                CHART_SIZE
            };
            png_colors(p, size);
        }
    }
    let svg = std::fs::read_to_string(plots.join("val_loss.svg")).unwrap();
    for needle in [
        "Validation and prior loss",
        "lr=1e-05",
        "deconverged (step",
        "best (step",
        "loss (MSE)",
        "step",
    ] {
        assert!(svg.contains(needle), "val_loss.svg lacks {needle:?}");
    }
    let svg = std::fs::read_to_string(plots.join("train_loss.svg")).unwrap();
    for needle in [
        "Training loss",
        "diverged (step",
        "last finite loss (step 6999)",
    ] {
        assert!(svg.contains(needle), "train_loss.svg lacks {needle:?}");
    }
    // The learning rate ramps up from ~0 and decays back: more than a decade, so log scale.
    let svg = std::fs::read_to_string(plots.join("lr.svg")).unwrap();
    assert!(
        svg.contains("learning rate, log scale"),
        "lr.svg is not on a log scale"
    );
}

#[test]
fn sweep_plots_overlay_runs() {
    let (out, _keep) = out_dir("sweep");
    let exp = out.join("runs").join("lr-sweep");
    let specs = [
        ("lr=1e-06", 1e-6, 0.11, None, None),
        ("lr=3e-06", 3e-6, 0.1, None, None),
        ("lr=1e-05", 1e-5, 0.09, Some(3000), None),
    ];
    for (i, (id, lr, floor, forget, nan)) in specs.into_iter().enumerate() {
        write_run(
            &exp.join(id),
            &Spec {
                peak_lr: lr,
                steps: 8000,
                val_floor: floor,
                forget_at: forget,
                nan_at: nan,
                seed: 100 + i as u64,
            },
        );
    }
    let summary = analyze_experiment(&exp, &DetectorConfig::default()).unwrap();
    assert_eq!(summary.recommended_lr(), Some(3e-6), "{}", summary.table());

    let runs = load_runs(&exp).unwrap();
    let labels: Vec<&str> = runs.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(
        labels,
        ["lr=1e-06", "lr=3e-06", "lr=1e-05"],
        "ordered by learning rate"
    );
    let plots = out.join("plots");
    let paths = plot_runs(&runs, &plots, &[Format::Png, Format::Svg]).unwrap();
    assert_eq!(paths.len(), 10);

    // Each run's colour shows up in the training-loss chart (one colour per run).
    let colors = png_colors(&plots.join("train_loss.png"), CHART_SIZE);
    for rgb in [[31, 119, 180], [255, 127, 14], [44, 160, 44]] {
        assert!(
            colors.contains(&rgb),
            "train_loss.png lacks run colour {rgb:?}"
        );
    }
    png_colors(&plots.join("overview.png"), OVERVIEW_SIZE);

    for (file, title) in [
        ("train_loss.svg", "Training loss"),
        ("val_loss.svg", "Validation and prior loss"),
        ("lr.svg", "Learning rate"),
        ("grad_norm.svg", "Gradient norm"),
    ] {
        let svg = std::fs::read_to_string(plots.join(file)).unwrap();
        assert!(svg.contains(title), "{file} lacks its title");
        assert!(svg.contains("sweep of 3 runs"), "{file} lacks the subject");
        for id in ["lr=1e-06", "lr=3e-06", "lr=1e-05"] {
            assert!(svg.contains(id), "{file} lacks legend label {id}");
        }
    }
    let svg = std::fs::read_to_string(plots.join("overview.svg")).unwrap();
    for title in [
        "Training loss",
        "Validation and prior loss",
        "Learning rate",
        "Gradient norm",
    ] {
        assert!(svg.contains(title), "overview.svg lacks {title}");
    }
    let svg = std::fs::read_to_string(plots.join("val_loss.svg")).unwrap();
    assert!(
        svg.contains("lr=1e-05: deconverged (step"),
        "no deconvergence mark"
    );
}

#[test]
fn plotting_nothing_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(plot_runs(&[], tmp.path(), &[Format::Png]).is_err());
    assert!("svg".parse::<Format>().unwrap() == Format::Svg);
    assert!("jpeg".parse::<Format>().is_err());
}
