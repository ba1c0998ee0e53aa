//! Detector tests on synthetic training curves.
use std::fmt::Write as _;
use std::path::Path;
use studioize::monitor::{
    analyze_experiment, analyze_run, lr_from_id, Analysis, Detector, DetectorConfig, Label,
};

/// A small deterministic generator (SplitMix64 + Box-Muller), so that the tests need no crate.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// A synthetic run: per-step (step, loss, lr, grad_norm) and per-validation
/// (step, val_loss, prior_loss).
#[derive(Default)]
struct Run {
    train: Vec<(u64, f64, f64, f64)>,
    val: Vec<(u64, f64, Option<f64>)>,
}

/// Shapes of the synthetic curves, as functions of the step.
struct Shape {
    steps: u64,
    val_every: u64,
    lr: f64,
    /// Noise-free training loss.
    train: Box<dyn Fn(u64) -> f64>,
    /// Noise-free validation loss.
    val: Box<dyn Fn(u64) -> f64>,
    /// Noise-free prior loss (None: no prior set).
    prior: Option<Box<dyn Fn(u64) -> f64>>,
    /// Multiplier of the gradient norm.
    grad: Box<dyn Fn(u64) -> f64>,
    /// Relative noise of validation and prior losses.
    val_noise: f64,
}

impl Shape {
    /// A healthy fine-tune: training and validation loss decrease, prior loss stays flat.
    fn healthy() -> Shape {
        Shape {
            steps: 8000,
            val_every: 250,
            lr: 3e-6,
            train: Box::new(|s| 0.08 + 0.1 * (-(s as f64) / 3000.0).exp()),
            val: Box::new(|s| 0.1 + 0.1 * (-(s as f64) / 4000.0).exp()),
            prior: Some(Box::new(|_| 0.15)),
            grad: Box::new(|_| 1.0),
            val_noise: 0.01,
        }
    }

    /// Generates the run: training loss with heavy-tailed (log-normal, sigma 0.5) noise as in
    /// diffusion training, gradient norm with log-normal noise and occasional 5x spikes.
    fn generate(&self, seed: u64) -> Run {
        let mut rng = Rng(seed);
        let mut run = Run::default();
        for s in 0..=self.steps {
            if s % self.val_every == 0 {
                let v = (self.val)(s) * (1.0 + self.val_noise * rng.normal());
                let p = self
                    .prior
                    .as_ref()
                    .map(|f| f(s) * (1.0 + self.val_noise * rng.normal()));
                run.val.push((s, v, p));
            }
            if s == self.steps {
                break;
            }
            let step = s + 1;
            let loss = (self.train)(step) * (0.5 * rng.normal() - 0.125).exp();
            let spike = if rng.uniform() < 0.01 { 5.0 } else { 1.0 };
            let grad = (self.grad)(step) * (0.3 * rng.normal()).exp() * spike;
            run.train.push((step, loss, self.lr, grad));
        }
        run
    }
}

/// Feeds a run to a fresh detector in step order (a validation at step s follows training
/// step s) and returns its analysis.
fn feed(run: &Run, cfg: &DetectorConfig) -> Analysis {
    let mut det = Detector::new(cfg.clone());
    let mut vi = 0;
    for &(step, loss, _, grad) in &run.train {
        while vi < run.val.len() && run.val[vi].0 < step {
            let (s, v, p) = run.val[vi];
            det.observe_validation(s, v, p);
            vi += 1;
        }
        det.observe_train(step, loss, grad);
    }
    for &(s, v, p) in &run.val[vi..] {
        det.observe_validation(s, v, p);
    }
    det.analysis()
}

fn fmt_f(v: f64) -> String {
    // The same spellings a Rust writer produces: NaN, inf, -inf.
    format!("{v}")
}

