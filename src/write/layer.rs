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

use crate::control::{Cancel, Interruptible};
use crate::layer::scan::BodySpool;
use crate::layer::{ImagePath, Kind, Meta};
use crate::model::digest::HashingWriter;
use crate::model::Digest;
use crate::plan::{Body, FileChange};

use super::pgzip::ParallelGzip;

/// The gzip level of new layers: fixed, so output is reproducible. 3 is the fastest of
/// zlib's lazy-free levels that still compresses near the default: on the benchmark image
/// it writes the new layer in 40% of level 6's time for a layer 20% larger.
pub const GZIP_LEVEL: u32 = 3;

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

/// The tar stream of a layer being written: gzip-compressed (fixed level and header) into
/// a temporary file, with the digests of both forms computed as it goes.
pub struct LayerWriter {
    file: tempfile::NamedTempFile,
    tar: tar::Builder<HashingWriter<ParallelGzip<HashingWriter<BufWriter<std::fs::File>>>>>,
}

impl LayerWriter {
    /// A new layer in a temporary file in `dir`.
    pub fn new(dir: &Path) -> io::Result<LayerWriter> {
        let file = tempfile::Builder::new()
            .prefix(&crate::transport::stale::prefix("layer"))
            .tempfile_in(dir)?;
        let out = file.reopen()?;
        let compressed = HashingWriter::new(BufWriter::with_capacity(64 * 1024, out));
        let gz = ParallelGzip::new(compressed, GZIP_LEVEL);
        Ok(LayerWriter {
            file,
            tar: tar::Builder::new(HashingWriter::new(gz)),
        })
    }

    /// The tar builder, to append entries.
    pub fn tar(&mut self) -> &mut tar::Builder<impl Write> {
        &mut self.tar
    }

    /// Ends the archive (of `entries` entries) and the compression; the file is complete
    /// and rewound.
    pub fn finish(self, entries: usize) -> io::Result<NewLayer> {
        let uncompressed = self.tar.into_inner()?;
        let (gz, diff_id, uncompressed_size) = uncompressed.finish();
        let compressed = gz.finish()?;
        let (mut buffered, digest, size) = compressed.finish();
        buffered.flush()?;
        // A temporary file read back by this process: the page cache is enough, no fsync.
        drop(buffered.into_inner().map_err(|e| e.into_error())?);
        let mut file = self.file;
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
}

/// Writes `changes` (sorted by path; hard links after everything else) as a tar.gz into a
/// temporary file in `dir`.
pub fn write_layer<'a>(
    changes: impl IntoIterator<Item = (&'a ImagePath, &'a FileChange)>,
    spool: &BodySpool,
    dir: &Path,
    cancel: &Cancel,
) -> io::Result<NewLayer> {
    let mut writer = LayerWriter::new(dir)?;
    // Hard links go last, so their targets (in this layer) are always written before them.
    let (links, others): (Vec<_>, Vec<_>) = changes
        .into_iter()
        .partition(|(_, c)| c.meta.kind == Kind::Hardlink);
    let mut entries = 0;
    for (path, change) in others.into_iter().chain(links) {
        cancel
            .check()
            .map_err(|c| io::Error::new(io::ErrorKind::Interrupted, c))?;
        append_entry(
            writer.tar(),
            path,
            &change.meta,
            &change.body,
            spool,
            cancel,
        )?;
        entries += 1;
    }
    writer.finish(entries)
}

fn append_entry<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &ImagePath,
    meta: &Meta,
    body: &Body,
    spool: &BodySpool,
    cancel: &Cancel,
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
            append_spooled(tar, &mut header, name, spool, *offset, *len, cancel)
        }
        _ => {
            header.set_size(0);
            tar.append_data(&mut header, name, io::empty())
        }
    }
}

/// Files with at least this many bytes in blocks of zeros are written as sparse entries.
pub const SPARSE_MIN: u64 = 1024 * 1024;

