//! One tar entry's metadata, read from its header and PAX records.

use std::collections::BTreeMap;
use std::io::Read;

use super::path::ImagePath;

/// What kind of file an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A hard link to another entry (of this or a lower layer).
    Hardlink,
    /// A character device.
    Char,
    /// A block device.
    Block,
    /// A named pipe.
    Fifo,
}

impl Kind {
    /// Its name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "directory",
            Kind::Symlink => "symlink",
            Kind::Hardlink => "hard link",
            Kind::Char => "character device",
            Kind::Block => "block device",
            Kind::Fifo => "named pipe",
        }
    }

    /// One letter, as `ls -l` shows it.
    pub fn letter(self) -> char {
        match self {
            Kind::File => '-',
            Kind::Dir => 'd',
            Kind::Symlink => 'l',
            Kind::Hardlink => 'h',
            Kind::Char => 'c',
            Kind::Block => 'b',
            Kind::Fifo => 'p',
        }
    }
}

/// The metadata of one file in a layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    /// The file type.
    pub kind: Kind,
    /// Permission bits including setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Size of the body (regular files only).
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: u64,
    /// Symlink target, or the path a hard link points to.
    pub link: Option<Vec<u8>>,
    /// Device numbers (character and block devices).
    pub device: (u32, u32),
    /// Extended attributes, e.g. `security.capability`.
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

/// The xattr that holds file capabilities.
pub const XATTR_CAPABILITY: &str = "security.capability";

impl Meta {
    /// Whether any execute bit is set.
    pub fn is_executable(&self) -> bool {
        self.mode & 0o111 != 0
    }

    /// Whether setuid or setgid is set.
    pub fn is_setid(&self) -> bool {
        self.mode & 0o6000 != 0
    }

    /// The hard link target as a path, for hard links.
    pub fn hardlink_target(&self) -> Option<ImagePath> {
        match (self.kind, &self.link) {
            (Kind::Hardlink, Some(t)) => ImagePath::from_tar(t).ok(),
            _ => None,
        }
    }
}

/// What a layer entry does to the merged filesystem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Adds or replaces the path.
    Put(Meta),
    /// Deletes the path (and everything under it) from lower layers: `.wh.NAME`.
    Whiteout,
    /// Deletes everything under the directory from lower layers: `.wh..wh..opq`.
    Opaque,
}

/// Prefix of whiteout file names.
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// Name of the opaque-directory marker.
pub const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// Why a tar entry could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// The entry's name is unsafe or invalid.
    #[error(transparent)]
    Path(#[from] super::path::PathError),
    /// The entry type is not one that can appear in an image layer.
    #[error("entry `{path}` has the unsupported tar type {kind:?}")]
    UnsupportedType {
        /// The entry name.
        path: String,
        /// The type byte.
        kind: char,
    },
    /// A whiteout names no file or the root.
    #[error("whiteout `{0}` names a path outside the image")]
    BadWhiteout(String),
    /// The header is damaged.
    #[error("entry `{path}`: {source}")]
    Header {
        /// The entry name.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// Reads an entry's path and change from a tar entry. Returns `None` for entries that
/// carry no file (PAX global headers and the like) and the root directory.
pub fn read_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
) -> Result<Option<(ImagePath, Change)>, EntryError> {
    let raw_path = entry.path_bytes().into_owned();
    let lossy = String::from_utf8_lossy(&raw_path).into_owned();
    let header_err = |source| EntryError::Header {
        path: lossy.clone(),
        source,
    };
    let path = ImagePath::from_tar(&raw_path)?;

    let name = path.file_name();
    if name == OPAQUE_MARKER {
        let dir = path.parent().unwrap_or_default();
        return Ok(Some((dir, Change::Opaque)));
    }
    if let Some(target) = name.strip_prefix(WHITEOUT_PREFIX) {
        if target.starts_with(WHITEOUT_PREFIX) {
            // Other `.wh..wh.` markers (aufs hard-link bookkeeping) carry no file.
            return Ok(None);
        }
        if target.is_empty() || target == b"." || target == b".." {
            return Err(EntryError::BadWhiteout(lossy));
        }
        let parent = path.parent().unwrap_or_default();
        return Ok(Some((parent.join(target), Change::Whiteout)));
    }

    let header = entry.header();
    let et = header.entry_type();
    let kind = match et {
        tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File,
        tar::EntryType::Directory => Kind::Dir,
        tar::EntryType::Symlink => Kind::Symlink,
        tar::EntryType::Link => Kind::Hardlink,
        tar::EntryType::Char => Kind::Char,
        tar::EntryType::Block => Kind::Block,
        tar::EntryType::Fifo => Kind::Fifo,
        tar::EntryType::XGlobalHeader => return Ok(None),
        tar::EntryType::GNUSparse => Kind::File,
        other => {
            return Err(EntryError::UnsupportedType {
                path: lossy,
                kind: other.as_byte() as char,
            })
        }
    };
    if path.is_root() {
        return Ok(None);
    }
    // Empty numeric fields read as 0, as Go's archive/tar (and so Docker) reads them.
    let old = header.as_old();
    let mode =
        numeric(header.mode().map(u64::from), &old.mode).map_err(header_err)? as u32 & 0o7777;
    let mut uid = numeric(header.uid(), &old.uid).map_err(header_err)?;
    let mut gid = numeric(header.gid(), &old.gid).map_err(header_err)?;
    let mut mtime = numeric(header.mtime(), &old.mtime).unwrap_or(0);
    let size = if kind == Kind::File { entry.size() } else { 0 };
    let device = match kind {
        Kind::Char | Kind::Block => (
            header.device_major().ok().flatten().unwrap_or(0),
            header.device_minor().ok().flatten().unwrap_or(0),
        ),
        _ => (0, 0),
    };
    let link = match kind {
        Kind::Symlink | Kind::Hardlink => Some(
            entry
                .link_name_bytes()
                .map(|l| l.into_owned())
                .unwrap_or_default(),
        ),
        _ => None,
    };
    let mut xattrs = BTreeMap::new();
    if let Some(pax) = entry.pax_extensions().map_err(header_err)? {
        for ext in pax {
            let ext = ext.map_err(header_err)?;
            let key = ext.key_bytes();
            let value = ext.value_bytes();
            let number = || {
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|s| s.split('.').next()?.parse::<u64>().ok())
            };
            match key {
                b"uid" => uid = number().unwrap_or(uid),
                b"gid" => gid = number().unwrap_or(gid),
                b"mtime" => mtime = number().unwrap_or(mtime),
                _ => {
                    if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                        xattrs.insert(String::from_utf8_lossy(name).into_owned(), value.to_vec());
                    }
                }
            }
        }
    }
    Ok(Some((
        path,
        Change::Put(Meta {
            kind,
            mode,
            uid,
            gid,
            size,
            mtime,
            link,
            device,
            xattrs,
        }),
    )))
}

/// A header's numeric field: its parsed value, or 0 when the field is blank.
fn numeric(parsed: std::io::Result<u64>, raw: &[u8]) -> std::io::Result<u64> {
    match parsed {
        Ok(v) => Ok(v),
        Err(_) if raw.iter().all(|&b| b == 0 || b == b' ') => Ok(0),
        Err(e) => Err(e),
    }
}
