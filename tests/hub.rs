//! Models by Hugging Face repo id, end to end through the CLI:
//! - offline: a hub cache laid out by the real `huggingface_hub` (`tools/hub_cache.py build`:
//!   blobs by etag, relative snapshot symlinks, refs) holding the tiny SD models and the tiny BLIP;
//!   `generate`/`caption`/`inspect`/`train` by id (`HF_HUB_CACHE` or `HF_HOME`, `@branch`,
//!   `@tag`, `@commit`, `hf://`) give exactly what the plain folders give;
//! - download: a stand-in hub on 127.0.0.1 (`hub/server.rs`) serving the repos with decoy
//!   pickles, variants and extra components; only the needed files are requested, with the
//!   token, the cache afterwards passes `huggingface_hub`'s own offline checks
//!   (`tools/hub_cache.py verify`), and a second run makes no request;
//! - the errors: offline and missing, 404, 401, pickles only, no server: one line each.
#[path = "hub/cli.rs"]
mod cli;
mod common;
#[path = "hub/server.rs"]
mod server;

use cli::{
    blip, caption, caption_args, generate, hub_cache, ok, one_line_error, studioize, tiny_a, tiny_b,
};
use server::{Repo, Server};
use std::path::{Path, PathBuf};
use std::time::Duration;

const COMMIT_A: &str = "4b4a6a0c1f0e4fd2a7d86de45c39b8a2f6a1c0d3";
const COMMIT_B: &str = "9e107d9d372bb6826bd81d3542a419d6e2770fa1";
const COMMIT_C: &str = "c3499c2729730a7f807efb8676a92dcb6f8a3f8f";
const TOKEN: &str = "hf_studioize_test_token";

#[test]
fn models_from_a_cache_laid_out_by_huggingface_hub() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, home) = (dir.path().join("hub"), dir.path().join("home"));
    std::fs::create_dir_all(&home).unwrap();
    let a = "studioize-test/tiny-a";
    let s = hub_cache(
        "build",
        &cache,
        a,
        &tiny_a(),
        COMMIT_A,
        &["main", "v1.0"],
        &[],
    );
    assert_eq!(s["refs"], serde_json::json!(["main", "v1.0"]));
    // a second commit of the same repo on branch `other`
    hub_cache("build", &cache, a, &tiny_b(), COMMIT_B, &["other"], &[]);
    hub_cache(
        "build",
        &cache,
        "studioize-test/tiny-blip",
        &blip(),
        COMMIT_C,
        &[],
        &[],
    );
    let cache_s = cache.to_str().unwrap();
    let offline = [("HF_HUB_CACHE", cache_s), ("HF_HUB_OFFLINE", "1")];

    let plain_a = generate(tiny_a().to_str().unwrap(), &[], &home);
    let plain_b = generate(tiny_b().to_str().unwrap(), &[], &home);
    assert_ne!(plain_a, plain_b, "the two models must tell revisions apart");
    // a tag and a branch of two commits give those commits' images
    assert!(generate(&format!("{a}@v1.0"), &offline, &home) == plain_a);
    assert!(generate(&format!("{a}@other"), &offline, &home) == plain_b);

    // every spelling reads its commit's snapshot (the files inspect reports are its symlinks)
    let snapshots = cache.join("models--studioize-test--tiny-a/snapshots");
    let hf_home = [
        ("HF_HOME", dir.path().to_str().unwrap()),
        ("TRANSFORMERS_OFFLINE", "yes"),
    ];
    let (by_a, by_b) = (format!("{a}@{COMMIT_A}"), format!("{a}@{COMMIT_B}"));
    for (m, env, commit) in [
        (a, &offline, COMMIT_A),
        ("studioize-test/tiny-a@main", &offline, COMMIT_A),
        (&by_a, &offline, COMMIT_A),
        ("hf://studioize-test/tiny-a", &offline, COMMIT_A),
        (&by_b, &offline, COMMIT_B),
        // HF_HOME/hub instead of HF_HUB_CACHE; TRANSFORMERS_OFFLINE counts as offline
        (a, &hf_home, COMMIT_A),
    ] {
        let out = ok(studioize(&["inspect", m, "--json"], env, &home), m);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let unet = &v["components"].as_array().unwrap()[1]["files"][0];
        let want = snapshots.join(commit).join("unet");
        assert!(
            unet.as_str().unwrap().starts_with(want.to_str().unwrap()),
            "{m}: {unet}"
        );
    }

    // BLIP: the snapshot (commit only, no refs) by commit
    let blip_id = format!("studioize-test/tiny-blip@{COMMIT_C}");
    assert_eq!(
        caption(&blip_id, &offline, &home),
        caption(blip().to_str().unwrap(), &[], &home)
    );
    let snapshot = snapshots.join(COMMIT_A);

    // missing offline: one line naming the repo, the revision and the cache folder
    for (m, named) in [
        ("studioize-test/missing", "studioize-test/missing@main"),
        ("studioize-test/tiny-a@nope", "studioize-test/tiny-a@nope"),
    ] {
        let e = one_line_error(&studioize(&["inspect", m], &offline, &home));
        assert!(
            e.contains(named) && e.contains(cache_s) && e.contains("HF_HUB_OFFLINE"),
            "{e}"
        );
        let csv = home.join("failed.csv");
        let e = one_line_error(&studioize(&caption_args(m, &csv), &offline, &home));
        assert!(e.contains(named) && e.contains(cache_s), "{e}");
    }
    // a snapshot lacking a needed file is incomplete, and said so
    std::fs::remove_file(snapshot.join("unet/diffusion_pytorch_model.safetensors")).unwrap();
    let e = one_line_error(&studioize(&["inspect", a], &offline, &home));
    assert!(
        e.contains("incomplete") && e.contains("unet/diffusion_pytorch_model.safetensors"),
        "{e}"
    );
}

