//! Downloads through the `hf-hub` crate's blocking (ureq, rustls) client into the hub cache:
//! `blobs/<etag>`, a relative symlink `snapshots/<commit>/<file>` to it, `refs/<revision>`.
//! The endpoint, token and cache folder are passed explicitly from [`HubEnv`] (hf-hub 0.5 reads
//! neither `HF_TOKEN` nor `HF_HUB_CACHE` itself). Every hub error becomes one line naming the repo.
use super::env::HubEnv;
use super::id::{is_commit_hash, RepoRef};
use anyhow::{anyhow, bail, Result};
use hf_hub::api::sync::{Api, ApiBuilder, ApiError};
use hf_hub::api::Progress;
use hf_hub::{Cache, Repo, RepoType};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// A client for one endpoint and cache.
pub struct Hub {
    api: Api,
    endpoint: String,
    cache: PathBuf,
    token_sent: bool,
}

impl Hub {
    pub fn new(env: &HubEnv) -> Result<Self> {
        let api = ApiBuilder::from_cache(Cache::new(env.cache.clone()))
            .with_endpoint(env.endpoint.clone())
            .with_token(env.token.clone())
            .with_progress(false)
            .with_user_agent("studioize", env!("CARGO_PKG_VERSION"))
            .build()
            .map_err(|e| anyhow!("cannot set up the Hugging Face Hub client ({e})"))?;
        Ok(Self {
            api,
            endpoint: env.endpoint.clone(),
            cache: env.cache.clone(),
            token_sent: env.token.is_some(),
        })
    }

    /// The commit `repo`'s revision points to and the repo's files there
    /// (`GET /api/models/{id}/revision/{revision}`).
    pub fn info(&self, repo: &RepoRef) -> Result<(String, BTreeSet<String>)> {
        let r = self.api.repo(Repo::with_revision(
            repo.id.clone(),
            RepoType::Model,
            repo.revision.clone(),
        ));
        let info = r.info().map_err(|e| self.error(repo, None, e))?;
        if !is_commit_hash(&info.sha) {
            bail!(
                "{repo}: {} answered commit {:?}, which is not a commit hash",
                self.endpoint,
                info.sha
            );
        }
        let files = info
            .siblings
            .into_iter()
            .map(|s| s.rfilename)
            .filter(|f| is_safe_repo_path(f))
            .collect();
        Ok((info.sha, files))
    }

    /// Downloads `file` of `repo` at `commit` into the cache and returns its snapshot path;
    /// the bytes are shown on `bar`.
    pub fn download(
        &self,
        repo: &RepoRef,
        commit: &str,
        file: &str,
        bar: &ProgressBar,
    ) -> Result<PathBuf> {
        let r = self.api.repo(Repo::with_revision(
            repo.id.clone(),
            RepoType::Model,
            commit.to_string(),
        ));
        let path = r
            .download_with_progress(
                file,
                FileProgress {
                    bar: bar.clone(),
                    label: format!("{} {file}", repo.id),
                },
            )
            .map_err(|e| self.error(repo, Some(file), e))?;
        remove_lock_file(&path);
        Ok(path)
    }

    fn error(&self, repo: &RepoRef, file: Option<&str>, e: ApiError) -> anyhow::Error {
        let what = match file {
            Some(f) => format!("{repo}: {f}"),
            None => repo.to_string(),
        };
        let endpoint = &self.endpoint;
        match e {
            ApiError::RequestError(inner) => match *inner {
                ureq::Error::StatusCode(code @ (401 | 403)) => {
                    let hint = if self.token_sent {
                        "the token in HF_TOKEN (or the token file) was sent and refused"
                    } else {
                        "a private or gated repo needs a token: set HF_TOKEN"
                    };
                    anyhow!("{what}: {endpoint} refused access (HTTP {code}): no such repo, or {hint}")
                }
                ureq::Error::StatusCode(404) => {
                    anyhow!("{what}: not found on {endpoint} (HTTP 404: no such repo, revision or file)")
                }
                ureq::Error::StatusCode(code) => anyhow!("{what}: {endpoint} answered HTTP {code}"),
                other => anyhow!(
                    "{what}: cannot download from {endpoint} ({other}); set HF_HUB_OFFLINE=1 to use only the cache"
                ),
            },
            ApiError::IoError(io) => {
                anyhow!("{what}: cannot write into the cache {} ({io})", self.cache.display())
            }
            ApiError::LockAcquisition(p) => anyhow!(
                "{what}: another process is downloading this file (lock {})",
                p.display()
            ),
            other => anyhow!("{what}: download from {endpoint} failed ({other})"),
        }
    }
}

/// A progress bar for one file at a time: hf-hub calls `init` with the file's size when the
/// transfer starts (again before resuming, then `update` with the bytes already there).
struct FileProgress {
    bar: ProgressBar,
    label: String,
}

impl Progress for FileProgress {
    fn init(&mut self, size: usize, _filename: &str) {
        self.bar.set_length(size as u64);
        self.bar.set_position(0);
        self.bar.set_message(self.label.clone());
    }

    fn update(&mut self, size: usize) {
        self.bar.inc(size as u64);
    }

    fn finish(&mut self) {}
}

/// The bar the downloads of one model share; hidden when stderr is not a terminal.
pub fn download_bar() -> ProgressBar {
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb
}

/// hf-hub leaves `blobs/<etag>.lock` beside each blob; `huggingface_hub` keeps its locks in
/// `.locks/`, so the blob folder is left holding blobs only.
fn remove_lock_file(pointer: &Path) {
    let Ok(target) = std::fs::read_link(pointer) else {
        return;
    };
    let mut lock = pointer.parent().unwrap_or(Path::new("")).join(target);
    lock.set_extension("lock");
    let _ = std::fs::remove_file(lock);
}

/// A file name from the hub that stays inside the snapshot folder.
fn is_safe_repo_path(f: &str) -> bool {
    !f.is_empty()
        && !f.starts_with('/')
        && !f.contains('\\')
        && f.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_paths_that_stay_inside() {
        assert!(is_safe_repo_path("unet/config.json"));
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "a\\b",
            "./a",
        ] {
            assert!(!is_safe_repo_path(bad), "{bad}");
        }
    }
}
