//! The study in miniature (`experiments/miniature-study.toml`) on the committed
//! `models/tiny-studio`: fine-tuning on the catalogue's studio photos at the sweep's lowest and
//! highest learning rates (for half its steps, to fit CI), the general scenes as the prior. The highest rate forgets the prior
//! (its prior loss rises after its minimum) and is labelled deconverged (or diverged); the
//! lowest is not; the recommended rate is not the highest.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use studioize::monitor::detector::Label;
use studioize::monitor::{analyze_experiment, DetectorConfig};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_studioize"))
}

fn ok(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `[sweep]` learning rates of the experiment file.
fn swept_rates(path: &Path) -> Vec<f64> {
    let v: toml::Value = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["sweep"]["learning_rate"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_float().unwrap())
        .collect()
}

#[test]
fn the_miniature_study_flags_the_highest_rate_and_recommends_a_lower_one() {
    let dir = tempfile::tempdir().unwrap();
    let cat = dir.path().join("catalogue");
    ok(
        "make-catalogue",
        &bin().arg("make-catalogue").arg(&cat).output().unwrap(),
    );
    let exp = root().join("experiments").join("miniature-study.toml");
    let rates = swept_rates(&exp);
    let (lo, hi) = (rates[0], *rates.last().unwrap());
    assert!(rates.windows(2).all(|w| w[0] < w[1]), "{rates:?}");
    let runs = dir.path().join("runs");
    let set = |k: &str, v: String| ["--set".to_string(), format!("{k}={v}")];
    let q = |p: PathBuf| format!("\"{}\"", p.display());
    let mut args: Vec<String> = vec!["train".into(), exp.display().to_string()];
    for (k, v) in [
        ("data.images", q(cat.join("studio"))),
        ("data.captions", q(cat.join("studio/metadata.csv"))),
        ("data.prior_images", q(cat.join("general"))),
        ("data.prior_captions", q(cat.join("general/metadata.csv"))),
        ("output.dir", q(runs.clone())),
        ("sweep.learning_rate", format!("[{lo:e}, {hi:e}]")),
        // half the study's steps: the highest rate forgets within 25, the lowest's prior loss
        // stays within the margin (the README has the full study's figures)
        ("train.steps", "150".into()),
        ("train.checkpoint_every", "150".into()),
        ("train.sample_every_checkpoint", "false".into()),
    ] {
        args.extend(set(k, v));
    }
    args.push("--quiet".into());
    let t0 = std::time::Instant::now();
    let out = bin().args(&args).output().unwrap();
    ok("train", &out);
    eprintln!("the two runs took {:.0}s", t0.elapsed().as_secs_f64());

    let s = analyze_experiment(&runs, &DetectorConfig::default()).unwrap();
    assert_eq!(s.runs.len(), 2);
    let (low, high) = (&s.runs[0], &s.runs[1]);
    for r in [low, high] {
        eprintln!(
            "{}: {:?} {:?}, best validation {:?} at {:?}",
            r.id,
            r.analysis.label,
            r.analysis.events,
            r.analysis.best_val_loss,
            r.analysis.best_step
        );
    }
    assert_eq!(low.learning_rate, Some(lo));
    assert!(
        matches!(high.analysis.label, Label::Deconverged | Label::Diverged),
        "the highest rate {hi:e} is {:?}",
        high.analysis.label
    );
    assert!(
        !matches!(low.analysis.label, Label::Deconverged | Label::Diverged),
        "the lowest rate {lo:e} is {:?}",
        low.analysis.label
    );
    let rec = s.recommended_run().expect("a recommendation");
    assert_ne!(rec.learning_rate, Some(hi));
}
