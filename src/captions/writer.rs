//! CSV output that survives interruption: every row is written whole and flushed as soon as it
//! is made. A resumed file keeps its rows (a byte order mark before the header is accepted and
//! kept) and loses only a row torn by a kill; a replaced file is rewritten by the run. Nothing
//! is created or changed until the first row, so a run that fails before it leaves no new
//! header-only file and an existing file untouched. Used for the captions CSV and its errors CSV.
use crate::data::captions::{show_invisible, unclosed_quote, BOM, UNCLOSED};
use anyhow::{bail, Context, Result};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub struct RowWriter {
    path: PathBuf,
    /// The header line, `\n` terminated.
    header: String,
    /// Open once the first row is written.
    file: Option<File>,
    /// How the first row opens the file.
    start: Start,
    /// Rows of an existing file that are kept (text after the byte order mark, up to the last
    /// whole row).
    existing: String,
    rows: usize,
}

enum Start {
    /// A new (or empty) file: create it and write the header.
    Create,
    /// Replace an old file (if any): truncate it and write the header.
    Replace,
    /// Append to an existing file, first cutting it to `len` bytes (dropping a torn row).
    Append { len: u64 },
}

impl RowWriter {
    /// Resumes `path` under `header`. An existing file must start with the same header; its
    /// whole rows are [`existing`](Self::existing); a torn last row (a process killed
    /// mid-write) is dropped when the first new row is written. An unclosed quote on an earlier
    /// line is an error naming that line.
    pub fn resume(path: &Path, header: &[&str]) -> Result<Self> {
        let mut w = Self::new(path, header, Start::Create);
        let mut bytes = Vec::new();
        match File::open(path) {
            Ok(mut f) => f
                .read_to_end(&mut bytes)
                .with_context(|| format!("{}: cannot read", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(w),
            Err(e) => bail!("{}: cannot open ({e})", path.display()),
        };
        let bom = if bytes.starts_with(BOM.as_bytes()) {
            BOM.len()
        } else {
            0
        };
        let text = std::str::from_utf8(&bytes[bom..])
            .with_context(|| format!("{}: not UTF-8 text", path.display()))?;
        if text.is_empty() || (!text.contains('\n') && w.header.starts_with(text)) {
            // Empty, or a header torn by a kill: written again with the first row.
            if !text.is_empty() {
                w.start = Start::Append { len: 0 };
            }
            return Ok(w);
        }
        let first = text.lines().next().unwrap_or("");
        if format!("{first}\n") != w.header {
            bail!(
                "{}: existing file has header '{}', expected '{}'",
                path.display(),
                show_invisible(first),
                w.header.trim_end()
            );
        }
        let mut keep = text.len();
        if !text.ends_with('\n') {
            keep = text.rfind('\n').map_or(0, |i| i + 1);
        }
        if let Some((line, start)) = unclosed_quote(text.as_bytes()) {
            if start < keep {
                bail!("{}: line {line}: {UNCLOSED}", path.display());
            }
            // Only the torn last row is open: it is dropped with the rest of that line.
        }
        w.existing = text[..keep].to_string();
        w.start = Start::Append {
            len: (bom + keep) as u64,
        };
        Ok(w)
    }

    /// A file this run writes anew: an old file at `path` is replaced when the first row is
    /// written, and left as it is until then (see [`finish`](Self::finish)).
    pub fn replace(path: &Path, header: &[&str]) -> Self {
        Self::new(path, header, Start::Replace)
    }

    fn new(path: &Path, header: &[&str], start: Start) -> Self {
        Self {
            path: path.to_path_buf(),
            header: csv_line(header),
            file: None,
            start,
            existing: String::new(),
            rows: 0,
        }
    }

    /// The whole rows (header first) of the file being resumed; empty for a new file.
    pub fn existing(&self) -> &str {
        &self.existing
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rows written by this writer.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Writes one row and flushes it to the OS.
    pub fn write_row(&mut self, fields: &[&str]) -> Result<()> {
        if self.file.is_none() {
            self.open()?;
        }
        self.write_raw(&csv_line(fields))?;
        self.rows += 1;
        Ok(())
    }

    /// Ends a replacing writer that wrote no row: the old file, if any, is outdated and removed.
    pub fn finish(self) -> Result<()> {
        if matches!(self.start, Start::Replace) && self.rows == 0 && self.path.exists() {
            std::fs::remove_file(&self.path)
                .with_context(|| format!("{}: cannot remove the old file", self.path.display()))?;
        }
        Ok(())
    }

    fn open(&mut self) -> Result<()> {
        let path = &self.path;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("{}: cannot create folder", dir.display()))?;
        }
        let mut opts = OpenOptions::new();
        let header = match self.start {
            Start::Create => {
                opts.append(true).create(true);
                true
            }
            Start::Replace => {
                opts.write(true).create(true).truncate(true);
                true
            }
            Start::Append { .. } => {
                opts.append(true);
                false
            }
        };
        let file = opts
            .open(path)
            .with_context(|| format!("{}: cannot open for writing", path.display()))?;
        if let Start::Append { len } = self.start {
            if file.metadata().map(|m| m.len()).unwrap_or(0) > len {
                file.set_len(len)
                    .with_context(|| format!("{}: cannot truncate", path.display()))?;
            }
        }
        self.file = Some(file);
        if header || matches!(self.start, Start::Append { len: 0 }) {
            let h = self.header.clone();
            self.write_raw(&h)?;
        }
        Ok(())
    }

    fn write_raw(&mut self, line: &str) -> Result<()> {
        let file = self.file.as_mut().expect("opened before writing");
        file.write_all(line.as_bytes())
            .and_then(|_| file.flush())
            .with_context(|| format!("{}: cannot write", self.path.display()))
    }
}

/// One CSV record (RFC 4180 quoting, `\n` terminated) as a single string, so that it reaches
/// the file in one write.
pub fn csv_line(fields: &[&str]) -> String {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    w.write_record(fields).expect("writing to memory");
    String::from_utf8(w.into_inner().expect("writing to memory")).expect("fields are UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: [&str; 2] = ["file_name", "text"];

    #[test]
    fn torn_last_line_is_dropped_and_rows_append() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.csv");
        let old = "file_name,text\na.png,\"one, two\"\nb.png,thr";
        std::fs::write(&p, old).unwrap();
        let mut w = RowWriter::resume(&p, &HEADER).unwrap();
        assert_eq!(w.existing(), "file_name,text\na.png,\"one, two\"\n");
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            old,
            "untouched so far"
        );
        w.write_row(&["b.png", "three \"quoted\""]).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(
            text,
            "file_name,text\na.png,\"one, two\"\nb.png,\"three \"\"quoted\"\"\"\n"
        );
        // A torn row that stopped inside its quotes is dropped too.
        std::fs::write(&p, "file_name,text\na.png,x\nb.png,\"thr").unwrap();
        let w = RowWriter::resume(&p, &HEADER).unwrap();
        assert_eq!(w.existing(), "file_name,text\na.png,x\n");
    }

