//! Exclusive locks on a run folder or an output file, so that two processes never write the
//! same metrics or CSV rows. The lock is an `flock` on a lock file that holds the owner's pid:
//! the kernel releases it when the owner dies, so a lock file left by a killed process is stale
//! and simply taken over; a live owner makes the second process fail with a one-line error.
use anyhow::{anyhow, bail, Result};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Held while alive; dropping it removes the lock file and releases the lock.
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
    file: File,
}

impl Lock {
    /// Takes the lock file `path` for `what` (e.g. "run folder runs/x"), or fails naming the
    /// process that holds it.
    pub fn acquire(path: &Path, what: &str) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow!("{}: cannot create folder ({e})", dir.display()))?;
        }
        for _ in 0..16 {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(|e| anyhow!("{}: cannot open lock file ({e})", path.display()))?;
            // SAFETY: flock on a file descriptor we own.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc != 0 {
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                    bail!("{}: cannot lock ({err})", path.display());
                }
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let owner = match text.trim().parse::<u32>() {
                    Ok(pid) => format!("process {pid}"),
                    Err(_) => "another process".to_string(),
                };
                bail!(
                    "{what} is in use by {owner} (lock file {}); wait for it to finish",
                    path.display()
                );
            }
            // The file may have been removed (and re-created) by its previous owner between our
            // open and our lock: then we locked a dead inode, and must try again.
            let same = match (std::fs::metadata(path), file.metadata()) {
                (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                _ => false,
            };
            if !same {
                continue;
            }
            file.set_len(0)
                .and_then(|_| file.seek(SeekFrom::Start(0)).map(|_| ()))
                .and_then(|_| writeln!(file, "{}", std::process::id()))
                .and_then(|_| file.flush())
                .map_err(|e| anyhow!("{}: cannot write lock file ({e})", path.display()))?;
            return Ok(Self {
                path: path.to_path_buf(),
                file,
            });
        }
        bail!(
            "{}: cannot take the lock (it keeps changing)",
            path.display()
        )
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Remove while still holding the lock, so nobody locks the file we are deleting.
        let _ = std::fs::remove_file(&self.path);
        // SAFETY: unlocking our own descriptor (closing it would do the same).
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_and_stale_files_are_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".lock");
        let a = Lock::acquire(&p, "run folder x").unwrap();
        let err = Lock::acquire(&p, "run folder x").unwrap_err().to_string();
        assert!(
            err.contains("run folder x is in use by process") && err.contains(".lock"),
            "{err}"
        );
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        drop(a);
        assert!(!p.exists());
        // A lock file left behind by a killed process holds no flock: it is stale.
        std::fs::write(&p, "999999\n").unwrap();
        let b = Lock::acquire(&p, "run folder x").unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap().trim(),
            std::process::id().to_string()
        );
        drop(b);
    }
}
