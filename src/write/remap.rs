//! Rewriting a layer whose entries are owned by ids above 65535: a rootless runtime with
//! the default subordinate id range fails to unpack such an entry, and a layer added on top
//! cannot help (the lower layer is unpacked first), so the layer itself is rewritten with
//! those ids mapped into range. Everything else of every entry is kept.

use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::layer::entry::{Kind, Meta};
use crate::layer::reader::MAX_MAPPED_ID;
use crate::layer::Compression;
use crate::layer::ImagePath;
use crate::model::digest::VerifyingReader;
use crate::model::Descriptor;

use crate::control::Cancel;
use crate::layer::scan::BodySpool;

use super::layer::{append_pax_xattrs, append_spooled, LayerWriter, NewLayer};

/// A rewritten layer and how many of its entries changed owner.
pub struct Remapped {
    /// The new layer.
    pub layer: NewLayer,
    /// Entries whose uid or gid was remapped.
    pub remapped: u64,
}

/// Rewrites the layer in `blob` (verified against `desc` as it streams): uids above 65535
/// become `uid`, gids above 65535 become 0.
pub fn remap_layer<R: Read>(
    blob: R,
    desc: &Descriptor,
    uid: u64,
    dir: &Path,
) -> io::Result<Remapped> {
    let verifying = VerifyingReader::new(blob, desc.digest.clone(), Some(desc.size));
    let mut buffered = BufReader::with_capacity(128 * 1024, verifying);
    let compression = Compression::detect(buffered.fill_buf()?);
    let decoder = compression.decoder(buffered)?;
    let mut archive = tar::Archive::new(crate::layer::guard::TarGuard::new(decoder));
    let mut writer = LayerWriter::new(dir)?;
    let mut remapped = 0u64;
    let mut entries = 0usize;
    let mut sparse: Option<BodySpool> = None;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw_path = entry.path_bytes().into_owned();
        let link = entry.link_name_bytes().map(|l| l.into_owned());
        let mut header = entry.header().clone();
        let mut owner = (header.uid().unwrap_or(0), header.gid().unwrap_or(0));
        let mut xattrs = std::collections::BTreeMap::new();
        if let Some(pax) = entry.pax_extensions()? {
            for ext in pax.flatten() {
                let number = || {
                    std::str::from_utf8(ext.value_bytes())
                        .ok()
                        .and_then(|v| v.split('.').next()?.parse::<u64>().ok())
                };
                match ext.key_bytes() {
                    b"uid" => owner.0 = number().unwrap_or(owner.0),
                    b"gid" => owner.1 = number().unwrap_or(owner.1),
                    key => {
                        if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                            xattrs.insert(
                                String::from_utf8_lossy(name).into_owned(),
                                ext.value_bytes().to_vec(),
                            );
                        }
                    }
                }
            }
        }
        let new_owner = (
            if owner.0 > MAX_MAPPED_ID {
                uid
            } else {
                owner.0
            },
            if owner.1 > MAX_MAPPED_ID { 0 } else { owner.1 },
        );
        if new_owner != owner {
            remapped += 1;
        }
        let tar = writer.tar();
        if !xattrs.is_empty() {
            let meta = Meta {
                kind: Kind::File,
                mode: 0,
                uid: 0,
                gid: 0,
                size: 0,
                mtime: 0,
                link: None,
                device: (0, 0),
                xattrs,
            };
            append_pax_xattrs(tar, &ImagePath::lexical(&raw_path), &meta)?;
        }
        header.set_uid(new_owner.0);
        header.set_gid(new_owner.1);
        let name = Path::new(OsStr::from_bytes(&raw_path));
        if header.entry_type() == tar::EntryType::GNUSparse {
            // The body reads expanded: kept in a spool (holes stay holes) and written
            // sparse again.
            let spool = match &mut sparse {
                Some(spool) => spool,
                None => sparse.insert(BodySpool::new_in(dir, u64::MAX)?),
            };
            let size = entry.size();
            let offset = spool.append(&mut entry, size)?;
            append_spooled(tar, &mut header, name, spool, offset, size, &Cancel::new())?;
            entries += 1;
            continue;
        }
        match header.entry_type() {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = link.unwrap_or_default();
                header.set_size(0);
                tar.append_link(&mut header, name, Path::new(OsStr::from_bytes(&target)))?;
            }
            _ => {
                header.set_size(entry.size());
                tar.append_data(&mut header, name, &mut entry)?;
            }
        }
        entries += 1;
    }
    // Read the blob to its end so its digest is checked.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink())?;
    Ok(Remapped {
        layer: writer.finish(entries)?,
        remapped,
    })
}