/// Writes `metrics.csv` and `validation.csv` (with two per-timestep columns) into `dir`.
fn write_run(dir: &Path, run: &Run) {
    std::fs::create_dir_all(dir).unwrap();
    let mut m = String::from("step,epoch,loss,lr,grad_norm,images_per_s,elapsed_s\n");
    for &(step, loss, lr, grad) in &run.train {
        writeln!(
            m,
            "{step},{},{},{lr:e},{},12.5,{}",
            step / 1000,
            fmt_f(loss),
            fmt_f(grad),
            step as f64 * 0.4
        )
        .unwrap();
    }
    std::fs::write(dir.join("metrics.csv"), m).unwrap();
    let mut v = String::from("step,val_loss,prior_loss,val_t100,val_t500,prior_t100,prior_t500\n");
    for &(s, val, prior) in &run.val {
        let p = prior.map(fmt_f).unwrap_or_default();
        let (p1, p5) = match prior {
            Some(p) => (fmt_f(p * 0.5), fmt_f(p * 1.5)),
            None => (String::new(), String::new()),
        };
        writeln!(
            v,
            "{s},{},{p},{},{},{p1},{p5}",
            fmt_f(val),
            fmt_f(val * 0.5),
            fmt_f(val * 1.5)
        )
        .unwrap();
    }
    std::fs::write(dir.join("validation.csv"), v).unwrap();
}

fn summary(a: &Analysis) -> String {
    let events: Vec<String> = a
        .events
        .iter()
        .map(|e| format!("{}@{}: {}", e.label, e.step, e.reason))
        .collect();
    format!("label {} events {:#?}", a.label, events)
}

#[test]
fn healthy_run_is_converging() {
    let run = Shape {
        val_noise: 0.0,
        ..Shape::healthy()
    }
    .generate(1);
    let a = feed(&run, &DetectorConfig::default());
    assert_eq!(a.label, Label::Converging, "{}", summary(&a));
    assert!(a.events.is_empty(), "{}", summary(&a));
    // The validation loss decreases monotonically without noise: the best is the last one.
    assert_eq!(a.best_step, Some(8000));
    assert_eq!(a.train_steps, 8000);
    assert_eq!(a.validations, 33);
}

#[test]
fn noisy_healthy_runs_raise_no_event() {
    let cfg = DetectorConfig::default();
    for seed in 1..=12 {
        let run = Shape::healthy().generate(seed);
        let a = feed(&run, &cfg);
        assert!(
            a.events.is_empty(),
            "seed {seed}: false positive: {}",
            summary(&a)
        );
        assert_eq!(a.label, Label::Converging, "seed {seed}");
    }
}

#[test]
fn plateau_is_detected() {
    // Validation loss improves until step 2000, then stays flat (with noise).
    let run = Shape {
        val: Box::new(|s| 0.1 + 0.05 * (1.0 - s.min(2000) as f64 / 2000.0)),
        ..Shape::healthy()
    }
    .generate(7);
    let a = feed(&run, &DetectorConfig::default());
    assert_eq!(a.label, Label::Plateaued, "{}", summary(&a));
    let ev = &a.events[0];
    assert_eq!(ev.label, Label::Plateaued);
    // Detected once a full window (2000 steps) has passed without improvement.
    assert!(
        (3000..=6000).contains(&ev.step),
        "plateau detected at {}",
        ev.step
    );
    assert!(
        a.events.iter().all(|e| !e.label.is_bad()),
        "{}",
        summary(&a)
    );
}

#[test]
fn rising_prior_loss_is_deconvergence() {
    let k = 6000u64;
    let shape = Shape {
        steps: 10000,
        prior: Some(Box::new(move |s| {
            0.15 * (1.0 + 0.2 * (s.saturating_sub(k) as f64 / 1000.0))
        })),
        ..Shape::healthy()
    };
    let cfg = DetectorConfig::default();
    for seed in [3, 4, 5] {
        let a = feed(&shape.generate(seed), &cfg);
        assert_eq!(a.label, Label::Deconverged, "seed {seed}: {}", summary(&a));
        let ev = a
            .events
            .iter()
            .find(|e| e.label == Label::Deconverged)
            .unwrap();
        assert!(
            ev.step >= k && ev.step <= k + 750,
            "seed {seed}: deconvergence at {}, began at {k}",
            ev.step
        );
        assert!(ev.reason.contains("prior loss") && ev.reason.contains('%'));
        // The checkpoint to keep comes before the prior loss started rising.
        assert!(a.best_step.unwrap() < ev.step, "{:?}", a.best_step);
        assert!(a.min_prior_step.unwrap() <= k);
    }
}

