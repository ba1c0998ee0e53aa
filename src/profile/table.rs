//! The profile as a table (stderr) and as JSON (`--profile-json`).
use super::Stage;
use crate::fsutil::write_atomic;
use anyhow::Result;
use std::path::Path;

/// A stage's time less its children's: what the stage spends outside the stages it names.
fn self_seconds(stages: &[Stage], s: &Stage) -> f64 {
    let children: f64 = stages
        .iter()
        .filter(|c| c.is_child_of(&s.path))
        .map(|c| c.total_s)
        .sum();
    (s.total_s - children).max(0.0)
}

/// One row per stage, indented by nesting: calls, total, mean per call, self time and the share
/// of `wall_s` (the whole command); the untimed rest last.
pub fn render(stages: &[Stage], wall_s: f64) -> String {
    let mut out = format!(
        "profile: {wall_s:.2} s wall\n{:<40} {:>7} {:>10} {:>10} {:>10} {:>6}\n",
        "stage", "calls", "total s", "mean ms", "self s", "wall%"
    );
    for s in stages {
        let name = format!("{}{}", "  ".repeat(s.depth()), leaf(&s.path));
        out.push_str(&format!(
            "{name:<40} {:>7} {:>10.3} {:>10.1} {:>10.3} {:>5.1}%\n",
            s.calls,
            s.total_s,
            1e3 * s.total_s / s.calls.max(1) as f64,
            self_seconds(stages, s),
            100.0 * s.total_s / wall_s.max(1e-9),
        ));
    }
    let roots: f64 = stages
        .iter()
        .filter(|s| s.depth() == 0)
        .map(|s| s.total_s)
        .sum();
    let rest = (wall_s - roots).max(0.0);
    out.push_str(&format!(
        "{:<40} {:>7} {:>10.3} {:>10} {:>10.3} {:>5.1}%\n",
        "(outside the stages)",
        "",
        rest,
        "",
        rest,
        100.0 * rest / wall_s.max(1e-9)
    ));
    out
}

fn leaf(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Writes the stages as `{"wall_s", "stages": [{"path", "calls", "total_s", "self_s"}]}`.
pub fn write_json(path: &Path, stages: &[Stage], wall_s: f64) -> Result<()> {
    let rows: Vec<_> = stages
        .iter()
        .map(|s| {
            serde_json::json!({
                "path": s.path, "calls": s.calls, "total_s": s.total_s,
                "self_s": self_seconds(stages, s),
            })
        })
        .collect();
    let doc = serde_json::json!({ "wall_s": wall_s, "stages": rows });
    write_atomic(path, serde_json::to_string_pretty(&doc)?.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(path: &str, calls: u64, total_s: f64) -> Stage {
        Stage {
            path: path.into(),
            calls,
            total_s,
        }
    }

    #[test]
    fn self_time_leaves_out_children_only() {
        let stages = [
            stage("generate", 1, 10.0),
            stage("generate/unet", 20, 7.0),
            stage("generate/unet/attention", 20, 3.0),
            stage("generate/vae decode", 1, 2.0),
            stage("generated", 1, 5.0),
        ];
        assert!((self_seconds(&stages, &stages[0]) - 1.0).abs() < 1e-12);
        assert!((self_seconds(&stages, &stages[1]) - 4.0).abs() < 1e-12);
        assert!((self_seconds(&stages, &stages[4]) - 5.0).abs() < 1e-12);
        let text = render(&stages, 20.0);
        assert!(text.contains("  unet"), "{text}");
        assert!(text.contains("    attention"), "{text}");
        // 20 s wall, 15 s in the two roots.
        let rest = text.lines().last().unwrap();
        assert!(rest.contains("5.000") && rest.contains("25.0%"), "{rest}");
    }
}