#[test]
fn experiment_configs_keep_repo_ids_and_train_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, home) = (dir.path().join("hub"), dir.path().join("home"));
    std::fs::create_dir_all(&home).unwrap();
    hub_cache(
        "build",
        &cache,
        "studioize-test/tiny-a",
        &tiny_a(),
        COMMIT_A,
        &["main"],
        &[],
    );
    let tables = common::tiny_experiment_tables(dir.path(), 8, 1);
    let tables = tables.replace(
        &format!("base = \"{}\"", tiny_a().display()),
        "base = \"studioize-test/tiny-a\"",
    );
    assert!(tables.contains("studioize-test/tiny-a"));
    let run = dir.path().join("run");
    let cfg = format!(
        "{tables}[train]\nsteps = 2\nbatch_size = 2\ncheckpoint_every = 2\nvalidate_every = 2\nvalidation_timesteps = 2\n[output]\ndir = \"{}\"\n",
        run.display()
    );
    let path = dir.path().join("exp.toml");
    std::fs::write(&path, &cfg).unwrap();
    let offline = [
        ("HF_HUB_CACHE", cache.to_str().unwrap()),
        ("HF_HUB_OFFLINE", "1"),
    ];
    let args = [
        "train",
        path.to_str().unwrap(),
        "--device",
        "cpu",
        "--quiet",
    ];
    ok(studioize(&args, &offline, &home), "train");
    let written = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(
        written.contains("base = \"hf://studioize-test/tiny-a\""),
        "{written}"
    );

    // not cached: the value is a path beside the config, and the error says how to mean an id
    let cfg = cfg
        .replace("studioize-test/tiny-a", "studioize-test/elsewhere")
        .replace(
            &run.display().to_string(),
            &dir.path().join("run2").display().to_string(),
        );
    std::fs::write(&path, cfg).unwrap();
    let e = one_line_error(&studioize(&args, &offline, &home));
    assert!(
        e.contains("studioize-test/elsewhere: no such file or folder")
            && e.contains("hf://studioize-test/elsewhere"),
        "{e}"
    );
}

#[test]
fn explicit_ids_in_configs_and_overrides() {
    use studioize::train::config::ExperimentConfig;
    let dir = tempfile::tempdir().unwrap();
    let body = "[model]\nbase = \"hf://org/name@v1\"\n[data]\nimages = \"imgs\"\n";
    let path = dir.path().join("e.toml");
    std::fs::write(&path, body).unwrap();
    let c = ExperimentConfig::load(&path, &[]).unwrap();
    assert_eq!(c.model.base, PathBuf::from("hf://org/name@v1"));
    assert_eq!(
        c.data.images,
        std::path::absolute(dir.path().join("imgs")).unwrap()
    );
    let again = dir.path().join("again.toml");
    std::fs::write(&again, c.to_toml()).unwrap();
    assert_eq!(
        ExperimentConfig::load(&again, &[]).unwrap().model.base,
        c.model.base
    );
    let set = ["--set".to_string(), "model.base=hf://org/other".to_string()];
    let c = ExperimentConfig::load(&path, &set[1..]).unwrap();
    assert_eq!(c.model.base, PathBuf::from("hf://org/other"), "{set:?}");
    // an existing folder of that name is a path, whatever the cache holds
    std::fs::create_dir_all(dir.path().join("org/name")).unwrap();
    std::fs::write(&path, body.replace("hf://org/name@v1", "org/name")).unwrap();
    let c = ExperimentConfig::load(&path, &[]).unwrap();
    assert_eq!(
        c.model.base,
        std::path::absolute(dir.path().join("org/name")).unwrap()
    );
}