#[test]
fn rising_validation_with_falling_train_loss_is_overfitting() {
    let k = 4000u64;
    let run = Shape {
        prior: None,
        val: Box::new(move |s| {
            let s = s as f64;
            let k = k as f64;
            if s <= k {
                0.1 + 0.1 * (-s / 2000.0).exp()
            } else {
                (0.1 + 0.1 * (-k / 2000.0).exp()) * (1.0 + 0.1 * (s - k) / 1000.0)
            }
        }),
        ..Shape::healthy()
    }
    .generate(11);
    let a = feed(&run, &DetectorConfig::default());
    assert_eq!(a.label, Label::Overfitting, "{}", summary(&a));
    let ev = a
        .events
        .iter()
        .find(|e| e.label == Label::Overfitting)
        .unwrap();
    assert!(
        ev.step > k && ev.step <= k + 1000,
        "overfitting at {}",
        ev.step
    );
    assert!(
        (k - 250..=k).contains(&a.best_step.unwrap()),
        "{:?}",
        a.best_step
    );
}

#[test]
fn rising_validation_with_rising_train_loss_is_not_overfitting() {
    // Both losses get worse (moderately: no divergence): not the overfitting pattern.
    let run = Shape {
        prior: None,
        train: Box::new(|s| 0.1 * (1.0 + 0.2 * s.saturating_sub(4000) as f64 / 1000.0)),
        val: Box::new(|s| 0.12 * (1.0 + 0.1 * s.saturating_sub(4000) as f64 / 1000.0)),
        ..Shape::healthy()
    }
    .generate(12);
    let a = feed(&run, &DetectorConfig::default());
    assert!(
        a.events.iter().all(|e| e.label != Label::Overfitting),
        "{}",
        summary(&a)
    );
}

#[test]
fn loss_spike_is_divergence() {
    let k = 5000u64;
    let run = Shape {
        train: Box::new(move |s| if s >= k { 1.5 } else { 0.1 }),
        ..Shape::healthy()
    }
    .generate(21);
    let a = feed(&run, &DetectorConfig::default());
    assert_eq!(a.label, Label::Diverged, "{}", summary(&a));
    let ev = &a
        .events
        .iter()
        .find(|e| e.label == Label::Diverged)
        .unwrap();
    assert!(
        ev.step >= k && ev.step <= k + 20,
        "diverged at {}, spike at {k}",
        ev.step
    );
    assert!(
        ev.reason.contains("smoothed training loss"),
        "{}",
        ev.reason
    );
    // The validation curve is unaffected in this synthetic run, so the best checkpoint is the
    // last validation before the event.
    assert_eq!(a.best_step, Some(5000), "{}", summary(&a));
}

#[test]
fn gradient_explosion_is_divergence_at_its_first_step() {
    let k = 3000u64;
    let run = Shape {
        grad: Box::new(move |s| if s >= k { 80.0 } else { 1.0 }),
        ..Shape::healthy()
    }
    .generate(22);
    let a = feed(&run, &DetectorConfig::default());
    assert_eq!(a.label, Label::Diverged, "{}", summary(&a));
    assert_eq!(a.events[0].step, k, "{}", summary(&a));
    assert!(a.events[0].reason.contains("gradient norm"));
}

#[test]
fn nan_loss_in_csv_is_divergence_at_that_step() {
    let tmp = tempfile::tempdir().unwrap();
    let k = 4321u64;
    let mut run = Shape::healthy().generate(31);
    for t in run.train.iter_mut().filter(|t| t.0 >= k) {
        t.1 = f64::NAN;
        t.3 = f64::INFINITY;
    }
    write_run(tmp.path(), &run);
    let text = std::fs::read_to_string(tmp.path().join("metrics.csv")).unwrap();
    assert!(
        text.contains(",NaN,"),
        "the CSV should spell NaN like the trainer"
    );

    let a = analyze_run(tmp.path(), &DetectorConfig::default()).unwrap();
    assert_eq!(a.label, Label::Diverged, "{}", summary(&a));
    assert_eq!(a.events.len(), 1, "{}", summary(&a));
    assert_eq!(a.events[0].step, k);
    assert!(a.events[0].reason.contains("NaN"), "{}", a.events[0].reason);
    assert_eq!(a.last_finite_step, Some(k - 1));
    assert!(a.best_step.unwrap() < k);

    // analysis.json is written next to the CSVs and reads back identically.
    let json = std::fs::read_to_string(tmp.path().join("analysis.json")).unwrap();
    let back: Analysis = serde_json::from_str(&json).unwrap();
    assert_eq!(back, a);
    assert!(json.contains("\"label\": \"diverged\""), "{json}");
}

