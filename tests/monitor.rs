//! Detector tests on synthetic training curves: healthy runs, plateaus, deconvergence,
//! overfitting, divergence, events firing once, and the detector's config. (Run folders and
//! sweeps on disk: tests/monitor_runs.rs.)
mod common;

use common::curves::{feed, summary, Shape};
use studioize::monitor::{Detector, DetectorConfig, Label};

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
