//! Reads one layer blob as a stream of entries, verifying its digest and diff_id.
//!
//! Invariant: [`read_layer`] returns `Ok` only when the compressed bytes matched the
//! descriptor's digest and size and the uncompressed bytes matched the diff_id; callers
//! treat what the visitor saw as provisional until then.

use std::io::{self, Read};

use crate::control::Cancel;
use crate::model::digest::{Digest, DigestMismatch};
use crate::model::Descriptor;

use super::compression::Compression;
use super::entry::{read_entry, Change, EntryError};
use super::guard::{Oversized, TarGuard};
use super::path::ImagePath;
use super::stream::{LayerStream, TarReader};

/// What reading a layer established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    /// The blob's (compressed) digest, verified.
    pub digest: Digest,
    /// The uncompressed tar's digest, verified against the config.
    pub diff_id: Digest,
    /// Size of the uncompressed tar.
    pub uncompressed_size: u64,
    /// The blob's compression.
    pub compression: Compression,
    /// Number of tar entries that changed the filesystem.
    pub entries: u64,
    /// Entries owned by a uid or gid above 65535 (rootless runtimes cannot unpack them),
    /// counted over every entry of the layer, hidden ones included.
    pub out_of_range: u64,
    /// The first of them: path, uid, gid.
    pub out_of_range_example: Option<(ImagePath, u64, u64)>,
}

/// The highest id the default rootless range (65536 ids from /etc/subuid) maps.
pub const MAX_MAPPED_ID: u64 = 65535;

/// Why a layer could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The blob's bytes do not match its descriptor.
    #[error("layer {digest} is corrupted: {mismatch}")]
    Corrupt {
        /// The layer's digest.
        digest: Digest,
        /// What did not match.
        mismatch: DigestMismatch,
    },
    /// The uncompressed bytes do not match the config's diff_id.
    #[error("layer {digest} does not match its diff_id: the config says {expected}, the content is {actual}")]
    DiffId {
        /// The layer's digest.
        digest: Digest,
        /// What the config says.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// The blob is not a valid (compressed) tar.
    #[error("layer {digest} is not a valid {what}: {source}")]
    Format {
        /// The layer's digest.
        digest: Digest,
        /// `gzip stream`, `tar archive`, ...
        what: &'static str,
        /// The reader's error.
        source: io::Error,
    },
    /// An entry of the layer is unsafe or invalid.
    #[error("layer {digest}: {source}")]
    Entry {
        /// The layer's digest.
        digest: Digest,
        /// The entry problem.
        source: EntryError,
    },
    /// The visitor refused an entry.
    #[error("layer {digest}: {message}")]
    Visit {
        /// The layer's digest.
        digest: Digest,
        /// Why.
        message: String,
    },
    /// An extension header is larger than any real image needs.
    #[error("layer {digest}: {source}")]
    Oversized {
        /// The layer's digest.
        digest: Digest,
        /// Which header, and how large.
        source: Oversized,
    },
    /// A thread reading the layer panicked: a bug.
    #[error("reading layer {digest} failed: internal error: {message}")]
    Internal {
        /// The layer's digest.
        digest: Digest,
        /// The panic's message.
        message: String,
    },
    /// Reading the blob failed (network, disk).
    #[error("reading layer {digest} failed: {source}")]
    Read {
        /// The layer's digest.
        digest: Digest,
        /// The I/O error.
        source: io::Error,
    },
}

/// An error raised by a visitor, with the message to show.
#[derive(Debug)]
pub struct VisitError(pub String);

/// Called for each entry of a layer: its path, its change, and a reader over its body.
pub type Visitor<'a> = dyn FnMut(ImagePath, Change, &mut dyn Read) -> Result<(), VisitError> + 'a;

/// Reads a layer blob once: verifies it, decompresses it, and calls `visit` for each entry
/// with the entry's normalized path, its change, and a reader over its body. The blob is
/// read, inflated, and hashed and parsed on three threads (see [`super::stream`]); a
/// cancelled `cancel` ends the read within a fraction of a second.
pub fn read_layer<R: Read + Send + 'static>(
    blob: R,
    desc: &Descriptor,
    expected_diff_id: Option<&Digest>,
    visit: &mut Visitor<'_>,
    cancel: &Cancel,
) -> Result<LayerInfo, LayerError> {
    let digest = desc.digest.clone();
    let read_error = |source| LayerError::Read {
        digest: digest.clone(),
        source,
    };
    let mut stream = LayerStream::start(blob, desc, cancel).map_err(read_error)?;
    let panics = stream.panics.clone();
    let compression = stream.compression();
    let parsed = parse(&mut stream.tar, &digest, compression, visit);
    // Whatever happened, the blob's own integrity is the first thing to report: a
    // corrupted or truncated download shows up as a gzip or tar error otherwise.
    let (tail, verdict) = match parsed {
        Ok(_) => stream.finish(),
        Err(_) => (Ok((digest.clone(), 0)), stream.abandon()),
    };
    if let Some(message) = panics.first() {
        return Err(LayerError::Internal { digest, message });
    }
    if let Err(e) = &verdict {
        if let Some(mismatch) = DigestMismatch::from_io(e) {
            return Err(LayerError::Corrupt {
                digest,
                mismatch: mismatch.clone(),
            });
        }
    }
    let entries = parsed?;
    // The tar ends before the stream does (end-of-archive blocks, padding): the rest was
    // read so the diff_id covers every byte.
    let (diff_id, uncompressed_size) = tail.map_err(|source| LayerError::Format {
        digest: digest.clone(),
        what: format_name(compression),
        source,
    })?;
    verdict.map_err(read_error)?;
    if let Some(expected) = expected_diff_id {
        if *expected != diff_id {
            return Err(LayerError::DiffId {
                digest,
                expected: expected.clone(),
                actual: diff_id,
            });
        }
    }
    Ok(LayerInfo {
        digest,
        diff_id,
        uncompressed_size,
        compression,
        entries,
        out_of_range: 0,
        out_of_range_example: None,
    })
}

