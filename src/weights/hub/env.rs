//! The Hugging Face environment exactly as `huggingface_hub.constants` reads it:
//!
//! - `HF_HOME` = `$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`;
//! - the hub cache = `$HF_HUB_CACHE`, else the legacy `$HUGGINGFACE_HUB_CACHE`, else
//!   `HF_HOME/hub`; `~` and `$VAR` expanded (`expanduser` + `expandvars`);
//! - offline when `HF_HUB_OFFLINE` (or, when that is unset or empty, `TRANSFORMERS_OFFLINE`) is
//!   `1`, `ON`, `YES` or `TRUE` in any case;
//! - the endpoint = `$HF_ENDPOINT` (trailing `/` removed), else `https://huggingface.co`;
//! - the token = `$HF_TOKEN`, else the legacy `$HUGGING_FACE_HUB_TOKEN`, else the file
//!   `$HF_TOKEN_PATH` (default `HF_HOME/token`); whitespace-trimmed, empty means none.
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The default endpoint of `huggingface_hub`.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// `ENV_VARS_TRUE_VALUES`, compared upper-cased.
const TRUE_VALUES: [&str; 4] = ["1", "ON", "YES", "TRUE"];

/// Where the cache is and whether and how the hub may be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubEnv {
    /// The hub cache folder (`.../hub`, holding `models--ORG--NAME`).
    pub cache: PathBuf,
    /// `HF_HUB_OFFLINE`: never touch the network.
    pub offline: bool,
    /// The hub's base URL, without a trailing `/`.
    pub endpoint: String,
    /// The `Authorization: Bearer` token, if any.
    pub token: Option<String>,
}

impl HubEnv {
    /// Reads the process environment (and the token file).
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var_os(k))
    }

    /// Reads the variables through `get` (the token file, if used, from disk).
    pub fn from_lookup(get: impl Fn(&str) -> Option<OsString>) -> Self {
        let home = get("HOME").map(PathBuf::from);
        let expand = |v: OsString| expand(v, &get, home.as_deref());
        let default_home = home
            .clone()
            .unwrap_or_else(|| PathBuf::from("~"))
            .join(".cache");
        let hf_home = match get("HF_HOME") {
            Some(v) => expand(v),
            None => {
                let xdg = get("XDG_CACHE_HOME")
                    .map(PathBuf::from)
                    .unwrap_or(default_home);
                expand(xdg.join("huggingface").into_os_string())
            }
        };
        let legacy = get("HUGGINGFACE_HUB_CACHE").unwrap_or_else(|| hf_home.join("hub").into());
        let cache = expand(get("HF_HUB_CACHE").unwrap_or(legacy));

        let offline_value = get("HF_HUB_OFFLINE")
            .filter(|v| !v.is_empty())
            .or_else(|| get("TRANSFORMERS_OFFLINE"));
        let offline = offline_value.is_some_and(|v| is_true(&v.to_string_lossy()));

        let endpoint = get("HF_ENDPOINT")
            .map(|v| v.to_string_lossy().trim_end_matches('/').to_string())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());

        let from_env = get("HF_TOKEN")
            .filter(|v| !v.is_empty())
            .or_else(|| get("HUGGING_FACE_HUB_TOKEN"))
            .map(|v| v.to_string_lossy().into_owned());
        let token = match from_env {
            Some(t) => clean_token(&t),
            None => {
                let path = match get("HF_TOKEN_PATH") {
                    Some(v) => expand(v),
                    None => hf_home.join("token"),
                };
                std::fs::read_to_string(path)
                    .ok()
                    .and_then(|t| clean_token(&t))
            }
        };
        Self {
            cache,
            offline,
            endpoint,
            token,
        }
    }
}

/// `huggingface_hub`'s `_is_true`.
pub fn is_true(v: &str) -> bool {
    TRUE_VALUES.contains(&v.to_ascii_uppercase().as_str())
}

