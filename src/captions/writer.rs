//! Append-only CSV output that survives interruption: every row is written whole and flushed as
//! soon as it is made; reopening an existing file first drops a torn last line (a process killed
//! mid-write), then appends. Used for the captions CSV and its errors CSV.
use anyhow::{bail, Context, Result};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub struct RowWriter {
    file: File,
    path: PathBuf,
}

impl RowWriter {
    /// Opens `path` for appending rows under `header` (written if the file is new or empty). An
    /// existing file must start with the same header.
    pub fn open(path: &Path, header: &[&str]) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("{}: cannot create folder", dir.display()))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .with_context(|| format!("{}: cannot open for writing", path.display()))?;
        let mut text = String::new();
        file.read_to_string(&mut text)
            .with_context(|| format!("{}: cannot read (not UTF-8 text?)", path.display()))?;
        let mut w = Self {
            file,
            path: path.to_path_buf(),
        };
        let want = csv_line(header);
        if text.is_empty() {
            w.write_raw(&want)?;
            return Ok(w);
        }
        let first = text.lines().next().unwrap_or("");
        if format!("{first}\n") != want {
            bail!(
                "{}: existing file has header '{first}', expected '{}'",
                path.display(),
                want.trim_end()
            );
        }
        if !text.ends_with('\n') {
            // A torn last row from an interrupted run: drop it, it will be made again.
            let keep = text.rfind('\n').map_or(0, |i| i + 1) as u64;
            w.file
                .set_len(keep)
                .with_context(|| format!("{}: cannot truncate", path.display()))?;
            w.file.seek(SeekFrom::End(0))?;
        }
        Ok(w)
    }

    /// Writes one row and flushes it to the OS.
    pub fn write_row(&mut self, fields: &[&str]) -> Result<()> {
        self.write_raw(&csv_line(fields))
    }

    fn write_raw(&mut self, line: &str) -> Result<()> {
        self.file
            .write_all(line.as_bytes())
            .and_then(|_| self.file.flush())
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

    #[test]
    fn torn_last_line_is_dropped_and_rows_append() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.csv");
        std::fs::write(&p, "file_name,text\na.png,\"one, two\"\nb.png,thr").unwrap();
        let mut w = RowWriter::open(&p, &["file_name", "text"]).unwrap();
        w.write_row(&["b.png", "three \"quoted\""]).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(
            text,
            "file_name,text\na.png,\"one, two\"\nb.png,\"three \"\"quoted\"\"\"\n"
        );
    }

    #[test]
    fn a_different_header_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.csv");
        std::fs::write(&p, "path,caption\n").unwrap();
        let err = RowWriter::open(&p, &["file_name", "text"]).err().unwrap();
        assert!(err.to_string().contains("c.csv"), "{err}");
    }
}
