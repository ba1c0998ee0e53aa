//! The monitor on run folders written from synthetic training curves: NaN losses in the CSVs,
//! analysis.json, offline analysis equal to online feeding, garbled and live CSVs, and sweep
//! experiments (the recommended learning rate, learning rates from point ids, compare folders).
mod common;

use common::curves::{feed, summary, Run, Shape};
use std::fmt::Write as _;
use std::path::Path;
use studioize::monitor::{
    analyze_experiment, analyze_run, lr_from_id, Analysis, DetectorConfig, Label,
};

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