#[test]
fn offline_analysis_matches_online_feeding() {
    let tmp = tempfile::tempdir().unwrap();
    let k = 6000u64;
    let run = Shape {
        steps: 9000,
        prior: Some(Box::new(move |s| {
            0.15 * (1.0 + 0.2 * (s.saturating_sub(k) as f64 / 1000.0))
        })),
        ..Shape::healthy()
    }
    .generate(41);
    write_run(tmp.path(), &run);
    let cfg = DetectorConfig::default();
    let online = feed(&run, &cfg);
    let offline = analyze_run(tmp.path(), &cfg).unwrap();
    assert_eq!(online.label, Label::Deconverged);
    assert_eq!(online.events, offline.events);
    assert_eq!(online.best_step, offline.best_step);
    assert_eq!(online.label, offline.label);
}

#[test]
fn events_fire_once_and_online_returns_them() {
    let mut det = Detector::new(DetectorConfig::default());
    let mut fired = Vec::new();
    for s in 1..=400u64 {
        let loss = if s >= 300 { f64::NAN } else { 0.1 };
        if let Some(ev) = det.observe_train(s, loss, 1.0) {
            fired.push(ev);
        }
    }
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0].step, 300);
    assert_eq!(det.analysis().events, fired);
}

#[test]
fn config_reads_from_toml_with_defaults() {
    let cfg: DetectorConfig = toml::from_str("deconvergence_margin = 0.1\n").unwrap();
    assert_eq!(cfg.deconvergence_margin, 0.1);
    assert_eq!(
        cfg.deconvergence_patience,
        DetectorConfig::default().deconvergence_patience
    );
    assert!(toml::from_str::<DetectorConfig>("deconvergence_margn = 0.1\n").is_err());
    assert!(serde_json::to_string(&Label::Deconverged).unwrap() == "\"deconverged\"");
}

#[test]
fn garbled_csv_errors_name_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let run = Shape {
        steps: 300,
        ..Shape::healthy()
    }
    .generate(51);
    write_run(tmp.path(), &run);
    let path = tmp.path().join("metrics.csv");
    let mut lines: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines[5] = "5,0,zero-point-one,3e-6,1.0,12.5,2.0".into();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let err = format!(
        "{:#}",
        analyze_run(tmp.path(), &DetectorConfig::default()).unwrap_err()
    );
    assert!(err.contains("metrics.csv"), "{err}");
    assert!(err.contains("line 6"), "{err}");
    assert!(err.contains("loss"), "{err}");

    lines[5] = "5,0,0.1".into();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let err = format!(
        "{:#}",
        analyze_run(tmp.path(), &DetectorConfig::default()).unwrap_err()
    );
    assert!(
        err.contains("metrics.csv") && err.contains("line 6"),
        "{err}"
    );

    std::fs::write(&path, "step,loss\n1,0.1\n").unwrap();
    let err = format!(
        "{:#}",
        analyze_run(tmp.path(), &DetectorConfig::default()).unwrap_err()
    );
    assert!(
        err.contains("metrics.csv") && err.contains("missing column `lr`"),
        "{err}"
    );

    std::fs::remove_file(&path).unwrap();
    let err = format!(
        "{:#}",
        analyze_run(tmp.path(), &DetectorConfig::default()).unwrap_err()
    );
    assert!(err.contains("metrics.csv"), "{err}");
}

#[test]
fn unterminated_last_line_of_a_live_run_is_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let run = Shape {
        steps: 300,
        ..Shape::healthy()
    }
    .generate(52);
    write_run(tmp.path(), &run);
    let path = tmp.path().join("metrics.csv");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("301,0,0.");
    std::fs::write(&path, text).unwrap();
    let a = analyze_run(tmp.path(), &DetectorConfig::default()).unwrap();
    assert_eq!(a.train_steps, 300);
}

