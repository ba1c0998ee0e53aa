//! Where `caption` writes: the captions CSV, its errors CSV beside it, and the lock file that
//! keeps a second process off them (`OUT.lock`, e.g. `captions.csv.lock`). The two CSVs must be
//! different files: a check that sees through `.`/`..`, symlinks and hard links, and works
//! when either file does not exist yet.
use crate::fsutil::Lock;
use anyhow::{bail, Result};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// The default errors CSV of `out`: `captions.csv` -> `captions.errors.csv`.
pub fn default_errors_path(out: &Path) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "captions".into());
    out.with_file_name(format!("{stem}.errors.csv"))
}

/// The lock file of an output file: `X.csv` -> `X.csv.lock`, beside it.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "captions".into());
    name.push(".lock");
    path.with_file_name(name)
}

/// Takes the lock of `path` (see [`lock_path`]), or fails naming the process that holds it.
pub fn lock(path: &Path, what: &str) -> Result<Lock> {
    Lock::acquire(&lock_path(path), &format!("{what} {}", path.display()))
}

/// `path` made absolute with symlinks resolved as far as it exists: the longest existing
/// ancestor is canonicalised, a dangling symlink is replaced by its target, and the `.` / `..`
/// of the part that does not exist yet are applied to the text.
pub fn resolve(path: &Path) -> PathBuf {
    fn rec(path: &Path, links: usize) -> PathBuf {
        if let Ok(p) = path.canonicalize() {
            return p;
        }
        if links < 40 {
            if let Ok(target) = std::fs::read_link(path) {
                let base = path.parent().unwrap_or(Path::new("/"));
                return rec(&lexical(&base.join(target)), links + 1);
            }
        }
        match (path.parent(), path.file_name()) {
            (Some(parent), Some(name)) => rec(parent, links).join(name),
            _ => lexical(path),
        }
    }
    let abs = std::env::current_dir()
        .map(|d| d.join(path))
        .unwrap_or_else(|_| path.to_path_buf());
    rec(&lexical(&abs), 0)
}

/// `.` dropped and `..` applied to the text of a path.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// Whether `a` and `b` are the same file: equal once resolved, or, when both exist, the same
/// device and inode (hard links).
pub fn same_file(a: &Path, b: &Path) -> bool {
    if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
        if x.dev() == y.dev() && x.ino() == y.ino() {
            return true;
        }
    }
    resolve(a) == resolve(b)
}

/// Refuses an errors CSV that is the captions CSV (it would replace the captions).
pub fn check_distinct(out: &Path, errors: &Path) -> Result<()> {
    if same_file(out, errors) {
        bail!(
            "--errors {} is the same file as --out {}: the error list would replace the \
             captions; give another --errors path",
            errors.display(),
            out.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_paths_are_found_through_dots_links_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("sub")).unwrap();
        // Neither exists yet.
        assert!(same_file(&d.join("c.csv"), &d.join("sub/../c.csv")));
        assert!(same_file(&d.join("c.csv"), &d.join("./sub/.././c.csv")));
        assert!(!same_file(&d.join("c.csv"), &d.join("sub/c.csv")));
        // A symlinked folder, one side existing.
        std::os::unix::fs::symlink(d.join("sub"), d.join("link")).unwrap();
        std::fs::write(d.join("sub/c.csv"), "x").unwrap();
        assert!(same_file(&d.join("sub/c.csv"), &d.join("link/c.csv")));
        assert!(same_file(&d.join("sub/new.csv"), &d.join("link/new.csv")));
        // A dangling symlink to the other name.
        std::os::unix::fs::symlink("target.csv", d.join("dangling.csv")).unwrap();
        assert!(same_file(&d.join("dangling.csv"), &d.join("target.csv")));
        // Hard links.
        std::fs::hard_link(d.join("sub/c.csv"), d.join("hard.csv")).unwrap();
        assert!(same_file(&d.join("hard.csv"), &d.join("sub/c.csv")));
        assert!(check_distinct(&d.join("hard.csv"), &d.join("sub/c.csv")).is_err());
        assert!(check_distinct(&d.join("a.csv"), &d.join("a.errors.csv")).is_ok());
    }

    #[test]
    fn names_beside_the_output() {
        let out = Path::new("out/captions.csv");
        assert_eq!(lock_path(out), Path::new("out/captions.csv.lock"));
        assert_eq!(
            default_errors_path(out),
            Path::new("out/captions.errors.csv")
        );
    }
}