fn clean_token(t: &str) -> Option<String> {
    let t = t.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// `os.path.expandvars(os.path.expanduser(v))`: a leading `~` or `~/` becomes `$HOME`, then
/// `$NAME` and `${NAME}` become the variable's value where it is set (and stay as written where
/// not). Values that are not UTF-8 are used as they are.
fn expand(v: OsString, get: &impl Fn(&str) -> Option<OsString>, home: Option<&Path>) -> PathBuf {
    let Some(s) = v.to_str() else {
        return PathBuf::from(v);
    };
    let s = match (s.strip_prefix('~'), home) {
        (Some(rest), Some(h)) if rest.is_empty() || rest.starts_with('/') => {
            format!("{}{rest}", h.display())
        }
        _ => s.to_string(),
    };
    PathBuf::from(expand_vars(&s, get))
}

fn expand_vars(s: &str, get: &impl Fn(&str) -> Option<OsString>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
            match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        match get(name).filter(|_| !name.is_empty()) {
            Some(v) => {
                out.push_str(&v.to_string_lossy());
                rest = &after[consumed..];
            }
            None => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> HubEnv {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        HubEnv::from_lookup(move |k| map.get(k).map(OsString::from))
    }

    #[test]
    fn cache_folder_precedence() {
        let base = [("HOME", "/home/u")];
        assert_eq!(
            env(&base).cache,
            Path::new("/home/u/.cache/huggingface/hub")
        );
        let xdg = [("HOME", "/home/u"), ("XDG_CACHE_HOME", "/xdg")];
        assert_eq!(env(&xdg).cache, Path::new("/xdg/huggingface/hub"));
        let home = [
            ("HOME", "/home/u"),
            ("XDG_CACHE_HOME", "/xdg"),
            ("HF_HOME", "~/hf"),
        ];
        assert_eq!(env(&home).cache, Path::new("/home/u/hf/hub"));
        let legacy = [("HF_HOME", "/hf"), ("HUGGINGFACE_HUB_CACHE", "/legacy")];
        assert_eq!(env(&legacy).cache, Path::new("/legacy"));
        let hub = [
            ("HF_HOME", "/hf"),
            ("HUGGINGFACE_HUB_CACHE", "/legacy"),
            ("HF_HUB_CACHE", "$DATA/${WHO}/hub$NOPE"),
            ("DATA", "/data"),
            ("WHO", "me"),
        ];
        assert_eq!(env(&hub).cache, Path::new("/data/me/hub$NOPE"));
    }

    #[test]
    fn offline_values_as_huggingface_hub_parses_them() {
        for (v, want) in [("1", true), ("on", true), ("Yes", true), ("TRUE", true)] {
            assert_eq!(env(&[("HF_HUB_OFFLINE", v)]).offline, want, "{v}");
        }
        for v in ["0", "false", "no", "2", ""] {
            assert!(!env(&[("HF_HUB_OFFLINE", v)]).offline, "{v}");
        }
        assert!(env(&[("TRANSFORMERS_OFFLINE", "1")]).offline);
        assert!(env(&[("HF_HUB_OFFLINE", ""), ("TRANSFORMERS_OFFLINE", "1")]).offline);
        assert!(!env(&[("HF_HUB_OFFLINE", "0"), ("TRANSFORMERS_OFFLINE", "1")]).offline);
    }

    #[test]
    fn endpoint_and_token() {
        let e = env(&[("HOME", "/nonexistent-home")]);
        assert_eq!(
            (e.endpoint.as_str(), e.token.as_deref()),
            (DEFAULT_ENDPOINT, None)
        );
        let e = env(&[
            ("HF_ENDPOINT", "http://127.0.0.1:9/"),
            ("HF_TOKEN", " hf_x\n"),
        ]);
        assert_eq!(
            (e.endpoint.as_str(), e.token.as_deref()),
            ("http://127.0.0.1:9", Some("hf_x"))
        );
        let e = env(&[("HF_TOKEN", ""), ("HUGGING_FACE_HUB_TOKEN", "legacy")]);
        assert_eq!(e.token.as_deref(), Some("legacy"));

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "from-file\n").unwrap();
        let home = dir.path().to_str().unwrap();
        assert_eq!(
            env(&[("HF_HOME", home)]).token.as_deref(),
            Some("from-file")
        );
        std::fs::write(dir.path().join("other"), "  \n").unwrap();
        let path = dir.path().join("other");
        let e = env(&[("HF_HOME", home), ("HF_TOKEN_PATH", path.to_str().unwrap())]);
        assert_eq!(e.token, None);
    }
}
