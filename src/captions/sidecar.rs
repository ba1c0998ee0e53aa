//! kohya-style caption sidecars (`photo.txt` next to `photo.jpg`), written without destroying
//! captions studioize did not write: an existing `.txt` that already holds the caption is left
//! as it is; one that holds anything else (a hand-written caption), and any symlink, is kept
//! unless the caller allows overwriting. Writes go through a temporary file and a rename, so a
//! symlink is replaced by a file, never written through.
use crate::fsutil::write_atomic;
use anyhow::{anyhow, Result};
use std::path::{Path, PathBuf};

/// What [`write`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The sidecar was created or replaced.
    Written,
    /// It already held this caption.
    Unchanged,
    /// Something else is there (another caption, a symlink, a folder) and was left alone.
    Kept,
}

/// The sidecar of an image: its path with the extension `txt`.
pub fn path(image: &Path) -> PathBuf {
    image.with_extension("txt")
}

/// Writes `text` (and a newline) to the sidecar of `image`. An existing regular file whose
/// trimmed content is `text` is [`Outcome::Unchanged`]; any other existing entry is replaced
/// only when `overwrite` is set, else [`Outcome::Kept`].
pub fn write(image: &Path, text: &str, overwrite: bool) -> Result<Outcome> {
    let txt = path(image);
    match std::fs::symlink_metadata(&txt) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(anyhow!(
                "{}: cannot inspect caption sidecar ({e})",
                txt.display()
            ))
        }
        Ok(meta) => {
            let same = meta.file_type().is_file()
                && std::fs::read_to_string(&txt).is_ok_and(|old| old.trim() == text.trim());
            if same {
                return Ok(Outcome::Unchanged);
            }
            if !overwrite {
                return Ok(Outcome::Kept);
            }
        }
    }
    write_atomic(&txt, format!("{text}\n").as_bytes())
        .map_err(|e| anyhow!("cannot write caption sidecar: {e:#}"))?;
    Ok(Outcome::Written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_written_and_symlinked_sidecars_are_kept_unless_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("a.png");
        let txt = dir.path().join("a.txt");
        assert_eq!(write(&img, "a mug", false).unwrap(), Outcome::Written);
        assert_eq!(std::fs::read_to_string(&txt).unwrap(), "a mug\n");
        assert_eq!(write(&img, "a mug", false).unwrap(), Outcome::Unchanged);
        std::fs::write(&txt, "my own words").unwrap();
        assert_eq!(write(&img, "a mug", false).unwrap(), Outcome::Kept);
        assert_eq!(std::fs::read_to_string(&txt).unwrap(), "my own words");
        assert_eq!(write(&img, "a mug", true).unwrap(), Outcome::Written);
        assert_eq!(std::fs::read_to_string(&txt).unwrap(), "a mug\n");

        // A symlink is never written through, even when it points at the same words.
        let target = dir.path().join("elsewhere.txt");
        std::fs::write(&target, "a mug\n").unwrap();
        std::fs::remove_file(&txt).unwrap();
        std::os::unix::fs::symlink(&target, &txt).unwrap();
        assert_eq!(write(&img, "a cup", false).unwrap(), Outcome::Kept);
        assert_eq!(write(&img, "a mug", false).unwrap(), Outcome::Kept);
        assert_eq!(write(&img, "a cup", true).unwrap(), Outcome::Written);
        assert!(!std::fs::symlink_metadata(&txt)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(&txt).unwrap(), "a cup\n");
        assert_eq!(
            std::fs::read_to_string(&target).unwrap(),
            "a mug\n",
            "target untouched"
        );
    }
}
