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

/// The message for an unclosed quote, after `file: line N: `.
pub const UNCLOSED: &str = "a quoted field opened here is never closed (unbalanced '\"')";

/// The UTF-8 byte order mark some editors (Excel, Notepad) put at the start of a CSV.
pub const BOM: &str = "\u{feff}";

/// `s` with the characters a terminal does not show (control characters, the byte order mark,
/// zero-width and direction marks, whitespace other than a plain space) written as escapes
/// (`\u{feff}`, `\t`), for messages that quote file contents.
pub fn show_invisible(s: &str) -> String {
    let invisible = |c: char| {
        c.is_control()
            || (c.is_whitespace() && c != ' ')
            || matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}' | '\u{feff}')
    };
    s.chars()
        .map(|c| {
            if invisible(c) {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Where a quoted field that is never closed starts: its 1-based line and the byte offset of
/// the line start. `None` when every quote is balanced. Quotes count as the `csv` crate reads
/// them (RFC 4180: a quote opens a field only at its start, `""` inside is a literal quote),
/// which reads an unclosed quote silently to the end of the file.
pub fn unclosed_quote(bytes: &[u8]) -> Option<(u64, usize)> {
    #[derive(PartialEq)]
    enum S {
        FieldStart,
        Unquoted,
        Quoted,
        QuoteInQuoted,
    }
    let (mut state, mut line, mut line_start) = (S::FieldStart, 1u64, 0usize);
    let mut open = (1u64, 0usize);
    for (i, &b) in bytes.iter().enumerate() {
        state = match (state, b) {
            (S::FieldStart, b'"') => {
                open = (line, line_start);
                S::Quoted
            }
            (S::Quoted, b'"') => S::QuoteInQuoted,
            (S::QuoteInQuoted, b'"') => S::Quoted,
            (S::Quoted, _) => S::Quoted,
            // The csv crate ends a record at `\r` as well as `\n`.
            (_, b',' | b'\n' | b'\r') => S::FieldStart,
            (_, _) => S::Unquoted,
        };
        if b == b'\n' {
            line += 1;
            line_start = i + 1;
        }
    }
    (state == S::Quoted).then_some(open)
}

/// The bytes of a CSV file, ready for the `csv` crate: a leading byte order mark removed and an
/// unclosed quote refused (naming the file and the line where it opens).
pub fn read_csv_bytes(path: &Path) -> Result<Vec<u8>> {
    let file = path.display();
    let mut bytes = std::fs::read(path).map_err(|e| anyhow!("{file}: cannot read ({e})"))?;
    if bytes.starts_with(BOM.as_bytes()) {
        bytes.drain(..BOM.len());
    }
    if let Some((line, _)) = unclosed_quote(&bytes) {
        bail!("{file}: line {line}: {UNCLOSED}");
    }
    Ok(bytes)
}

/// Reads a captions CSV with a header naming (at least) `file_name` and `text`. A leading UTF-8
/// byte order mark is accepted; an unbalanced quote is an error naming its line.
pub fn read_csv(path: &Path) -> Result<Vec<CaptionRow>> {
    parse_csv(path, &read_csv_bytes(path)?)
}

/// Parses the captions CSV `bytes` read from `path` (named in errors), as [`read_csv`] does.
pub fn parse_csv(path: &Path, bytes: &[u8]) -> Result<Vec<CaptionRow>> {
    let file = path.display();
    let bytes = bytes.strip_prefix(BOM.as_bytes()).unwrap_or(bytes);
    if let Some((line, _)) = unclosed_quote(bytes) {
        bail!("{file}: line {line}: {UNCLOSED}");
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(bytes);
    let headers = reader
        .headers()
        .with_context(|| format!("{file}: cannot read the CSV header"))?
        .clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| {
                let found: Vec<String> = headers.iter().map(show_invisible).collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_tracked_as_the_csv_crate_reads_them() {
        assert_eq!(unclosed_quote(b"a,b\n\"x, \"\"y\"\"\",z\n"), None);
        assert_eq!(unclosed_quote(b"a,b\n\"two\nlines\",c\n"), None);
        // A quote inside an unquoted field is a literal character.
        assert_eq!(unclosed_quote(b"a,b\nsay \"hi,c\n"), None);
        assert_eq!(
            unclosed_quote(b"a,b\nx,\"never closed\ny,z\n"),
            Some((2, 4))
        );
        assert_eq!(unclosed_quote(b"a,b\r\n\"x\r\n"), Some((2, 5)));
    }

    #[test]
    fn bom_accepted_unbalanced_quote_named_invisible_headers_shown() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.csv");
        std::fs::write(&p, "\u{feff}file_name,text\na.png,\"a mug, red\"\n").unwrap();
        let rows = read_csv(&p).unwrap();
        assert_eq!(
            (rows[0].file_name.as_str(), rows[0].text.as_str()),
            ("a.png", "a mug, red")
        );
        assert_eq!(rows[0].line, 2);

        std::fs::write(&p, "file_name,text\na.png,ok\nb.png,\"open\nc.png,lost\n").unwrap();
        let e = read_csv(&p).unwrap_err().to_string();
        assert!(
            e.contains("c.csv: line 3:") && e.contains("never closed"),
            "{e}"
        );

        std::fs::write(&p, "file_name\u{200b},text\u{feff}\na.png,x\n").unwrap();
        let e = read_csv(&p).unwrap_err().to_string();
        assert!(
            e.contains("found: file_name\\u{200b}, text\\u{feff}"),
            "{e}"
        );
        assert_eq!(show_invisible("a\tb c\u{ad}"), "a\\tb c\\u{ad}");
    }
}
