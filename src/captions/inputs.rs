//! The images to caption and the `file_name` each gets in the CSV: relative to the folder given
//! (searched recursively), or the path as given for a file or a glob match.
use crate::data::captions::normalize_file_name;
use crate::imageio::{is_image, walk};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub path: PathBuf,
    pub file_name: String,
}

pub fn collect(inputs: &[String]) -> Result<Vec<Input>> {
    let mut out = Vec::new();
    for input in inputs {
        let path = Path::new(input);
        if path.is_dir() {
            let mut found = Vec::new();
            walk(path, &mut found)?;
            found.sort();
            for p in found {
                let rel = p.strip_prefix(path).expect("walked below the folder");
                out.push(Input {
                    file_name: normalize_file_name(&rel.to_string_lossy()),
                    path: p,
                });
            }
        } else if path.is_file() {
            out.push(Input {
                path: path.to_path_buf(),
                file_name: normalize_file_name(input),
            });
        } else if input.contains(['*', '?', '[']) {
            let mut found: Vec<PathBuf> = glob::glob(input)
                .with_context(|| format!("{input}: invalid glob pattern"))?
                .filter_map(|r| r.ok())
                .filter(|p| p.is_file() && is_image(p))
                .collect();
            if found.is_empty() {
                bail!("{input}: the pattern matches no image");
            }
            found.sort();
            out.extend(found.into_iter().map(|p| Input {
                file_name: normalize_file_name(&p.to_string_lossy()),
                path: p,
            }));
        } else {
            bail!("{input}: no such file or folder");
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|i| seen.insert(i.file_name.clone()));
    Ok(out)
}