#[test]
fn sweep_recommends_best_healthy_learning_rate() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tmp.path().join("sweep");
    // Too low: healthy but slow.
    let slow = Shape {
        lr: 1e-6,
        val: Box::new(|s| 0.12 + 0.08 * (-(s as f64) / 8000.0).exp()),
        ..Shape::healthy()
    };
    write_run(&exp.join("lr=1e-06"), &slow.generate(61));
    // Just right.
    write_run(&exp.join("lr=3e-06"), &Shape::healthy().generate(62));
    // Too high: the lowest validation loss of all, but it forgets its prior from step 3000.
    let hot = Shape {
        lr: 1e-5,
        val: Box::new(|s| 0.08 + 0.1 * (-(s as f64) / 1500.0).exp()),
        prior: Some(Box::new(|s| {
            0.15 * (1.0 + 0.3 * s.saturating_sub(3000) as f64 / 1000.0)
        })),
        ..Shape::healthy()
    };
    let hot_dir = exp.join("lr=1e-05");
    write_run(&hot_dir, &hot.generate(63));
    // Its learning rate comes from config.toml, which wins over the id.
    std::fs::write(
        hot_dir.join("config.toml"),
        "[train]\nlearning_rate = 1.2e-5\nmax_steps = 8000\n",
    )
    .unwrap();
    std::fs::write(
        hot_dir.join("status.json"),
        r#"{"state": "finished", "reason": "max steps", "step": 8000}"#,
    )
    .unwrap();

    let s = analyze_experiment(&exp, &DetectorConfig::default()).unwrap();
    let labels: Vec<(String, Label)> = s
        .runs
        .iter()
        .map(|r| (r.id.clone(), r.analysis.label))
        .collect();
    assert_eq!(
        labels,
        vec![
            ("lr=1e-06".to_string(), Label::Converging),
            ("lr=3e-06".to_string(), Label::Converging),
            ("lr=1e-05".to_string(), Label::Deconverged),
        ]
    );
    assert_eq!(s.runs[2].learning_rate, Some(1.2e-5));
    assert_eq!(s.runs[2].status.as_ref().unwrap().state, "finished");
    assert!(
        s.runs[2].analysis.best_val_loss.unwrap() < s.runs[1].analysis.best_val_loss.unwrap(),
        "the deconverged run must look best by validation loss alone for this test to mean anything"
    );
    assert_eq!(s.recommended_run().unwrap().id, "lr=3e-06");
    assert_eq!(s.recommended_lr(), Some(3e-6));

    let table = s.table();
    assert!(table.contains("recommended learning rate: 3e-6"), "{table}");
    assert!(table.contains("deconverged"), "{table}");
    let csv = std::fs::read_to_string(exp.join("summary.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(lines[0].starts_with("id,learning_rate,label,best_step,best_val_loss"));
    assert!(
        lines[2].starts_with("lr=3e-06,3e-6,converging,") && lines[2].contains(",true,"),
        "{csv}"
    );
    for id in ["lr=1e-06", "lr=3e-06", "lr=1e-05"] {
        assert!(exp.join(id).join("analysis.json").is_file());
    }
}

#[test]
fn learning_rate_parses_from_point_ids() {
    assert_eq!(lr_from_id("lr=3e-06"), Some(3e-6));
    assert_eq!(lr_from_id("bs=4,lr=1e-5"), Some(1e-5));
    assert_eq!(lr_from_id("learning_rate=2e-6_seed=1"), Some(2e-6));
    assert_eq!(lr_from_id("clr=2e-6"), None);
    assert_eq!(lr_from_id("baseline"), None);
}

#[test]
fn a_compare_folder_with_evaluate_metrics_is_not_a_run() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = tmp.path().join("exp");
    write_run(&exp.join("lr=3e-06"), &Shape::healthy().generate(64));
    // `studioize evaluate --outputs exp/compare --out exp/compare/metrics.csv` puts a
    // metrics.csv (not a training log) beside compare.csv.
    let cmp = exp.join("compare");
    std::fs::create_dir_all(&cmp).unwrap();
    std::fs::write(
        cmp.join("compare.csv"),
        "row,checkpoint,step,input,output\n",
    )
    .unwrap();
    std::fs::write(
        cmp.join("metrics.csv"),
        "run,checkpoint,step,input,output,background_cleanliness_in\n",
    )
    .unwrap();
    let runs = studioize::monitor::find_runs(&exp).unwrap();
    assert_eq!(runs, vec![exp.join("lr=3e-06")]);
    let s = analyze_experiment(&exp, &DetectorConfig::default()).unwrap();
    assert_eq!(s.runs.len(), 1);
    // without compare.csv the folder would be read as a run (and fail on its header)
    std::fs::remove_file(cmp.join("compare.csv")).unwrap();
    let err = analyze_experiment(&exp, &DetectorConfig::default()).unwrap_err();
    assert!(format!("{err:#}").contains("metrics.csv"), "{err:#}");
}
