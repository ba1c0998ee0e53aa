//! File-system helpers every stage uses: whole-or-absent writes (temporary file + rename, the
//! path in every error) and exclusive locks on run folders and output files.
mod atomic;
mod lock;

pub use atomic::{write_atomic, write_atomic_with};
pub use lock::Lock;
