//! Hugging Face model repo ids, validated as `huggingface_hub.utils.validate_repo_id` does
//! (`name` or `namespace/name`, ASCII letters, digits, `-`, `_`, `.`, at most 96 characters a
//! part, starting and ending with a letter, digit or `_`, no `--` or `..`, not ending in `.git`),
//! with an optional `@revision` (branch, tag or 40-hex commit; `main` by default) and an
//! optional `hf://` prefix that marks the string as an id even where it could be a path.
use anyhow::{bail, Result};
use std::fmt;

/// The revision used when none is given, as in `huggingface_hub`.
pub const DEFAULT_REVISION: &str = "main";

/// The prefix of `huggingface_hub`'s file-system URLs; `hf://org/name` is always a repo id.
pub const HF_PREFIX: &str = "hf://";

/// Extensions of weight files: a string ending in one names a file, not a repo.
const FILE_EXTS: [&str; 6] = [".safetensors", ".ckpt", ".bin", ".pt", ".pth", ".json"];

/// A model repo on the Hugging Face Hub at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoRef {
    /// `namespace/name` or `name`.
    pub id: String,
    /// Branch, tag or commit hash.
    pub revision: String,
}

impl RepoRef {
    /// Parses `id`, `id@revision`, `hf://id` or `hf://id@revision`. `Ok(None)`: the string is
    /// not an id (e.g. a path: `./x`, `a/b/c`, `model.safetensors`). An error: it is marked as
    /// an id (`hf://`) or has a valid id, but is malformed (empty or unsafe revision).
    pub fn parse(s: &str) -> Result<Option<Self>> {
        let (explicit, rest) = match s.strip_prefix(HF_PREFIX) {
            Some(r) => (true, r),
            None => (false, s),
        };
        let (id, revision) = match rest.split_once('@') {
            Some((id, rev)) => (id, Some(rev)),
            None => (rest, None),
        };
        if !is_valid_id(id) || (!explicit && names_a_file(id)) {
            if explicit {
                bail!("{s}: not a valid Hugging Face repo id (expected hf://namespace/name[@revision])");
            }
            return Ok(None);
        }
        let revision = match revision {
            None => DEFAULT_REVISION.to_string(),
            Some(r) => {
                check_revision(r).map_err(|e| anyhow::anyhow!("{s}: bad revision '{r}' ({e})"))?;
                r.to_string()
            }
        };
        Ok(Some(Self {
            id: id.to_string(),
            revision,
        }))
    }

    /// The repo's folder in the cache: `models--namespace--name`.
    pub fn folder_name(&self) -> String {
        let mut parts = vec!["models"];
        parts.extend(self.id.split('/'));
        parts.join("--")
    }

    /// Whether the revision is a full commit hash (used as is, without `refs/`).
    pub fn revision_is_commit(&self) -> bool {
        is_commit_hash(&self.revision)
    }
}

impl fmt::Display for RepoRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.id, self.revision)
    }
}

/// `huggingface_hub`'s `REGEX_COMMIT_HASH`: 40 lowercase hex digits.
pub fn is_commit_hash(s: &str) -> bool {
    s.len() == 40
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_valid_part(p: &str) -> bool {
    let b = p.as_bytes();
    !b.is_empty()
        && b.len() <= 96
        && b.iter().all(|&c| is_word(c) || c == b'-' || c == b'.')
        && is_word(b[0])
        && is_word(b[b.len() - 1])
}

/// `validate_repo_id`'s rules.
fn is_valid_id(id: &str) -> bool {
    let parts: Vec<&str> = id.split('/').collect();
    parts.len() <= 2
        && parts.iter().all(|p| is_valid_part(p))
        && !id.contains("--")
        && !id.contains("..")
        && !id.ends_with(".git")
}

fn names_a_file(id: &str) -> bool {
    let lower = id.to_ascii_lowercase();
    FILE_EXTS.iter().any(|e| lower.ends_with(e))
}

/// A revision is a git ref name or a commit: it becomes a path under `refs/` and part of a URL,
/// so anything that could leave that folder or break the URL is refused.
fn check_revision(r: &str) -> Result<()> {
    if r.is_empty() {
        bail!("empty");
    }
    if r.starts_with('/') || r.ends_with('/') || r.contains("//") {
        bail!("a '/' at the start or end, or doubled");
    }
    if r.split('/')
        .any(|c| c == "." || c == ".." || c.starts_with('.'))
        || r.contains("..")
    {
        bail!("'.' components or '..'");
    }
    if let Some(c) = r
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "~^:?*[\\@#%".contains(*c))
    {
        bail!("the character {c:?} is not allowed in a git ref");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Option<RepoRef> {
        RepoRef::parse(s).unwrap()
    }

    #[test]
    fn ids_with_and_without_namespace_and_revision() {
        let r = parse("CompVis/stable-diffusion-v1-4").unwrap();
        assert_eq!(
            (r.id.as_str(), r.revision.as_str()),
            ("CompVis/stable-diffusion-v1-4", "main")
        );
        assert_eq!(r.folder_name(), "models--CompVis--stable-diffusion-v1-4");
        let r = parse("gpt2").unwrap();
        assert_eq!(
            (r.id.as_str(), r.folder_name().as_str()),
            ("gpt2", "models--gpt2")
        );
        let r = parse("Salesforce/blip-image-captioning-large@v1.0").unwrap();
        assert_eq!(r.revision, "v1.0");
        assert!(!r.revision_is_commit());
        let c = "0123456789abcdef0123456789abcdef01234567";
        let r = parse(&format!("org/name@{c}")).unwrap();
        assert!(r.revision_is_commit());
        assert_eq!(parse("org/name@refs/pr/1").unwrap().revision, "refs/pr/1");
        assert_eq!(
            parse("hf://org/m.safetensors").unwrap().id,
            "org/m.safetensors"
        );
        assert_eq!(r.to_string(), format!("org/name@{c}"));
    }

    #[test]
    fn paths_are_not_ids() {
        for s in [
            "./models/sd",
            "../models/sd",
            "/abs/path",
            "a/b/c",
            "models/sd/",
            "model.safetensors",
            "org/model.ckpt",
            "~/models",
            ".hidden",
            "foo--bar",
            "foo..bar",
            "name.git",
            "-dash",
            "trailing.",
            "",
            "with space",
            "café",
        ] {
            assert_eq!(parse(s), None, "{s}");
        }
        let long = "a".repeat(97);
        assert_eq!(parse(&long), None);
        assert!(parse(&"a".repeat(96)).is_some());
    }

    #[test]
    fn bad_revisions_and_explicit_ids_are_errors() {
        for s in [
            "org/name@",
            "org/name@../../x",
            "org/name@a b",
            "org/name@/main",
            "org/name@x:y",
            "hf://a/b/c",
            "hf://",
        ] {
            let e = RepoRef::parse(s).unwrap_err().to_string();
            assert!(e.contains(s), "{e}");
        }
    }

    #[test]
    fn commit_hashes() {
        assert!(is_commit_hash("0123456789abcdef0123456789abcdef01234567"));
        assert!(!is_commit_hash("0123456789ABCDEF0123456789abcdef01234567"));
        assert!(!is_commit_hash("0123456789abcdef"));
    }
}