/// Writes a file whose body is kept in `spool`, with `header` set but for its type and
/// size: as a GNU sparse entry when it has [`SPARSE_MIN`] bytes or more of zeros in whole
/// blocks (holes stay holes: a 4 GiB sparse file takes a few blocks, not 4 GiB of
/// zeros), else as a regular file.
pub(crate) fn append_spooled<W: Write>(
    tar: &mut tar::Builder<W>,
    header: &mut tar::Header,
    name: &Path,
    spool: &BodySpool,
    offset: u64,
    len: u64,
    cancel: &Cancel,
) -> io::Result<()> {
    if let Some(gnu) = header.as_gnu_mut() {
        // A header copied from a sparse entry must not keep its old map.
        for slot in gnu.sparse.iter_mut() {
            slot.offset = [0; 12];
            slot.numbytes = [0; 12];
        }
        gnu.isextended = [0];
        gnu.realsize = [0; 12];
    }
    let map = spool
        .data_map(offset)
        .filter(|map| len - map.iter().map(|(_, l)| l).sum::<u64>() >= SPARSE_MIN);
    let Some(map) = map else {
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(len);
        let mut reader = Interruptible::new(spool.reader(offset, len), cancel);
        return tar.append_data(header, name, &mut reader as &mut dyn Read);
    };
    // The map, with a last empty region at the end when the file ends in a hole (so
    // readers that add up the regions find the real size).
    let mut regions: Vec<(u64, u64)> = map.to_vec();
    if regions.last().is_none_or(|(s, l)| s + l < len) {
        regions.push((len, 0));
    }
    let stored: u64 = regions.iter().map(|(_, l)| l).sum();
    header.set_entry_type(tar::EntryType::GNUSparse);
    header.set_size(stored);
    let gnu = header
        .as_gnu_mut()
        .ok_or_else(|| io::Error::other("a sparse entry needs a GNU header"))?;
    gnu.set_real_size(len);
    let (first, rest) = regions.split_at(regions.len().min(gnu.sparse.len()));
    for (slot, (start, length)) in gnu.sparse.iter_mut().zip(first) {
        slot.set_offset(*start);
        slot.set_length(*length);
    }
    gnu.set_is_extended(!rest.is_empty());
    // The regions that do not fit in the header follow it in extension blocks.
    let mut extensions = Vec::new();
    let mut chunks = rest
        .chunks(tar::GnuExtSparseHeader::new().sparse.len())
        .peekable();
    while let Some(chunk) = chunks.next() {
        let mut ext = tar::GnuExtSparseHeader::new();
        for (slot, (start, length)) in ext.sparse.iter_mut().zip(chunk) {
            slot.set_offset(*start);
            slot.set_length(*length);
        }
        ext.set_is_extended(chunks.peek().is_some());
        extensions.extend_from_slice(ext.as_bytes());
    }
    let mut body = extensions.as_slice().chain(SpooledRegions {
        spool,
        offset,
        regions: regions.into_iter(),
        current: None,
    });
    let mut reader = Interruptible::new(&mut body, cancel);
    tar.append_data(header, name, &mut reader as &mut dyn Read)
}

/// The data regions of a spooled body, one after the other.
struct SpooledRegions<'a> {
    spool: &'a BodySpool,
    offset: u64,
    regions: std::vec::IntoIter<(u64, u64)>,
    current: Option<crate::layer::range::RangeReader<&'a std::fs::File>>,
}

impl Read for SpooledRegions<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(r) = &mut self.current {
                let n = r.read(buf)?;
                if n > 0 || buf.is_empty() {
                    return Ok(n);
                }
            }
            let Some((start, len)) = self.regions.next() else {
                return Ok(0);
            };
            self.current = Some(self.spool.reader(self.offset + start, len));
        }
    }
}

