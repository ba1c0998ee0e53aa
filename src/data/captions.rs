//! Caption sources: a `file_name,text` CSV (the Hugging Face ImageFolder `metadata.csv`
//! convention: `file_name` relative to the images folder, extra columns ignored) or kohya-style
//! sidecars (`photo.txt` next to `photo.jpg`).
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;

/// One row of a captions CSV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptionRow {
    /// Normalised relative path (`/`-separated, no leading `./`).
    pub file_name: String,
    pub text: String,
    /// 1-based line of the row in the file (the header is line 1).
    pub line: u64,
}

/// Normalises a relative file name: `\` to `/`, no `./` components, no leading `/`.
pub fn normalize_file_name(name: &str) -> String {
    name.trim()
        .replace('\\', "/")
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// Reads a captions CSV with a header naming (at least) `file_name` and `text`.
pub fn read_csv(path: &Path) -> Result<Vec<CaptionRow>> {
    let file = path.display();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("{file}: cannot open captions file"))?;
    let headers = reader
        .headers()
        .with_context(|| format!("{file}: cannot read the CSV header"))?
        .clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| {
                let found: Vec<&str> = headers.iter().collect();
                anyhow!(
                    "{file}: no '{name}' column in the header (found: {})",
                    found.join(", ")
                )
            })
    };
    let fcol = column("file_name")?;
    let tcol = column("text")?;
    let mut rows = Vec::new();
    for rec in reader.records() {
        let rec = rec.with_context(|| format!("{file}: malformed CSV"))?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let (Some(f), Some(t)) = (rec.get(fcol), rec.get(tcol)) else {
            if rec.iter().all(|f| f.trim().is_empty()) {
                continue;
            }
            bail!("{file}: line {line}: missing 'file_name' or 'text' field");
        };
        let file_name = normalize_file_name(f);
        if file_name.is_empty() {
            bail!("{file}: line {line}: empty file_name");
        }
        rows.push(CaptionRow {
            file_name,
            text: t.trim().to_string(),
            line,
        });
    }
    Ok(rows)
}

/// The sidecar caption of an image (`photo.txt` for `photo.jpg`), if that file exists.
pub fn read_sidecar(image: &Path) -> Result<Option<String>> {
    let txt = image.with_extension("txt");
    if !txt.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&txt)
        .with_context(|| format!("{}: cannot read caption", txt.display()))?;
    Ok(Some(text.trim().to_string()))
}
