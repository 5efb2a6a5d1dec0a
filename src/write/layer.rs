//! Writes the new layer: a deterministic gzip-compressed tar, its digest and diff_id
//! computed while writing.
//!
//! Invariant: the same plan gives byte-identical output: entries are sorted by path, every
//! header field is set explicitly (no host user names, fixed gzip header), and the
//! compression backend and level are fixed.

use std::ffi::OsStr;
use std::io::{self, BufWriter, Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use flate2::{Compression as Level, GzBuilder};

use crate::layer::scan::BodySpool;
use crate::layer::{ImagePath, Kind, Meta};
use crate::model::digest::HashingWriter;
use crate::model::Digest;
use crate::plan::{Body, FileChange};

/// The gzip level of new layers: fixed, so output is reproducible.
pub const GZIP_LEVEL: u32 = 6;

/// A written layer.
pub struct NewLayer {
    /// The file holding the compressed layer (deleted when dropped).
    pub file: tempfile::NamedTempFile,
    /// Digest of the compressed bytes.
    pub digest: Digest,
    /// Size of the compressed bytes.
    pub size: u64,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// Size of the uncompressed tar.
    pub uncompressed_size: u64,
    /// Number of entries.
    pub entries: usize,
}

/// Writes `changes` (sorted by path; hard links after everything else) as a tar.gz into a temporary file in `dir`.
pub fn write_layer<'a>(
    changes: impl IntoIterator<Item = (&'a ImagePath, &'a FileChange)>,
    spool: &BodySpool,
    dir: &Path,
) -> io::Result<NewLayer> {
    let mut file = tempfile::Builder::new()
        .prefix(".unroot-layer-")
        .tempfile_in(dir)?;
    let compressed = HashingWriter::new(BufWriter::with_capacity(256 * 1024, file.as_file_mut()));
    let gz = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(compressed, Level::new(GZIP_LEVEL));
    let uncompressed = HashingWriter::new(gz);
    let mut tar = tar::Builder::new(uncompressed);
    // Hard links go last, so their targets (in this layer) are always written before them.
    let (links, others): (Vec<_>, Vec<_>) = changes
        .into_iter()
        .partition(|(_, c)| c.meta.kind == Kind::Hardlink);
    let mut entries = 0usize;
    for (path, change) in others.into_iter().chain(links) {
        append_entry(&mut tar, path, &change.meta, &change.body, spool)?;
        entries += 1;
    }
    let uncompressed = tar.into_inner()?;
    let (gz, diff_id, uncompressed_size) = uncompressed.finish();
    let compressed = gz.finish()?;
    let (mut buffered, digest, size) = compressed.finish();
    buffered.flush()?;
    drop(buffered);
    file.as_file_mut().sync_all()?;
    file.as_file_mut().rewind()?;
    Ok(NewLayer {
        file,
        digest,
        size,
        diff_id,
        uncompressed_size,
        entries,
    })
}

fn append_entry<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &ImagePath,
    meta: &Meta,
    body: &Body,
    spool: &BodySpool,
) -> io::Result<()> {
    if !meta.xattrs.is_empty() {
        append_pax_xattrs(tar, path, meta)?;
    }
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(match meta.kind {
        Kind::File => tar::EntryType::Regular,
        Kind::Dir => tar::EntryType::Directory,
        Kind::Symlink => tar::EntryType::Symlink,
        Kind::Hardlink => tar::EntryType::Link,
        Kind::Char => tar::EntryType::Char,
        Kind::Block => tar::EntryType::Block,
        Kind::Fifo => tar::EntryType::Fifo,
    });
    header.set_mode(meta.mode);
    header.set_uid(meta.uid);
    header.set_gid(meta.gid);
    header.set_mtime(meta.mtime);
    header.set_username("")?;
    header.set_groupname("")?;
    if matches!(meta.kind, Kind::Char | Kind::Block) {
        header.set_device_major(meta.device.0)?;
        header.set_device_minor(meta.device.1)?;
    }
    let mut name = path.as_bytes().to_vec();
    if meta.kind == Kind::Dir {
        name.push(b'/');
    }
    let name = Path::new(OsStr::from_bytes(&name));
    match (meta.kind, body) {
        (Kind::Symlink | Kind::Hardlink, _) => {
            header.set_size(0);
            let target = Path::new(OsStr::from_bytes(meta.link.as_deref().unwrap_or_default()));
            tar.append_link(&mut header, name, target)
        }
        (Kind::File, Body::Bytes(bytes)) => {
            header.set_size(bytes.len() as u64);
            tar.append_data(&mut header, name, bytes.as_slice())
        }
        (Kind::File, Body::Spooled { offset, len }) => {
            header.set_size(*len);
            let mut reader = spool.reader(*offset, *len);
            tar.append_data(&mut header, name, &mut reader as &mut dyn Read)
        }
        _ => {
            header.set_size(0);
            tar.append_data(&mut header, name, io::empty())
        }
    }
}

/// Writes a PAX extended header with `SCHILY.xattr.*` records for the next entry.
fn append_pax_xattrs<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &ImagePath,
    meta: &Meta,
) -> io::Result<()> {
    let mut records = Vec::new();
    for (key, value) in &meta.xattrs {
        let mut body = Vec::new();
        body.extend_from_slice(b"SCHILY.xattr.");
        body.extend_from_slice(key.as_bytes());
        body.push(b'=');
        body.extend_from_slice(value);
        body.push(b'\n');
        // The length prefix counts itself, its space, and the record.
        let mut len = body.len() + 2;
        loop {
            let total = len.to_string().len() + 1 + body.len();
            if total == len {
                break;
            }
            len = total;
        }
        records.extend_from_slice(len.to_string().as_bytes());
        records.push(b' ');
        records.extend_from_slice(&body);
    }
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::XHeader);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(records.len() as u64);
    let mut name = b"PaxHeaders/".to_vec();
    let file = path.file_name();
    name.extend_from_slice(&file[..file.len().min(80)]);
    tar.append_data(
        &mut header,
        Path::new(OsStr::from_bytes(&name)),
        records.as_slice(),
    )
}
