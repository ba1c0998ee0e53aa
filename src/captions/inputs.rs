//! The images to caption and the `file_name` each gets in the CSV: relative to the folder given
//! (searched recursively), or the path as given for a file or a glob match. Paths are kept
//! exactly; a file whose name cannot be written to the UTF-8 CSV, or whose `file_name` another
//! file already has, is rejected with its reason instead of being mangled or merged.
use crate::data::captions::normalize_file_name;
use crate::imageio::{escaped, is_glob, is_image, walk};
use anyhow::{bail, Context, Result};
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// An image to caption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub path: PathBuf,
    pub file_name: String,
}

/// An image that is not captioned, and why; listed in the errors CSV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub path: PathBuf,
    /// The name as it would be in the CSV, non-UTF-8 bytes shown as `\xNN`.
    pub shown: String,
    pub reason: String,
}

/// What [`collect`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Collected {
    pub inputs: Vec<Input>,
    pub rejected: Vec<Rejected>,
    /// Folders not searched again (symlink loops, second links), see `imageio::walk`.
    pub repeated: Vec<PathBuf>,
}

/// Why a name that is not UTF-8 is rejected.
pub const NOT_UTF8: &str = "file name is not valid UTF-8 (bytes shown as \\xNN); the captions \
                            CSV is UTF-8 text, so this image cannot be listed in it: rename it";

/// Collects the images of `inputs` (files, folders, glob patterns), in order, each once.
pub fn collect<S: AsRef<OsStr>>(inputs: &[S]) -> Result<Collected> {
    let mut out = Collected::default();
    // Each image with its file_name, or the escaped name that is not UTF-8.
    let mut named: Vec<(PathBuf, Result<String, String>)> = Vec::new();
    let name_of = |p: &Path| {
        p.to_str()
            .map(normalize_file_name)
            .ok_or_else(|| escaped(p))
    };
    for input in inputs {
        let input = input.as_ref();
        let path = Path::new(input);
        if path.is_dir() {
            let w = walk(path)?;
            out.repeated.extend(w.repeated);
            for p in w.images {
                let rel = p.strip_prefix(path).expect("walked below the folder");
                let name = name_of(rel);
                named.push((p, name));
            }
        } else if path.is_file() {
            named.push((path.to_path_buf(), name_of(path)));
        } else if let Some(pattern) = input.to_str().filter(|s| is_glob(s)) {
            let mut found: Vec<PathBuf> = glob::glob(pattern)
                .with_context(|| format!("{pattern}: invalid glob pattern"))?
                .filter_map(|r| r.ok())
                .filter(|p| p.is_file() && is_image(p))
                .collect();
            if found.is_empty() {
                bail!("{pattern}: the pattern matches no image");
            }
            found.sort();
            for p in found {
                let name = name_of(&p);
                named.push((p, name));
            }
        } else {
            bail!("{}: no such file or folder", escaped(path));
        }
    }
    // file_name -> index in out.inputs
    let mut taken: HashMap<String, usize> = HashMap::new();
    let mut refused = HashSet::new();
    for (path, name) in named {
        let file_name = match name {
            Ok(f) => f,
            Err(shown) => {
                if refused.insert(path.clone()) {
                    out.rejected.push(Rejected {
                        shown,
                        path,
                        reason: NOT_UTF8.into(),
                    });
                }
                continue;
            }
        };
        if let Some(&i) = taken.get(&file_name) {
            let first = &out.inputs[i].path;
            if !same_file(first, &path) && refused.insert(path.clone()) {
                out.rejected.push(Rejected {
                    reason: format!(
                        "file_name '{file_name}' is already used by {}; caption these inputs \
                         into separate CSVs",
                        escaped(first)
                    ),
                    shown: file_name,
                    path,
                });
            }
            continue;
        }
        taken.insert(file_name.clone(), out.inputs.len());
        out.inputs.push(Input { path, file_name });
    }
    Ok(out)
}

/// The same file given twice (equal paths, or the same device and inode).
fn same_file(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn non_utf8_and_colliding_names_are_rejected_not_merged() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        for d in [&a, &b] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::write(a.join("x.png"), b"a").unwrap();
        std::fs::write(b.join("x.png"), b"b").unwrap();
        std::fs::write(a.join(OsStr::from_bytes(b"caf\xe9.png")), b"1").unwrap();
        std::fs::write(a.join(OsStr::from_bytes(b"caf\xe8.png")), b"2").unwrap();
        let got = collect(&[a.as_os_str(), b.as_os_str(), a.as_os_str()]).unwrap();
        assert_eq!(
            got.inputs,
            vec![Input {
                path: a.join("x.png"),
                file_name: "x.png".into()
            }],
            "a folder given twice is captioned once"
        );
        let shown: Vec<&str> = got.rejected.iter().map(|r| r.shown.as_str()).collect();
        assert_eq!(shown, ["caf\\xE8.png", "caf\\xE9.png", "x.png"]);
        assert_eq!(got.rejected[0].reason, NOT_UTF8);
        assert_eq!(
            got.rejected[0].path,
            a.join(OsStr::from_bytes(b"caf\xe8.png"))
        );
        assert!(
            got.rejected[2].reason.contains("already used by"),
            "{got:?}"
        );
        assert_eq!(got.rejected[2].path, b.join("x.png"));
    }
}
