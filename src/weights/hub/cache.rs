//! One repo's folder in the hub cache, as `huggingface_hub` lays it out:
//!
//! ```text
//! HF_HUB_CACHE/models--ORG--NAME/
//!   refs/main                    the commit hash that branch (or tag) `main` resolved to
//!   blobs/<etag>                 file contents, named by sha256 (LFS) or git blob hash
//!   snapshots/<commit>/<path>    relative symlinks into ../blobs (one tree per commit)
//! ```
use super::id::{is_commit_hash, RepoRef};
use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The cache folder of one repo.
#[derive(Debug, Clone)]
pub struct RepoCache {
    /// `HF_HUB_CACHE/models--ORG--NAME`.
    pub root: PathBuf,
}

impl RepoCache {
    pub fn new(cache: &Path, repo: &RepoRef) -> Self {
        Self {
            root: cache.join(repo.folder_name()),
        }
    }

    /// `refs/<revision>` (revisions with `/` nest, as in `huggingface_hub`).
    pub fn ref_path(&self, revision: &str) -> PathBuf {
        self.root.join("refs").join(revision)
    }

    /// The commit a revision stands for in the cache: the revision itself when it is a commit
    /// hash, else the content of `refs/<revision>`; `None` when the ref is not cached.
    pub fn commit_for(&self, revision: &str) -> Result<Option<String>> {
        if is_commit_hash(revision) {
            return Ok(Some(revision.to_string()));
        }
        let path = self.ref_path(revision);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let commit = text.trim();
        if !is_commit_hash(commit) {
            bail!(
                "{}: not a commit hash ({commit:?}); delete the file to resolve the revision again",
                path.display()
            );
        }
        Ok(Some(commit.to_string()))
    }

    /// `snapshots/<commit>`.
    pub fn snapshot(&self, commit: &str) -> PathBuf {
        self.root.join("snapshots").join(commit)
    }
}

/// The repo-relative paths (`unet/config.json`) of the readable files under a snapshot folder;
/// symlinks are followed, so a link whose blob is gone does not count.
pub fn list_files(snapshot: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![(snapshot.to_path_buf(), String::new(), 0usize)];
    while let Some((dir, prefix, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            let rel = format!("{prefix}{name}");
            let path = e.path();
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => {
                    out.insert(rel);
                }
                // repo trees are shallow; the bound keeps a symlink loop from running on
                Ok(m) if m.is_dir() && depth < 16 => {
                    stack.push((path, format!("{rel}/"), depth + 1))
                }
                _ => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_commits_and_listing() {
        let dir = tempfile::tempdir().unwrap();
        let repo = RepoRef::parse("org/m@v1").unwrap().unwrap();
        let c = RepoCache::new(dir.path(), &repo);
        assert_eq!(c.root, dir.path().join("models--org--m"));
        assert_eq!(c.commit_for("v1").unwrap(), None);
        let hash = "ab".repeat(20);
        std::fs::create_dir_all(c.root.join("refs")).unwrap();
        std::fs::write(c.ref_path("v1"), &hash).unwrap();
        assert_eq!(c.commit_for("v1").unwrap(), Some(hash.clone()));
        assert_eq!(
            c.commit_for(&"cd".repeat(20)).unwrap(),
            Some("cd".repeat(20))
        );
        std::fs::write(c.ref_path("bad"), "../../x").unwrap();
        let e = c.commit_for("bad").unwrap_err().to_string();
        assert!(
            e.contains("refs/bad") && e.contains("not a commit hash"),
            "{e}"
        );

        let snap = c.snapshot(&hash);
        std::fs::create_dir_all(snap.join("unet")).unwrap();
        std::fs::create_dir_all(c.root.join("blobs")).unwrap();
        std::fs::write(c.root.join("blobs/b1"), "{}").unwrap();
        std::os::unix::fs::symlink("../../../blobs/b1", snap.join("unet/config.json")).unwrap();
        std::os::unix::fs::symlink("../../blobs/gone", snap.join("model_index.json")).unwrap();
        let files: Vec<String> = list_files(&snap).into_iter().collect();
        assert_eq!(files, ["unet/config.json"]);
    }
}