fn format_name(compression: Compression) -> &'static str {
    match compression {
        Compression::None => "tar archive",
        Compression::Gzip => "gzip stream",
        Compression::Zstd => "zstd stream",
    }
}

fn parse(
    tar: &mut TarReader,
    digest: &Digest,
    compression: Compression,
    visit: &mut Visitor<'_>,
) -> Result<u64, LayerError> {
    let what = format_name(compression);
    let format_err = |source: io::Error| LayerError::Format {
        digest: digest.clone(),
        what,
        source,
    };
    let mut entries = 0u64;
    let mut archive = tar::Archive::new(TarGuard::new(tar));
    let iter = archive.entries().map_err(format_err)?;
    for entry in iter {
        let mut entry = entry.map_err(|source| match Oversized::from_io(&source) {
            Some(o) => LayerError::Oversized {
                digest: digest.clone(),
                source: o.clone(),
            },
            None => LayerError::Format {
                digest: digest.clone(),
                what: if compression == Compression::None {
                    what
                } else {
                    "compressed tar archive"
                },
                source,
            },
        })?;
        let Some((path, change)) = read_entry(&mut entry).map_err(|source| LayerError::Entry {
            digest: digest.clone(),
            source,
        })?
        else {
            continue;
        };
        entries += 1;
        visit(path, change, &mut entry).map_err(|VisitError(message)| LayerError::Visit {
            digest: digest.clone(),
            message,
        })?;
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::Kind;
    use std::io::Write;

    /// A header whose uid and gid fields are left blank (read as 0).
    fn header(kind: tar::EntryType, size: u64) -> tar::Header {
        crate::testkit::tar_header(kind, size, 0o755)
    }

    fn pax(records: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in records {
            let mut body = format!(" {k}=").into_bytes();
            body.extend_from_slice(v);
            body.push(b'\n');
            let mut len = body.len() + 1;
            while len.to_string().len() + body.len() != len {
                len = len.to_string().len() + body.len();
            }
            out.extend_from_slice(len.to_string().as_bytes());
            out.extend_from_slice(&body);
        }
        out
    }

    /// A layer with a GNU long name, a PAX path and ids, a base-256 uid, an xattr, a hard
    /// link, a device and a whiteout.
    fn tricky_layer() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let long = format!("usr/share/{}/file.txt", "d".repeat(120));
        b.append_data(&mut header(tar::EntryType::Regular, 3), &long, &b"abc"[..])
            .unwrap();

        let records = pax(&[
            ("path", format!("opt/{}", "p".repeat(150)).as_bytes()),
            ("uid", b"3000000001"),
            ("gid", b"70000"),
            (
                "SCHILY.xattr.security.capability",
                &[1, 0, 0, 2, 0, 4, 0, 0],
            ),
        ]);
        b.append_data(
            &mut header(tar::EntryType::XHeader, records.len() as u64),
            "PaxHeaders/x",
            records.as_slice(),
        )
        .unwrap();
        b.append_data(
            &mut header(tar::EntryType::Regular, 2),
            "short-name",
            &b"hi"[..],
        )
        .unwrap();

        let mut big = header(tar::EntryType::Regular, 0);
        big.set_uid(4_000_000_000);
        b.append_data(&mut big, "big-uid", io::empty()).unwrap();

        let mut link = header(tar::EntryType::Link, 0);
        b.append_link(&mut link, "hard", "big-uid").unwrap();
        let mut dev = header(tar::EntryType::Char, 0);
        dev.set_device_major(1).unwrap();
        dev.set_device_minor(3).unwrap();
        b.append_data(&mut dev, "dev/null", io::empty()).unwrap();
        b.append_data(
            &mut header(tar::EntryType::Regular, 0),
            "etc/.wh.gone",
            io::empty(),
        )
        .unwrap();
        b.into_inner().unwrap()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn read_all(
        blob: &[u8],
        diff_id: Option<&Digest>,
    ) -> Result<Vec<(String, Change)>, LayerError> {
        let desc = Descriptor::new("x", Digest::sha256_of(blob), blob.len() as u64);
        let mut seen = Vec::new();
        read_layer(
            io::Cursor::new(blob.to_vec()),
            &desc,
            diff_id,
            &mut |path, change, _| {
                seen.push((path.display(), change));
                Ok(())
            },
            &Cancel::new(),
        )?;
        Ok(seen)
    }

    #[test]
    fn reads_long_names_pax_records_and_large_ids() {
        let tar = tricky_layer();
        let seen = read_all(&gzip(&tar), Some(&Digest::sha256_of(&tar))).unwrap();
        let names: Vec<&str> = seen.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            names,
            [
                format!("/usr/share/{}/file.txt", "d".repeat(120)).as_str(),
                &format!("/opt/{}", "p".repeat(150)),
                "/big-uid",
                "/hard",
                "/dev/null",
                "/etc/gone",
            ]
        );
        let Change::Put(pax) = &seen[1].1 else {
            panic!()
        };
        assert_eq!(seen[1].0, format!("/opt/{}", "p".repeat(150)));
        assert_eq!((pax.uid, pax.gid), (3_000_000_001, 70_000));
        assert_eq!(
            pax.xattrs["security.capability"],
            vec![1, 0, 0, 2, 0, 4, 0, 0]
        );
        let Change::Put(big) = &seen[2].1 else {
            panic!()
        };
        assert_eq!(big.uid, 4_000_000_000);
        let Change::Put(link) = &seen[3].1 else {
            panic!()
        };
        assert_eq!(link.kind, Kind::Hardlink);
        assert_eq!(link.hardlink_target().unwrap().display(), "/big-uid");
        let Change::Put(dev) = &seen[4].1 else {
            panic!()
        };
        assert_eq!((dev.kind, dev.device), (Kind::Char, (1, 3)));
        assert_eq!(seen[5], ("/etc/gone".to_string(), Change::Whiteout));
    }

    #[test]
    fn a_huge_long_name_is_refused_without_reading_it() {
        // 4 MiB of "name" (one letter, so the layer stays small), then a file.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNULongName);
        h.set_path("././@LongLink").unwrap();
        h.set_size(4 << 20);
        h.set_cksum();
        b.append(&h, io::repeat(b'a').take(4 << 20)).unwrap();
        b.append_data(&mut header(tar::EntryType::Regular, 1), "f", &b"x"[..])
            .unwrap();
        let tar = b.into_inner().unwrap();
        let blob = gzip(&tar);
        assert!(blob.len() < 100_000, "{}", blob.len());
        let err = read_all(&blob, Some(&Digest::sha256_of(&tar))).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "layer {}: the header at byte 0 starts a GNU long name of 4194304 bytes; more than 16384 are refused, as no real image needs them",
                Digest::sha256_of(&blob)
            )
        );
    }

    #[test]
    fn reads_zstd_and_plain_tar_and_multi_member_gzip() {
        let tar = tricky_layer();
        let diff_id = Digest::sha256_of(&tar);
        // Every form gives the same entries as the single gzip member does.
        let expected = read_all(&gzip(&tar), Some(&diff_id)).unwrap();
        assert_eq!(expected.len(), 6);
        let zstd = zstd::encode_all(tar.as_slice(), 3).unwrap();
        assert_eq!(read_all(&zstd, Some(&diff_id)).unwrap(), expected);
        assert_eq!(read_all(&tar, Some(&diff_id)).unwrap(), expected);
        let half = tar.len() / 2 / 512 * 512;
        let mut two = gzip(&tar[..half]);
        two.extend(gzip(&tar[half..]));
        assert_eq!(read_all(&two, Some(&diff_id)).unwrap(), expected);
    }

    #[test]
    fn reports_the_digest_first_when_bytes_are_damaged() {
        let mut blob = gzip(&tricky_layer());
        let desc = Descriptor::new("x", Digest::sha256_of(&blob), blob.len() as u64);
        let n = blob.len();
        blob[n / 2] ^= 0x55;
        let fail = |bytes: &[u8]| {
            read_layer(
                io::Cursor::new(bytes.to_vec()),
                &desc,
                None,
                &mut |_, _, _| Ok(()),
                &Cancel::new(),
            )
            .unwrap_err()
        };
        let err = fail(&blob);
        assert!(
            matches!(
                err,
                LayerError::Corrupt {
                    mismatch: DigestMismatch::Digest { .. },
                    ..
                }
            ),
            "{err}"
        );
        let err = fail(&blob[..n - 10]);
        assert!(
            matches!(
                err,
                LayerError::Corrupt {
                    mismatch: DigestMismatch::Size { .. },
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn refuses_a_wrong_diff_id() {
        let blob = gzip(&tricky_layer());
        let err = read_all(&blob, Some(&Digest::sha256_of(b"other"))).unwrap_err();
        assert!(matches!(err, LayerError::DiffId { .. }), "{err}");
    }
}