    #[test]
    fn a_different_header_is_refused_with_invisibles_shown() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.csv");
        std::fs::write(&p, "path,caption\n").unwrap();
        let err = RowWriter::resume(&p, &HEADER).err().unwrap();
        assert!(err.to_string().contains("c.csv"), "{err}");
        std::fs::write(&p, "file_name,text\u{200b}\n").unwrap();
        let err = RowWriter::resume(&p, &HEADER).err().unwrap().to_string();
        assert!(err.contains("header 'file_name,text\\u{200b}'"), "{err}");
    }

    #[test]
    fn bom_is_accepted_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.csv");
        std::fs::write(&p, "\u{feff}file_name,text\na.png,x\n").unwrap();
        let mut w = RowWriter::resume(&p, &HEADER).unwrap();
        assert_eq!(w.existing(), "file_name,text\na.png,x\n");
        w.write_row(&["b.png", "y"]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "\u{feff}file_name,text\na.png,x\nb.png,y\n"
        );
    }

    #[test]
    fn an_unclosed_quote_before_the_last_row_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.csv");
        let old = "file_name,text\na.png,\"open\nb.png,y\n";
        std::fs::write(&p, old).unwrap();
        let err = RowWriter::resume(&p, &HEADER).err().unwrap().to_string();
        assert!(
            err.contains("c.csv: line 2:") && err.contains("never closed"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&p).unwrap(), old);
    }

    #[test]
    fn nothing_is_created_without_a_row_and_replace_rewrites() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.csv");
        drop(RowWriter::resume(&p, &HEADER).unwrap());
        assert!(!p.exists(), "no header-only file");
        let p = dir.path().join("sub/c.csv");
        let mut w = RowWriter::resume(&p, &HEADER).unwrap();
        w.write_row(&["a.png", "x"]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "file_name,text\na.png,x\n"
        );

        let e = dir.path().join("e.csv");
        std::fs::write(&e, "file_name,error\nold.png,gone\n").unwrap();
        let mut w = RowWriter::replace(&e, &["file_name", "error"]);
        w.write_row(&["new.png", "bad"]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&e).unwrap(),
            "file_name,error\nnew.png,bad\n"
        );
        w.finish().unwrap();
        assert!(e.exists());
        // A later run with no errors removes the outdated list.
        RowWriter::replace(&e, &["file_name", "error"])
            .finish()
            .unwrap();
        assert!(!e.exists());
    }
}