/// Writes a PAX extended header with `SCHILY.xattr.*` records for the next entry.
pub(crate) fn append_pax_xattrs<W: Write>(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::reader::read_layer;
    use crate::layer::scan::SPOOL_BLOCK;
    use crate::layer::Change;
    use crate::model::Descriptor;
    use std::collections::BTreeMap;
    use std::io::Read;
    use std::sync::Arc;

    fn meta(kind: Kind, mode: u32, uid: u64) -> Meta {
        Meta {
            kind,
            mode,
            uid,
            gid: 0,
            size: 0,
            mtime: 86400,
            link: None,
            device: (0, 0),
            xattrs: BTreeMap::new(),
        }
    }

    fn plan() -> BTreeMap<ImagePath, FileChange> {
        let change = |meta: Meta, body: Body| FileChange {
            meta,
            body,
            reason: crate::plan::Reason::Writable,
            before: None,
            original: None,
        };
        let mut cap = meta(Kind::File, 0o755, 0);
        cap.size = 4;
        cap.xattrs
            .insert("security.capability".into(), vec![1, 0, 0, 2]);
        let mut link = meta(Kind::Hardlink, 0o755, 0);
        link.link = Some(b"z/bin".to_vec());
        let long = format!("z/{}", "n".repeat(200));
        let mut m = BTreeMap::new();
        // The link sorts before its target: the writer must put it after.
        m.insert(ImagePath::new("/a-link"), change(link, Body::Empty));
        m.insert(
            ImagePath::new("/z/bin"),
            change(cap, Body::Bytes(Arc::new(b"\x7fELF".to_vec()))),
        );
        m.insert(
            ImagePath::new("/var/cache"),
            change(meta(Kind::Dir, 0o775, 1000), Body::Empty),
        );
        m.insert(
            ImagePath::new(&long),
            change(meta(Kind::Dir, 0o755, 0), Body::Empty),
        );
        m
    }

    fn write(dir: &Path) -> NewLayer {
        let spool = BodySpool::new().unwrap();
        write_layer(&plan(), &spool, dir, &Cancel::new()).unwrap()
    }

    #[test]
    fn same_plan_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (mut a, mut b) = (write(dir.path()), write(dir.path()));
        assert_eq!(a.digest, b.digest);
        assert_eq!(a.diff_id, b.diff_id);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        a.file.read_to_end(&mut x).unwrap();
        b.file.read_to_end(&mut y).unwrap();
        assert_eq!(x, y);
        assert_eq!(x.len() as u64, a.size);
    }

    #[test]
    fn reads_back_with_metadata_xattrs_and_link_order() {
        let dir = tempfile::tempdir().unwrap();
        let layer = write(dir.path());
        let desc = Descriptor::new("x", layer.digest.clone(), layer.size);
        let mut seen = Vec::new();
        let info = read_layer(
            std::fs::File::open(layer.file.path()).unwrap(),
            &desc,
            Some(&layer.diff_id),
            &mut |p, c, body| {
                let mut content = Vec::new();
                body.read_to_end(&mut content).unwrap();
                seen.push((p.display(), c, content));
                Ok(())
            },
            &crate::control::Cancel::new(),
        )
        .unwrap();
        assert_eq!(info.uncompressed_size, layer.uncompressed_size);
        let names: Vec<&str> = seen.iter().map(|(p, _, _)| p.as_str()).collect();
        assert_eq!(names[..2], ["/var/cache", "/z/bin"]);
        assert!(names[2].starts_with("/z/nnnn"));
        assert_eq!(names[3], "/a-link");
        let Change::Put(bin) = &seen[1].1 else {
            panic!()
        };
        assert_eq!(bin.xattrs["security.capability"], vec![1, 0, 0, 2]);
        assert_eq!((bin.mode, bin.uid, bin.mtime), (0o755, 0, 86400));
        assert_eq!(seen[1].2, b"\x7fELF");
        let Change::Put(dir_meta) = &seen[0].1 else {
            panic!()
        };
        assert_eq!(
            (dir_meta.kind, dir_meta.mode, dir_meta.uid),
            (Kind::Dir, 0o775, 1000)
        );
    }

    /// A body of `regions` (start, bytes) laid over zeros, `size` long.
    fn body(size: u64, regions: &[(u64, &[u8])]) -> Vec<u8> {
        let mut b = vec![0u8; size as usize];
        for (at, bytes) in regions {
            b[*at as usize..*at as usize + bytes.len()].copy_from_slice(bytes);
        }
        b
    }

    #[test]
    fn files_with_holes_are_written_sparse_and_read_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let spool = BodySpool::new_in(dir.path(), 64 << 20).unwrap();
        let mb = 1u64 << 20;
        // Data, 3 MiB of zeros, data, ending in a 2 MiB hole (the map ends with an empty
        // region at the real size).
        let holes = body(6 * mb, &[(10, b"head"), (3 * mb + 70_000, &[7u8; 100_000])]);
        // 30 data blocks 64 KiB apart: more regions than a header holds (4) and than one
        // extension block holds (21).
        let many: Vec<(u64, &[u8])> = (0..30)
            .map(|i| (i * 2 * SPOOL_BLOCK + 5, &b"x"[..]))
            .collect();
        let scattered = body(60 * SPOOL_BLOCK + 17, &many);
        // Zeros but below the threshold: written as a regular file.
        let small = body(SPOOL_BLOCK * 3, &[(0, b"a"), (2 * SPOOL_BLOCK, b"b")]);
        let mut plan = BTreeMap::new();
        let mut files = Vec::new();
        for (name, bytes) in [
            ("/holes", &holes),
            ("/scattered", &scattered),
            ("/small", &small),
        ] {
            let offset = spool
                .append(&mut bytes.as_slice(), bytes.len() as u64)
                .unwrap();
            let mut m = meta(Kind::File, 0o755, 0);
            m.size = bytes.len() as u64;
            let body = Body::Spooled {
                offset,
                len: bytes.len() as u64,
            };
            plan.insert(
                ImagePath::new(name),
                FileChange {
                    meta: m,
                    body,
                    reason: crate::plan::Reason::Writable,
                    before: None,
                    original: None,
                },
            );
            files.push((name, bytes));
        }
        let layer = write_layer(&plan, &spool, dir.path(), &Cancel::new()).unwrap();
        // The holes are not in the tar: the data blocks of /holes (1 + 2) and /scattered
        // (30), /small whole (3 blocks), three headers, two extension blocks, the end.
        assert_eq!(
            layer.uncompressed_size,
            (3 + 30 + 3) * SPOOL_BLOCK + (3 + 2 + 2) * 512
        );
        let again = write_layer(&plan, &spool, dir.path(), &Cancel::new()).unwrap();
        assert_eq!(layer.digest, again.digest);
        // unroot's reader (the tar crate) expands them.
        let mut tar = Vec::new();
        flate2::read::MultiGzDecoder::new(std::fs::File::open(layer.file.path()).unwrap())
            .read_to_end(&mut tar)
            .unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut kinds = Vec::new();
        for (entry, (name, bytes)) in archive.entries().unwrap().zip(&files) {
            let mut entry = entry.unwrap();
            kinds.push(entry.header().entry_type());
            assert_eq!(entry.path_bytes().as_ref(), &name.as_bytes()[1..]);
            let mut back = Vec::new();
            entry.read_to_end(&mut back).unwrap();
            assert!(back == **bytes, "{name} differs");
        }
        assert_eq!(
            kinds,
            [
                tar::EntryType::GNUSparse,
                tar::EntryType::GNUSparse,
                tar::EntryType::Regular
            ]
        );
        // GNU tar, an independent reader, extracts the same bytes.
        let tar_file = dir.path().join("layer.tar");
        std::fs::write(&tar_file, &tar).unwrap();
        let out = dir.path().join("x");
        std::fs::create_dir(&out).unwrap();
        let status = std::process::Command::new("tar")
            .arg("-xf")
            .arg(&tar_file)
            .arg("-C")
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success());
        for (name, bytes) in &files {
            let back = std::fs::read(out.join(&name[1..])).unwrap();
            assert!(back == **bytes, "GNU tar: {name} differs");
        }
    }

    /// The compressed bytes depend on the gzip backend: this pins zlib-rs at level 3, so a
    /// dependency that silently switches backends (and so every digest) fails here.
    #[test]
    fn gzip_backend_is_pinned() {
        let dir = tempfile::tempdir().unwrap();
        let layer = write(dir.path());
        assert_eq!(
            layer.digest.to_string(),
            "sha256:3154ee9d5e033afc759c5f7ca6095e9e9a7f856986989972317dcc36299ce64c"
        );
    }
}