/// The tiny-a files plus what a real SD repo also holds, none of which may be downloaded.
fn served_tiny_a(dir: &Path) -> PathBuf {
    let folder = dir.join("served-tiny-a");
    for e in std::fs::read_dir(tiny_a()).unwrap() {
        let p = e.unwrap().path();
        let to = folder.join(p.file_name().unwrap());
        std::fs::create_dir_all(&to).ok();
        if p.is_dir() {
            for f in std::fs::read_dir(&p).unwrap() {
                let f = f.unwrap().path();
                std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
            }
        } else {
            std::fs::remove_dir(&to).unwrap();
            std::fs::copy(&p, &to).unwrap();
        }
    }
    for (name, bytes) in [
        ("unet/diffusion_pytorch_model.bin", &b"pickle"[..]),
        ("text_encoder/pytorch_model.bin", b"pickle"),
        ("sd-v1-4.ckpt", b"pickle"),
        ("safety_checker/config.json", b"{}"),
        ("safety_checker/model.safetensors", b"x"),
        ("feature_extractor/preprocessor_config.json", b"{}"),
        ("README.md", b"# tiny"),
        (".gitattributes", b"*.safetensors filter=lfs"),
    ] {
        std::fs::create_dir_all(folder.join(name).parent().unwrap()).unwrap();
        std::fs::write(folder.join(name), bytes).unwrap();
    }
    let vae = folder.join("vae/diffusion_pytorch_model.safetensors");
    std::fs::copy(
        &vae,
        folder.join("vae/diffusion_pytorch_model.fp16.safetensors"),
    )
    .unwrap();
    folder
}

