//! `generate --prompts FILE`: the prompt file (one prompt a line), and what the matrix writes
//! beside each prompt's images: one contact sheet per prompt and the index `prompts.csv`.
use super::common::slug;
use crate::fsutil::write_atomic;
use crate::imageio;
use anyhow::{anyhow, bail, Result};
use image::RgbImage;
use std::path::{Path, PathBuf};

/// The index file of a prompt matrix, in the output folder.
pub const INDEX: &str = "prompts.csv";

/// One prompt of a prompt file and its line number (1-based, counting every line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptLine {
    pub line: usize,
    pub text: String,
}

impl PromptLine {
    /// The stem of this prompt's files: line number and slug (`002-a-red-mug`), unique within
    /// a file since line numbers are.
    pub fn stem(&self) -> String {
        format!("{:03}-{}", self.line, slug(&self.text, 40))
    }
}

/// The prompts of a file's text: each line trimmed; blank lines and lines starting with `#`
/// skipped; a leading byte-order mark ignored.
pub fn parse(text: &str) -> Vec<PromptLine> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.lines()
        .enumerate()
        .map(|(i, l)| PromptLine {
            line: i + 1,
            text: l.trim().to_string(),
        })
        .filter(|p| !p.text.is_empty() && !p.text.starts_with('#'))
        .collect()
}

/// The prompts of `--prompts FILE`; a missing, unreadable, non-UTF-8 or prompt-less file is an
/// error naming it.
pub fn read(path: &Path) -> Result<Vec<PromptLine>> {
    let bytes = std::fs::read(path)
        .map_err(|e| anyhow!("--prompts {}: cannot read ({e})", path.display()))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        anyhow!(
            "--prompts {}: not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })?;
    let prompts = parse(&text);
    if prompts.is_empty() {
        bail!(
            "--prompts {}: no prompts (one a line; blank lines and lines starting with # are skipped)",
            path.display()
        );
    }
    Ok(prompts)
}

/// Refuses a prompt file that the index would overwrite (`--prompts out/prompts.csv`).
pub fn check_not_index(prompts: &Path, out_dir: &Path) -> Result<()> {
    let index = out_dir.join(INDEX);
    let canon = |p: &Path| std::fs::canonicalize(p).ok();
    if canon(&index).is_some() && canon(&index) == canon(prompts) {
        bail!(
            "--prompts {}: the index {} would overwrite it; choose another --out",
            prompts.display(),
            index.display()
        );
    }
    Ok(())
}

/// Writes the contact sheet of one prompt's images (all its batches, in order) as
/// `{stem}-sheet.png` in `dir`, with the prompt's parameters; returns its path.
pub fn write_sheet(
    dir: &Path,
    prompt: &PromptLine,
    images: &[RgbImage],
    params: &serde_json::Value,
) -> Result<PathBuf> {
    let path = dir.join(format!("{}-sheet.png", prompt.stem()));
    let cols = (images.len() as f64).sqrt().ceil() as usize;
    let mut p = params.clone();
    p["contact_sheet"] = images.len().into();
    p["num_images"] = images.len().into();
    imageio::save_with_params(&path, &imageio::contact_sheet(images, cols), &p)?;
    Ok(path)
}

/// The index `prompts.csv` (line, prompt, sheet, images: file names relative to the folder,
/// images separated by `;`), rewritten whole after every prompt, so that it lists every sheet
/// written so far even if a later prompt fails.
pub struct Index {
    dir: PathBuf,
    rows: Vec<[String; 4]>,
}

impl Index {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            rows: Vec::new(),
        }
    }

    /// Adds a prompt's row and rewrites the file.
    pub fn add(&mut self, prompt: &PromptLine, sheet: &Path, images: &[PathBuf]) -> Result<()> {
        let rel = |p: &Path| {
            p.strip_prefix(&self.dir)
                .unwrap_or(p)
                .to_string_lossy()
                .into_owned()
        };
        let names: Vec<String> = images.iter().map(|p| rel(p)).collect();
        self.rows.push([
            prompt.line.to_string(),
            prompt.text.clone(),
            rel(sheet),
            names.join(";"),
        ]);
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(["line", "prompt", "sheet", "images"])?;
        for r in &self.rows {
            w.write_record(r)?;
        }
        let bytes = w.into_inner().map_err(|e| anyhow!("{}", e.error()))?;
        write_atomic(&self.dir.join(INDEX), &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_numbered_and_comments_skipped() {
        let p =
            parse("\u{feff}# products\n\na red mug\r\n  # indented comment\n  a blue bottle  \n");
        let want = [(3, "a red mug"), (5, "a blue bottle")];
        let got: Vec<(usize, &str)> = p.iter().map(|p| (p.line, p.text.as_str())).collect();
        assert_eq!(got, want);
        assert_eq!(p[0].stem(), "003-a-red-mug");
        assert!(parse("# only\n\n  \n").is_empty());
    }
}
