//! `studioize report` on a tiny two-point sweep (one sensible, one diverging learning rate):
//! a self-contained report.html that headless Chromium renders with its plots, and
//! notebooks/analysis.ipynb executed headless on the same experiment.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_studioize")
}

fn ok(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The sweep experiment (`runs/`) with a comparison in `runs/compare`, built once per test
/// binary under cargo's target tmp folder.
fn experiment() -> &'static Path {
    static EXP: OnceLock<PathBuf> = OnceLock::new();
    EXP.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-test");
        let _ = std::fs::remove_dir_all(&dir);
        let cfg = format!(
            r#"experiment = "lr-sweep"
{tables}[train]
steps = 12
batch_size = 4
lr_schedule = "constant"
checkpoint_every = 6
validate_every = 6
validation_timesteps = 2
[output]
dir = "{out}"
[sweep]
learning_rate = [3e-4, 0.5]
"#,
            tables = common::tiny_experiment_tables(&dir, 16, 5),
            out = dir.join("runs").display(),
        );
        let path = dir.join("sweep.toml");
        std::fs::write(&path, cfg).unwrap();
        // The diverging point fails; the sweep as a whole exits non-zero.
        let out = Command::new(exe())
            .args([
                "train",
                path.to_str().unwrap(),
                "--device",
                "cpu",
                "--quiet",
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("lr=0.0003: finished"), "{err}");
        let runs = dir.join("runs");
        let photo = common::fixtures().join("pipelines").join("input-photo.png");
        let out = Command::new(exe())
            .arg("compare")
            .arg(&runs)
            .arg("--inputs")
            .arg(&photo)
            .args([
                "--prompt",
                "a red circle",
                "--steps",
                "2",
                "--device",
                "cpu",
            ])
            .args(["--include-base", "--out"])
            .arg(runs.join("compare"))
            .output()
            .unwrap();
        ok("compare", &out);
        runs
    })
}

/// Values of `src="..."` and `href="..."` attributes.
fn resource_refs(html: &str) -> Vec<String> {
    let mut refs = Vec::new();
    for attr in ["src=\"", "href=\""] {
        let mut rest = html;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            let end = rest.find('"').unwrap_or(rest.len());
            refs.push(rest[..end].chars().take(40).collect());
            rest = &rest[end..];
        }
    }
    refs
}

fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser"] {
        if let Ok(out) = Command::new("which").arg(name).output() {
            if out.status.success() {
                return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            }
        }
    }
    panic!("chromium is not installed: run ./setup.sh (it installs Debian's chromium)");
}

#[test]
fn report_is_self_contained_and_renders_its_plots() {
    let runs = experiment();
    let out = Command::new(exe())
        .arg("report")
        .arg(runs)
        .output()
        .unwrap();
    ok("report", &out);
    let report = runs.join("report.html");
    let html = std::fs::read_to_string(&report).unwrap();

    // Self-contained: every src/href is a data URI or an in-page anchor.
    let refs = resource_refs(&html);
    assert!(refs.len() >= 6, "expected the plots and the grid: {refs:?}");
    for r in &refs {
        assert!(
            r.starts_with("data:image/png;base64,") || r.starts_with('#'),
            "external resource {r}"
        );
    }
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert!(!html.contains("<script"), "no scripts needed");
    // Summary, verdicts, recommendation, comparison and configs.
    for text in [
        "lr=0.0003",
        "lr=0.5",
        "converging",
        "diverged",
        // The diverged point ended as a result of the sweep: stopped, with its label.
        "stopped: diverged at step",
        "Recommended learning rate: <b>3e-4</b>",
        "class=\"recommended\"",
        "Checkpoint comparisons",
        "a red circle",
        "learning_rate = 0.5",
    ] {
        assert!(html.contains(text), "report.html lacks {text:?}");
    }
    assert!(
        html.contains("training loss is NaN") || html.contains("training loss is inf"),
        "the diverged run's reason is shown"
    );

    // Headless Chromium renders it; the screenshot shows the plots.
    let shot = runs.join("report.png");
    let _ = std::fs::remove_file(&shot);
    let t0 = std::time::Instant::now();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1200,2000")
        .arg(format!(
            "file://{}",
            report.canonicalize().unwrap().display()
        ))
        .output()
        .unwrap();
    ok("chromium", &out);
    eprintln!("chromium took {:.1}s", t0.elapsed().as_secs_f64());
    let img = image::open(&shot)
        .unwrap_or_else(|e| panic!("{}: {e}", shot.display()))
        .to_rgb8();
    assert_eq!(img.dimensions(), (1200, 2000));
    let colours = |y0: u32, y1: u32| {
        let mut set = std::collections::HashSet::new();
        for y in y0..y1 {
            for x in 0..img.width() {
                set.insert(img.get_pixel(x, y).0);
            }
        }
        set.len()
    };
    let all = colours(0, 2000);
    assert!(all > 500, "the screenshot looks blank: {all} colours");
    // The overview plot sits below the summary: its region holds the many anti-aliased colours
    // of curves and text, not a uniform page.
    let plots = colours(500, 1200);
    assert!(
        plots > 300,
        "no plot in the screenshot's middle: {plots} colours"
    );
    // The two run colours of the plots (tab10 blue and orange) are drawn, give or take the
    // browser's image scaling.
    let near = |c: [i32; 3]| {
        img.pixels()
            .filter(|p| (0..3).all(|i| (p.0[i] as i32 - c[i]).abs() <= 24))
            .count()
    };
    let (blue, orange) = (near([31, 119, 180]), near([255, 127, 14]));
    assert!(
        blue > 200 && orange > 200,
        "run colours: blue {blue}, orange {orange} pixels"
    );
}

