//! Models by Hugging Face repo id (`CompVis/stable-diffusion-v1-4`, `org/name@revision`,
//! `hf://org/name`), resolved through the hub cache exactly as `huggingface_hub` lays it out, so
//! that models already downloaded with diffusers or transformers are used in place:
//!
//! 1. a string that exists as a local path is always that path;
//! 2. otherwise, when it parses as a repo id ([`RepoRef`]), the revision's snapshot in the cache
//!    (`refs/<revision>` -> commit, or the commit itself) is used when it holds every file the
//!    pipeline reads ([`Pipeline`], [`select::needed`]); no request is made then;
//! 3. otherwise, unless `HF_HUB_OFFLINE` is set, the revision's file list is fetched from the hub
//!    and exactly the missing files the pipeline reads (safetensors only, the requested variant
//!    where it exists, shards listed by their index) are downloaded into that cache with hf-hub.
//!
//! The result is the snapshot folder, which the loaders read like any model folder.
mod cache;
mod download;
mod env;
mod id;
mod select;

pub use cache::{list_files, RepoCache};
pub use env::{is_true, HubEnv, DEFAULT_ENDPOINT};
pub use id::{is_commit_hash, RepoRef, DEFAULT_REVISION, HF_PREFIX};
pub use select::{needed, Pipeline};

use anyhow::{anyhow, bail, Result};
use std::path::{Path, PathBuf};

/// Resolves a `--model` value with the process environment; see the module docs.
pub fn resolve(path: &Path, pipeline: &Pipeline) -> Result<PathBuf> {
    resolve_with(path, pipeline, &HubEnv::from_env())
}

/// Resolves a `--model` value: `path` itself when it exists or is not a repo id (the loader then
/// reports it missing), else the snapshot folder of the repo in `env`'s cache.
pub fn resolve_with(path: &Path, pipeline: &Pipeline, env: &HubEnv) -> Result<PathBuf> {
    if path.symlink_metadata().is_ok() {
        return Ok(path.to_path_buf());
    }
    let Some(text) = path.to_str() else {
        return Ok(path.to_path_buf());
    };
    let Some(repo) = RepoRef::parse(text)? else {
        return Ok(path.to_path_buf());
    };
    let cache = RepoCache::new(&env.cache, &repo);
    let missing = match cached_snapshot(&cache, &repo, pipeline)? {
        Ok(snapshot) => return Ok(snapshot),
        Err(missing) => missing,
    };
    if env.offline {
        bail!(
            "{text}: not a local path, and {repo} is {missing} in the Hugging Face cache {} (HF_HUB_OFFLINE is set, so nothing is downloaded)",
            env.cache.display()
        );
    }
    download_snapshot(&cache, &repo, pipeline, env)
}

/// The cached snapshot of `repo` if it is complete for `pipeline`, else what is missing.
fn cached_snapshot(
    cache: &RepoCache,
    repo: &RepoRef,
    pipeline: &Pipeline,
) -> Result<std::result::Result<PathBuf, String>> {
    let Some(commit) = cache.commit_for(&repo.revision)? else {
        return Ok(Err("not".into()));
    };
    let snapshot = cache.snapshot(&commit);
    if !snapshot.is_dir() {
        return Ok(Err("not".into()));
    }
    let listing = list_files(&snapshot);
    let check = || -> Result<()> {
        let files = needed(&listing, pipeline)?;
        for index in files.iter().filter(|f| select::is_shard_index(f)) {
            for shard in select::shards(&snapshot.join(index), index)? {
                if !listing.contains(&shard) {
                    bail!("no {shard}");
                }
            }
        }
        Ok(())
    };
    Ok(match check() {
        Ok(()) => Ok(snapshot),
        Err(e) => Err(format!(
            "incomplete (snapshot {}: {e})",
            &commit[..commit.len().min(12)]
        )),
    })
}

/// Downloads what `pipeline` needs of `repo` into the cache; returns the snapshot folder.
fn download_snapshot(
    cache: &RepoCache,
    repo: &RepoRef,
    pipeline: &Pipeline,
    env: &HubEnv,
) -> Result<PathBuf> {
    let hub = download::Hub::new(env)?;
    let (commit, listing) = hub.info(repo)?;
    let snapshot = cache.snapshot(&commit);
    // hf-hub records `refs/<commit>` after each file; huggingface_hub never writes such a ref
    let commit_ref = cache.ref_path(&commit);
    let had_commit_ref = commit_ref.exists();

    let files = needed(&listing, pipeline).map_err(|e| anyhow!("{repo}: {e}"))?;
    let mut fetch = Fetch {
        hub: &hub,
        repo,
        commit: &commit,
        snapshot: &snapshot,
        bar: download::download_bar(),
        downloaded: 0,
    };
    if matches!(pipeline, Pipeline::StableDiffusion { .. }) {
        let index = fetch.ensure("model_index.json")?;
        select::check_model_index(&index).map_err(|e| anyhow!("{repo}: {e}"))?;
    }
    for f in &files {
        fetch.ensure(f)?;
    }
    for index in files.iter().filter(|f| select::is_shard_index(f)) {
        for shard in select::shards(&snapshot.join(index), index)? {
            if !listing.contains(&shard) {
                bail!("{repo}: {index} lists {shard}, which the repo does not have");
            }
            fetch.ensure(&shard)?;
        }
    }
    fetch.bar.finish_and_clear();
    if !had_commit_ref {
        let _ = std::fs::remove_file(&commit_ref);
    }
    if repo.revision != commit {
        crate::fsutil::write_atomic(&cache.ref_path(&repo.revision), commit.as_bytes())?;
    }
    if fetch.downloaded > 0 {
        eprintln!(
            "downloaded {} file(s) of {repo} into {}",
            fetch.downloaded,
            snapshot.display()
        );
    }
    Ok(snapshot)
}

/// Downloads of one snapshot, sharing one progress bar.
struct Fetch<'a> {
    hub: &'a download::Hub,
    repo: &'a RepoRef,
    commit: &'a str,
    snapshot: &'a Path,
    bar: indicatif::ProgressBar,
    downloaded: usize,
}

impl Fetch<'_> {
    /// The snapshot path of `file`, downloaded first unless it is already there.
    fn ensure(&mut self, file: &str) -> Result<PathBuf> {
        let path = self.snapshot.join(file);
        if path.is_file() {
            return Ok(path);
        }
        if path.symlink_metadata().is_ok() {
            // a link whose blob is gone: hf-hub would not replace it
            std::fs::remove_file(&path)
                .map_err(|e| anyhow!("{}: cannot remove the broken link ({e})", path.display()))?;
        }
        let path = self.hub.download(self.repo, self.commit, file, &self.bar)?;
        self.downloaded += 1;
        Ok(path)
    }
}

/// For a missing absolute path whose last two components form a repo id (what a config's
/// relative `model.base = "ORG/NAME"` becomes when the repo is not cached): a hint to write it
/// as `hf://ORG/NAME`; else empty.
pub fn missing_path_hint(path: &Path) -> String {
    if !path.is_absolute() {
        return String::new();
    }
    let parts: Vec<&str> = path
        .components()
        .rev()
        .take(2)
        .filter_map(|c| c.as_os_str().to_str())
        .collect();
    let [name, org] = parts[..] else {
        return String::new();
    };
    let id = format!("{org}/{name}");
    match RepoRef::parse(&id) {
        Ok(Some(_)) => {
            format!(" (if '{id}' was meant as a Hugging Face repo id, write it as {HF_PREFIX}{id})")
        }
        _ => String::new(),
    }
}
