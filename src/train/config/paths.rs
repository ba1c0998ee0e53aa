//! Path values of the config: made absolute against the folder they are relative to (the
//! config file's for the file, the current folder for `--set`), with `.` and `..` removed; a
//! `model.base` Hugging Face repo id stays an id, written `hf://ORG/NAME`. Which keys hold paths
//! comes from the schema ([`super::keys::path_keys`]).
use super::keys::{self, resolve_key};
use crate::weights::hub;
use anyhow::Result;
use std::path::{Component, Path, PathBuf};
use toml::{Table, Value};

/// `std::path::absolute` plus lexical removal of `.` and `..`.
pub(super) fn absolute(p: &Path) -> Result<PathBuf> {
    let p = if p.as_os_str().is_empty() {
        Path::new(".")
    } else {
        p
    };
    let abs = std::path::absolute(p)?;
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

/// Whether a `model.base` value names a Hugging Face repo rather than a path: `hf://ORG/NAME`
/// always; `ORG/NAME[@REV]` when it is not an existing path against `base` but the repo is in the
/// hub cache (an uncached id must be written with `hf://`, since `models/sd` is as much a
/// relative path as an id).
fn is_model_repo_id(s: &str, base: &Path) -> bool {
    if s.starts_with(hub::HF_PREFIX) {
        return true;
    }
    let p = Path::new(s);
    if p.is_absolute() || base.join(p).symlink_metadata().is_ok() {
        return false;
    }
    match hub::RepoRef::parse(s) {
        Ok(Some(repo)) => hub::HubEnv::from_env()
            .cache
            .join(repo.folder_name())
            .is_dir(),
        _ => false,
    }
}

/// Makes a path value absolute against `base`; a `model.base` repo id becomes `hf://ORG/NAME`
/// (unambiguous wherever the config is loaded from).
pub(super) fn resolve_path_value(v: &mut Value, base: &Path, key: &str) {
    match v {
        Value::String(s) if key == "model.base" && s.starts_with(hub::HF_PREFIX) => {}
        Value::String(s) if key == "model.base" && is_model_repo_id(s, base) => {
            *s = format!("{}{s}", hub::HF_PREFIX);
        }
        Value::String(s) => {
            let p = Path::new(s.as_str());
            let joined = if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            };
            if let Ok(abs) = absolute(&joined) {
                *s = abs.display().to_string();
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|i| resolve_path_value(i, base, key)),
        _ => {}
    }
}

/// Makes the file's relative paths absolute (sweep lists of path keys included).
pub(super) fn resolve_table_paths(table: &mut Table, base: &Path) {
    for key in keys::path_keys() {
        let slot = match key.split_once('.') {
            Some((section, name)) => table
                .get_mut(section)
                .and_then(Value::as_table_mut)
                .and_then(|t| t.get_mut(name)),
            None => table.get_mut(key.as_str()),
        };
        if let Some(v) = slot {
            resolve_path_value(v, base, key);
        }
    }
    if let Some(Value::Table(sweep)) = table.get_mut("sweep") {
        resolve_sweep_paths(sweep, "", base);
    }
}

/// The sweep lists of path keys, written `"data.images" = [..]` or `data.images = [..]` (a
/// nested table).
fn resolve_sweep_paths(sweep: &mut Table, prefix: &str, base: &Path) {
    for (k, v) in sweep.iter_mut() {
        let key = format!("{prefix}{k}");
        match v {
            Value::Table(t) => resolve_sweep_paths(t, &format!("{key}."), base),
            _ => {
                if let Some(full) = resolve_key(&key).filter(|full| keys::is_path_key(full)) {
                    resolve_path_value(v, base, &full);
                }
            }
        }
    }
}