#[test]
fn notebook_runs_headless() {
    let runs = experiment();
    // The summary the notebook reads.
    ok(
        "analyze",
        &Command::new(exe())
            .arg("analyze")
            .arg(runs)
            .output()
            .unwrap(),
    );
    let python = option_env!("STUDIOIZE_PYTHON")
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .expect(
            "STUDIOIZE_PYTHON (written by setup.sh into .cargo/config.toml) must point at the venv",
        );
    let nb = Path::new(env!("CARGO_MANIFEST_DIR")).join("notebooks/analysis.ipynb");
    let figs = runs.join("notebook");
    let _ = std::fs::remove_dir_all(&figs);
    let executed = runs.join("analysis.out.ipynb");
    let script = r#"
import sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
nbformat.validate(nb)
NotebookClient(nb, timeout=300, kernel_name="python3").execute()
nbformat.write(nb, sys.argv[2])
"#;
    let t0 = std::time::Instant::now();
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(&nb)
        .arg(&executed)
        .env("STUDIOIZE_EXPERIMENT", runs)
        .env("STUDIOIZE_NOTEBOOK_OUT", &figs)
        .env("MPLBACKEND", "Agg")
        .output()
        .unwrap();
    ok("the notebook", &out);
    eprintln!("notebook took {:.1}s", t0.elapsed().as_secs_f64());
    let text = std::fs::read_to_string(&executed).unwrap();
    for s in ["lr=0.0003: converging", "lr=0.5: diverged", "step-6"] {
        assert!(text.contains(s), "the executed notebook lacks {s:?}");
    }
    let (w, h) = image::image_dimensions(figs.join("losses.png")).unwrap();
    assert!(w >= 1000 && h >= 400, "losses.png {w}x{h}");
}

/// Text between `<table class="metrics">` and its end.
fn metrics_table(html: &str) -> &str {
    let start = html
        .find("<table class=\"metrics\">")
        .unwrap_or_else(|| panic!("no metrics table in the report"));
    let end = start + html[start..].find("</table>").unwrap();
    &html[start..end]
}

#[test]
fn report_shows_the_metrics_per_checkpoint_that_evaluate_measured() {
    let runs = experiment();
    let tmp = tempfile::tempdir().unwrap();
    let inputs = tmp.path().join("inputs");
    std::fs::create_dir(&inputs).unwrap();
    std::fs::copy(
        common::fixtures().join("pipelines").join("input-photo.png"),
        inputs.join("input-photo.png"),
    )
    .unwrap();
    // A private copy of the comparison: the other tests read the shared one.
    let cmp = tmp.path().join("compare");
    std::fs::create_dir(&cmp).unwrap();
    for e in std::fs::read_dir(runs.join("compare")).unwrap() {
        let p = e.unwrap().path();
        let to = cmp.join(p.file_name().unwrap());
        if p.is_dir() {
            let out = Command::new("cp")
                .arg("-r")
                .arg(&p)
                .arg(&to)
                .output()
                .unwrap();
            ok("cp", &out);
        } else {
            std::fs::copy(&p, &to).unwrap();
        }
    }
    let report = |out: &Path| {
        Command::new(exe())
            .arg("report")
            .arg(runs)
            .arg("--compare")
            .arg(&cmp)
            .arg("--out")
            .arg(out)
            .output()
            .unwrap()
    };
    // Before `evaluate`: the report says how to add the metrics.
    let before = tmp.path().join("before.html");
    ok("report", &report(&before));
    let html = std::fs::read_to_string(&before).unwrap();
    assert!(html.contains("No studio-ize metrics for this comparison"));
    assert!(!html.contains("<table class=\"metrics\">"));

    let out = Command::new(exe())
        .args(["evaluate", "--inputs"])
        .arg(&inputs)
        .arg("--outputs")
        .arg(&cmp)
        .arg("--out")
        .arg(cmp.join("metrics.csv"))
        .output()
        .unwrap();
    ok("evaluate", &out);
    let (header, rows) = common::read_csv_table(&cmp.join("metrics-summary.csv"));
    assert!(rows.len() >= 3, "base and the checkpoints: {rows:?}");
    let after = tmp.path().join("after.html");
    ok("report", &report(&after));
    let html = std::fs::read_to_string(&after).unwrap();
    let table = metrics_table(&html);
    assert!(table.contains("background cleanliness, output"), "{table}");
    // Every row of the means table is in the report, with its values to three decimals.
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    for r in &rows {
        let cells = format!(
            "<td>{}</td><td>{}</td>",
            r[col("run")],
            r[col("checkpoint")]
        );
        let at = table
            .find(&cells)
            .unwrap_or_else(|| panic!("no row {cells} in {table}"));
        let row = &table[at..at + table[at..].find("</tr>").unwrap()];
        let v: f64 = r[col("background_cleanliness_out")].parse().unwrap();
        assert!(row.contains(&format!("<td>{v:.3}</td>")), "{row}");
    }
    // ... and the chart: one more embedded picture than before.
    let pictures = |h: &str| h.matches("data:image/png;base64,").count();
    assert_eq!(
        pictures(&html),
        pictures(&std::fs::read_to_string(&before).unwrap()) + 1
    );

    // A table that is not evaluate's fails the report on one line naming the file.
    std::fs::write(cmp.join("metrics-summary.csv"), "input,output,x\na,b,1\n").unwrap();
    let err = common::sole_error_line(&report(&tmp.path().join("bad.html")));
    assert!(
        err.contains("metrics-summary.csv") && err.contains("not a per-checkpoint metrics table"),
        "{err}"
    );
    assert!(!tmp.path().join("bad.html").exists());
}
