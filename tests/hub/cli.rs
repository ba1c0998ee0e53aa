//! Running the CLI in a clean Hugging Face environment, and `tools/hub_cache.py`.
use crate::common::fixtures;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Variables that would point the binary at the developer's own cache, hub or proxy.
const CLEARED: [&str; 14] = [
    "HF_HOME",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "XDG_CACHE_HOME",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_ENDPOINT",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_TOKEN_PATH",
    "http_proxy",
    "https_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
];

pub fn tiny_a() -> PathBuf {
    fixtures().join("sd/tiny-a")
}

pub fn tiny_b() -> PathBuf {
    fixtures().join("sd/tiny-b")
}

pub fn blip() -> PathBuf {
    fixtures().join("blip/tiny")
}

/// Runs studioize with `env` on top of a clean Hugging Face environment (HOME = `home`).
pub fn studioize<S: AsRef<OsStr>>(args: &[S], env: &[(&str, &str)], home: &Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_studioize"));
    cmd.args(args).env("HOME", home);
    for v in CLEARED {
        cmd.env_remove(v);
    }
    cmd.envs(env.iter().copied())
        .output()
        .expect("run studioize")
}

pub fn ok(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The one `error:` line of a failed run.
pub fn one_line_error(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure");
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("error: "), "{err}");
    err
}

/// `generate` with `model`; the image's pixels.
pub fn generate(model: &str, env: &[(&str, &str)], home: &Path) -> Vec<u8> {
    let out = home.join(format!("g-{}.png", next_id()));
    let mut args = vec![
        "generate",
        "--model",
        model,
        "--prompt",
        "a red cube",
        "--steps",
        "3",
    ];
    args.extend([
        "--seed",
        "7",
        "--device",
        "cpu",
        "--out",
        out.to_str().unwrap(),
    ]);
    ok(studioize(&args, env, home), model);
    let px = image::open(&out).unwrap().to_rgb8().into_raw();
    std::fs::remove_file(&out).unwrap();
    px
}

/// A number unique within this test process, for output names.
fn next_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

/// `caption` of the BLIP fixture images with `model`; the CSV text.
pub fn caption(model: &str, env: &[(&str, &str)], home: &Path) -> String {
    let out = home.join(format!("c-{}.csv", next_id()));
    ok(studioize(&caption_args(model, &out), env, home), model);
    std::fs::read_to_string(&out).unwrap()
}

/// `caption` of the BLIP fixture images with `model` into `out`.
pub fn caption_args(model: &str, out: &Path) -> Vec<String> {
    let images = fixtures().join("blip/images");
    [
        "caption",
        "--model",
        model,
        "--max-new-tokens",
        "8",
        "--device",
        "cpu",
        "--out",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([out.display().to_string(), images.display().to_string()])
    .collect()
}

/// `tools/hub_cache.py MODE ...`; its JSON summary.
pub fn hub_cache(
    mode: &str,
    cache: &Path,
    repo: &str,
    folder: &Path,
    commit: &str,
    refs: &[&str],
    files: &[String],
) -> serde_json::Value {
    let python = option_env!("STUDIOIZE_PYTHON")
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .expect(
            "STUDIOIZE_PYTHON (written by setup.sh into .cargo/config.toml) must point at the venv",
        );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/hub_cache.py");
    let mut cmd = Command::new(python);
    cmd.arg(script)
        .arg(mode)
        .arg("--cache")
        .arg(cache)
        .args(["--repo", repo]);
    cmd.arg("--folder").arg(folder).args(["--commit", commit]);
    for r in refs {
        cmd.args(["--ref", r]);
    }
    if !files.is_empty() {
        cmd.arg("--files").args(files);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "huggingface_hub disagrees ({mode}): {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
