//! Files of an OCI image layout, read from a directory or from inside a tar archive
//! without unpacking it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::layer::range::RangeReader;
use crate::model::Digest;

use super::{BlobReader, TransportError};

/// Read access to the files of a layout.
pub trait FileStore {
    /// Opens `rel` (a `/`-separated path inside the layout); `Ok(None)` when it is absent.
    fn open(&self, rel: &str) -> Result<Option<(BlobReader, u64)>, TransportError>;
}

/// The relative path of a blob in a layout.
pub fn blob_path(digest: &Digest) -> String {
    let s = digest.to_string();
    let (alg, hex) = s.split_once(':').expect("digests have a colon");
    format!("blobs/{alg}/{hex}")
}

/// A layout directory.
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    /// The layout at `root`.
    pub fn new(root: &Path) -> DirStore {
        DirStore {
            root: root.to_path_buf(),
        }
    }
}

impl FileStore for DirStore {
    fn open(&self, rel: &str) -> Result<Option<(BlobReader, u64)>, TransportError> {
        let path = self.root.join(rel);
        match open_regular(&path) {
            Ok(f) => {
                let len = f
                    .metadata()
                    .map_err(TransportError::io("read", &path))?
                    .len();
                Ok(Some((Box::new(f), len)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(TransportError::io("open", &path)(e)),
        }
    }
}

/// Opens a file that must be a regular one (through symlinks): a FIFO, a device or a
/// directory is refused without waiting on it (`/dev/zero` never ends, a FIFO blocks).
pub fn open_regular(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let t = file.metadata()?.file_type();
    if t.is_file() {
        return Ok(file);
    }
    let kind = if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "named pipe"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_socket() {
        "socket"
    } else {
        "special file"
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("it is a {kind}, not a regular file"),
    ))
}

/// A tar archive, indexed once by reading its headers (bodies are skipped by seeking).
pub struct TarStore {
    file: Arc<File>,
    path: PathBuf,
    members: BTreeMap<String, (u64, u64)>,
}

impl TarStore {
    /// Indexes the archive at `path`. `kind` names the format for messages; a path that
    /// does not exist, or is a directory, is said to be so.
    pub fn open(
        path: &Path,
        location: &str,
        kind: &'static str,
    ) -> Result<TarStore, TransportError> {
        let invalid = |reason: String| TransportError::Invalid {
            location: location.to_string(),
            kind,
            reason,
            local: true,
        };
        if !path.exists() {
            return Err(TransportError::NotFound {
                location: location.to_string(),
                what: format!("archive `{}`", path.display()),
                local: true,
            });
        }
        if path.is_dir() {
            return Err(invalid(format!(
                "`{}` is a directory, not a tar file",
                path.display()
            )));
        }
        let file = open_regular(path).map_err(TransportError::io("open", path))?;
        let mut members = BTreeMap::new();
        {
            let mut archive = tar::Archive::new(&file);
            let entries = archive
                .entries_with_seek()
                .map_err(|e| invalid(format!("not a tar archive: {e}")))?;
            for entry in entries {
                let entry = entry.map_err(|e| invalid(format!("not a tar archive: {e}")))?;
                if entry.header().entry_type() != tar::EntryType::Regular {
                    continue;
                }
                let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
                let name = name.trim_start_matches("./").to_string();
                members.insert(name, (entry.raw_file_position(), entry.size()));
            }
        }
        Ok(TarStore {
            file: Arc::new(file),
            path: path.to_path_buf(),
            members,
        })
    }

    /// The regular files in the archive.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.members.keys().map(String::as_str)
    }

    /// The archive's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl FileStore for TarStore {
    fn open(&self, rel: &str) -> Result<Option<(BlobReader, u64)>, TransportError> {
        Ok(self.members.get(rel).map(|&(offset, len)| {
            let reader: BlobReader = Box::new(RangeReader::new(self.file.clone(), offset, len));
            (reader, len)
        }))
    }
}