/// The files fetched through the resolve route, in order of first request.
fn resolved_files(server: &Server, repo: &str) -> Vec<String> {
    let prefix = format!("/{repo}/resolve/");
    let mut out: Vec<String> = Vec::new();
    for r in server.requests() {
        if let Some(rest) = r.path.strip_prefix(&prefix) {
            let file = rest.split_once('/').unwrap().1.to_string();
            if !out.contains(&file) {
                out.push(file);
            }
        }
    }
    out
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn downloads_only_the_needed_files_into_the_huggingface_hub_layout() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let folder = served_tiny_a(dir.path());
    let mut pickles = Repo::from_folder("test-org/pickles", COMMIT_B, &folder);
    pickles
        .files
        .retain(|f, _| !f.ends_with(".safetensors") || f.starts_with("text_encoder"));
    let mut private = Repo::from_folder("test-org/private", COMMIT_C, &blip());
    private.private = true;
    let repos = vec![
        Repo::from_folder("test-org/tiny-a", COMMIT_A, &folder),
        Repo::from_folder("test-org/tiny-b", COMMIT_B, &tiny_b()),
        pickles,
        private,
    ];
    let server = Server::start(repos, TOKEN, 400, Duration::from_secs(300));
    let endpoint = server.endpoint.clone();
    let cache = dir.path().join("cache");
    let cache_s = cache.to_str().unwrap();
    let online = [
        ("HF_HUB_CACHE", cache_s),
        ("HF_ENDPOINT", endpoint.as_str()),
        ("HF_TOKEN", TOKEN),
    ];

    let plain = generate(tiny_a().to_str().unwrap(), &[], &home);
    assert!(generate("test-org/tiny-a", &online, &home) == plain);
    let expected = [
        "model_index.json",
        "scheduler/scheduler_config.json",
        "text_encoder/config.json",
        "text_encoder/model.safetensors",
        "tokenizer/merges.txt",
        "tokenizer/special_tokens_map.json",
        "tokenizer/tokenizer_config.json",
        "tokenizer/vocab.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
    ];
    let got = resolved_files(&server, "test-org/tiny-a");
    assert_eq!(
        sorted(got.clone()),
        expected,
        "exactly the files the pipeline reads"
    );
    assert_eq!(got[0], "model_index.json", "checked before any weights");
    let requests = server.requests();
    assert_eq!(
        requests[0].path,
        "/api/models/test-org/tiny-a/revision/main"
    );
    assert!(requests
        .iter()
        .all(|r| r.authorization.as_deref() == Some(&*format!("Bearer {TOKEN}"))));
    let files: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    let summary = hub_cache(
        "verify",
        &cache,
        "test-org/tiny-a",
        &folder,
        COMMIT_A,
        &["main"],
        &files,
    );
    assert_eq!(summary["refs"], serde_json::json!(["main"]));
    let blobs = cache.join("models--test-org--tiny-a/blobs");
    assert_eq!(
        std::fs::read_dir(&blobs).unwrap().count(),
        expected.len(),
        "blobs only, no lock files"
    );

    // second run: everything is cached, no request at all
    let before = server.requests().len();
    ok(
        studioize(&["inspect", "test-org/tiny-a"], &online, &home),
        "again",
    );
    assert_eq!(server.requests().len(), before);

    // --variant fp16 into a fresh cache: the fp16 VAE, plain weights where there is no fp16
    let cache2 = dir.path().join("cache2");
    let online2 = [
        ("HF_HUB_CACHE", cache2.to_str().unwrap()),
        ("HF_ENDPOINT", endpoint.as_str()),
    ];
    let before = server.requests().len();
    ok(
        studioize(
            &["inspect", "test-org/tiny-a", "--variant", "fp16"],
            &online2,
            &home,
        ),
        "fp16",
    );
    let after: Vec<String> = server.requests()[before..]
        .iter()
        .filter_map(|r| {
            r.path
                .strip_prefix("/test-org/tiny-a/resolve/")
                .map(|p| p.split_once('/').unwrap().1.to_string())
        })
        .collect();
    assert!(
        after.contains(&"vae/diffusion_pytorch_model.fp16.safetensors".to_string()),
        "{after:?}"
    );
    assert!(!after.contains(&"vae/diffusion_pytorch_model.safetensors".to_string()));
    assert!(after.contains(&"unet/diffusion_pytorch_model.safetensors".to_string()));
    assert!(
        server.requests()[before..]
            .iter()
            .all(|r| r.authorization.is_none()),
        "no token, none sent"
    );

    // sharded UNet and an fp16-only text encoder: the index, then its shards
    let out = ok(
        studioize(&["inspect", "test-org/tiny-b"], &online, &home),
        "tiny-b",
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("UNet2DConditionModel"));
    let b_files = sorted(resolved_files(&server, "test-org/tiny-b"));
    assert_eq!(
        b_files.iter().filter(|f| f.contains("-of-00008")).count(),
        8
    );
    assert!(b_files.contains(&"text_encoder/model.fp16.safetensors".to_string()));
    hub_cache(
        "verify",
        &cache,
        "test-org/tiny-b",
        &tiny_b(),
        COMMIT_B,
        &["main"],
        &b_files,
    );
    let all_b = Repo::from_folder("x", COMMIT_B, &tiny_b()).files.len();
    assert_eq!(
        b_files.len(),
        all_b,
        "tiny-b holds only what the pipeline reads"
    );

    // the errors: one line naming the repo
    let e = one_line_error(&studioize(&["inspect", "test-org/pickles"], &online, &home));
    assert!(
        e.contains("test-org/pickles") && e.contains("only pickle weights for unet"),
        "{e}"
    );
    let e = one_line_error(&studioize(&["inspect", "test-org/nope"], &online, &home));
    assert!(
        e.contains("test-org/nope@main") && e.contains("HTTP 404"),
        "{e}"
    );
    let e = one_line_error(&studioize(
        &["inspect", "test-org/tiny-a@v9"],
        &online2,
        &home,
    ));
    assert!(
        e.contains("test-org/tiny-a@v9") && e.contains("HTTP 404"),
        "{e}"
    );
    let no_token = [
        ("HF_HUB_CACHE", cache_s),
        ("HF_ENDPOINT", endpoint.as_str()),
    ];
    let csv = home.join("failed.csv");
    let e = one_line_error(&studioize(
        &caption_args("test-org/private", &csv),
        &no_token,
        &home,
    ));
    assert!(
        e.contains("test-org/private@main") && e.contains("HTTP 401") && e.contains("HF_TOKEN"),
        "{e}"
    );
    // with the token, the private BLIP downloads and captions as the plain folder
    assert_eq!(
        caption("test-org/private", &online, &home),
        caption(blip().to_str().unwrap(), &[], &home)
    );
    let got = resolved_files(&server, "test-org/private");
    assert!(
        got.iter()
            .all(|f| !f.ends_with(".bin") && f != "generation_config.json"),
        "{got:?}"
    );

    // offline: nothing is requested, and the error names repo, revision and cache
    let before = server.requests().len();
    let offline = [
        ("HF_HUB_CACHE", cache2.to_str().unwrap()),
        ("HF_ENDPOINT", endpoint.as_str()),
        ("HF_HUB_OFFLINE", "1"),
    ];
    let e = one_line_error(&studioize(&["inspect", "test-org/tiny-b"], &offline, &home));
    assert!(
        e.contains("test-org/tiny-b@main") && e.contains(cache2.to_str().unwrap()),
        "{e}"
    );
    assert_eq!(server.requests().len(), before);
    drop(server);
    // no server any more: one line, with the way out
    let e = one_line_error(&studioize(&["inspect", "test-org/tiny-b"], &online2, &home));
    assert!(
        e.contains("test-org/tiny-b@main") && e.contains("HF_HUB_OFFLINE=1"),
        "{e}"
    );
}
