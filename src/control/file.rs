//! The one error of a local file operation, shared by every folder that touches files.

use std::io;
use std::path::{Path, PathBuf};

/// A local file operation that failed: what was being done, to which file, and why.
#[derive(Debug, thiserror::Error)]
#[error("cannot {op} `{}`: {source}", path.display())]
pub struct FileError {
    /// What was being done ("create", "write a layer in", ...).
    pub op: &'static str,
    /// The file or directory.
    pub path: PathBuf,
    /// The error.
    pub source: io::Error,
}

impl FileError {
    /// The error of doing `op` to `path`, for `map_err`.
    pub fn of(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FileError {
        let path = path.to_path_buf();
        move |source| FileError { op, path, source }
    }
}
