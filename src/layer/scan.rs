//! One pass over an image's layers that builds the merged view and keeps the bodies that
//! later steps need: small text files in memory (capped), and files that may be re-owned
//! in a spool file on disk, so no layer is ever read twice.

use crate::control::Locked;
use std::fs::File;
use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::range::RangeReader;
use crate::control::Cancel;
use crate::model::{Descriptor, Digest};

use super::entry::{Change, Kind, Meta};
use super::merged::{Content, LayerChange, MergedView};
use super::path::ImagePath;
use super::reader::{read_layer, LayerError, LayerInfo, VisitError, MAX_MAPPED_ID};

/// The largest text file kept in memory; bigger ones are marked [`Content::TooLarge`].
pub const TEXT_CAP: u64 = 1024 * 1024;

/// What to keep of a file's body while scanning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// Nothing.
    Nothing,
    /// Keep it in memory if it is at most [`TEXT_CAP`] bytes.
    Text,
    /// Copy it to the spool (it may go into the new layer).
    Body,
}

/// Decides, per entry, what to keep. Only regular files are asked.
pub trait CapturePolicy {
    /// What to keep of this file.
    fn want(&self, path: &ImagePath, meta: &Meta) -> Want;
}

/// A temporary file that holds kept bodies. Layers read on several threads append to it
/// one body at a time; readers read by offset. Each body starts at a multiple of
/// [`SPOOL_BLOCK`] and is kept in blocks of that size: a block of zeros is not written
/// (the file keeps it as a hole), so a sparse file, or one of zeros, costs no disk, and
/// the bytes that are written are counted against a budget. The blocks of zeros of a body
/// are remembered ([`BodySpool::data_map`]) so it can be written sparsely again; which
/// blocks they are depends only on the body's bytes.
pub struct BodySpool {
    file: File,
    len: Mutex<u64>,
    written: AtomicU64,
    budget: u64,
    /// The data regions of the bodies that have blocks of zeros, by offset.
    maps: Mutex<std::collections::BTreeMap<u64, DataMap>>,
}

/// The size of the blocks a body is kept in, and the alignment of bodies in the spool.
pub const SPOOL_BLOCK: u64 = 64 * 1024;

/// The parts of a body that hold data, as `(start, length)` from the body's start, in
/// order; what lies between them (and after the last) is zeros.
pub type DataMap = Arc<[(u64, u64)]>;

/// The default budget of a spool: the bytes of files to re-own it may hold on disk.
pub const SPOOL_BUDGET: u64 = 4 << 30;

/// The spool would hold more than its budget.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the files to re-own hold more than {budget} bytes ({}); raise `--max-spool` if the image really has that much code owned by non-root users", crate::model::human_bytes(*.budget))]
pub struct SpoolFull {
    /// The budget, in bytes.
    pub budget: u64,
}

impl BodySpool {
    /// A new spool in the system's temporary directory, with the default budget; it is
    /// deleted when dropped (the file is unlinked at once).
    pub fn new() -> io::Result<BodySpool> {
        BodySpool::new_in(&std::env::temp_dir(), SPOOL_BUDGET)
    }

    /// A new spool in `dir` holding at most `budget` bytes, unlinked at once.
    pub fn new_in(dir: &std::path::Path, budget: u64) -> io::Result<BodySpool> {
        Ok(BodySpool {
            file: tempfile::tempfile_in(dir)?,
            len: Mutex::new(0),
            written: AtomicU64::new(0),
            budget,
            maps: Mutex::new(Default::default()),
        })
    }

    /// Bytes held (or reserved by bodies still arriving), holes included.
    pub fn len(&self) -> u64 {
        *self.len.locked()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies `size` bytes of `body` into a range reserved for it, so that other threads
    /// can append while this body is still arriving. Blocks of zeros are skipped (they
    /// read back as zeros from the hole).
    pub fn append(&self, body: &mut dyn Read, size: u64) -> io::Result<u64> {
        use std::os::unix::fs::FileExt;
        thread_local! {
            /// The block buffer of each thread that spools, made once.
            static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; SPOOL_BLOCK as usize]);
        }
        let offset = {
            let mut len = self.len.locked();
            let offset = len.next_multiple_of(SPOOL_BLOCK);
            *len = offset + size;
            offset
        };
        let mut body = body.take(size);
        let mut at = offset;
        let mut data: Vec<(u64, u64)> = Vec::new();
        let mut holes = false;
        BUF.with(|buf| -> io::Result<()> {
            let mut buf = buf.borrow_mut();
            loop {
                // A whole block (the last may be shorter), however the body's reads come.
                let mut n = 0;
                while n < buf.len() {
                    match body.read(&mut buf[n..]) {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    }
                }
                if n == 0 {
                    return Ok(());
                }
                let block = &buf[..n];
                if !is_zero(block) {
                    let total = self.written.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
                    if total > self.budget {
                        return Err(io::Error::other(SpoolFull {
                            budget: self.budget,
                        }));
                    }
                    self.file.write_all_at(block, at)?;
                    let start = at - offset;
                    match data.last_mut() {
                        Some((s, l)) if *s + *l == start => *l += n as u64,
                        _ => data.push((start, n as u64)),
                    }
                } else {
                    holes = true;
                }
                at += n as u64;
                if n < buf.len() {
                    return Ok(());
                }
            }
        })?;
        if at - offset != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file body ended early",
            ));
        }
        if holes {
            let mut maps = self.maps.locked();
            maps.insert(offset, data.into());
        }
        // A body that ends in a hole still ends: the file is as long as what it holds.
        if self.file.metadata()?.len() < at {
            self.file.set_len(at)?;
        }
        Ok(offset)
    }

    /// The data regions of the body kept at `offset`, when it has blocks of zeros (none:
    /// all of it is data).
    pub fn data_map(&self, offset: u64) -> Option<DataMap> {
        self.maps.locked().get(&offset).cloned()
    }

    /// A reader over `len` bytes kept at `offset`.
    pub fn reader(&self, offset: u64, len: u64) -> RangeReader<&File> {
        RangeReader::new(&self.file, offset, len)
    }
}

/// Whether every byte is zero (16 at a time).
fn is_zero(bytes: &[u8]) -> bool {
    let chunks = bytes.chunks_exact(16);
    let rest = chunks.remainder();
    chunks
        .map(|c| u128::from_ne_bytes(c.try_into().expect("16 bytes")))
        .fold(0, |acc, w| acc | w)
        == 0
        && rest.iter().all(|&b| b == 0)
}

/// The result of scanning: the merged view, what was learned of each layer, and the spool.
pub struct Scan {
    /// The final filesystem.
    pub view: MergedView,
    /// Per layer, base first.
    pub layers: Vec<LayerInfo>,
    /// Bodies kept on disk.
    pub spool: Arc<BodySpool>,
}

impl Scan {
    /// An empty scan whose kept bodies go to a file in `dir`, at most `budget` bytes.
    pub fn new_in(dir: &std::path::Path, budget: u64) -> io::Result<Scan> {
        Ok(Scan {
            view: MergedView::new(),
            layers: Vec::new(),
            spool: Arc::new(BodySpool::new_in(dir, budget)?),
        })
    }

    /// Reads the next layer from `blob` and merges it. The layer is merged only once its
    /// digest and diff_id are verified.
    pub fn add_layer<R: Read + Send + 'static>(
        &mut self,
        blob: R,
        desc: &Descriptor,
        diff_id: Option<&Digest>,
        policy: &dyn CapturePolicy,
        cancel: &Cancel,
    ) -> Result<&LayerInfo, LayerError> {
        let layer = read_unmerged(blob, desc, diff_id, policy, &self.spool, cancel)?;
        Ok(self.merge(layer))
    }

    /// Merges a layer read by [`read_unmerged`]; layers must come base first.
    pub fn merge(&mut self, layer: UnmergedLayer) -> &LayerInfo {
        self.view.apply_layer(layer.changes);
        self.layers.push(layer.info);
        self.layers.last().expect("just pushed")
    }
}

/// A layer read and verified, waiting to be merged in order.
pub struct UnmergedLayer {
    info: LayerInfo,
    changes: Vec<LayerChange>,
}

/// Reads a layer, verifying its digest and diff_id, keeping the bodies `policy` wants in
/// `spool`. Layers can be read on several threads at once and merged in order after.
pub fn read_unmerged<R: Read + Send + 'static>(
    blob: R,
    desc: &Descriptor,
    diff_id: Option<&Digest>,
    policy: &dyn CapturePolicy,
    spool: &BodySpool,
    cancel: &Cancel,
) -> Result<UnmergedLayer, LayerError> {
    let mut changes: Vec<LayerChange> = Vec::new();
    let info = read_changes(blob, desc, diff_id, policy, spool, cancel, &mut |c| {
        changes.push(c)
    })?;
    Ok(UnmergedLayer { info, changes })
}

/// Reads a layer as [`read_unmerged`] does, giving each entry to `merge` as it is read
/// (before the layer is verified: a layer that fails returns an error after some of its
/// entries were given).
pub fn read_changes<R: Read + Send + 'static>(
    blob: R,
    desc: &Descriptor,
    diff_id: Option<&Digest>,
    policy: &dyn CapturePolicy,
    spool: &BodySpool,
    cancel: &Cancel,
    merge: &mut dyn FnMut(LayerChange),
) -> Result<LayerInfo, LayerError> {
    let mut out_of_range = 0u64;
    let mut example = None;
    let mut info = read_layer(
        blob,
        desc,
        diff_id,
        &mut |path, change, body| {
            if let Change::Put(meta) = &change {
                if meta.uid > MAX_MAPPED_ID || meta.gid > MAX_MAPPED_ID {
                    out_of_range += 1;
                    example.get_or_insert_with(|| (path.clone(), meta.uid, meta.gid));
                }
            }
            let content = match &change {
                Change::Put(meta) if meta.kind == Kind::File => {
                    keep(policy.want(&path, meta), meta, body, spool)
                        .map_err(|e| VisitError(format!("reading `{path}`: {e}")))?
                }
                _ => None,
            };
            merge(LayerChange {
                path,
                change,
                content,
            });
            Ok(())
        },
        cancel,
    )?;
    info.out_of_range = out_of_range;
    info.out_of_range_example = example;
    Ok(info)
}

impl Scan {
    /// The bytes of a kept text file, `None` when not kept (or too large).
    pub fn text(&self, path: &ImagePath) -> Option<&[u8]> {
        match self.view.get(path)?.content.as_ref()? {
            Content::Bytes(b) => Some(b.as_slice()),
            _ => None,
        }
    }
}

fn keep(
    want: Want,
    meta: &Meta,
    body: &mut dyn Read,
    spool: &BodySpool,
) -> io::Result<Option<Content>> {
    Ok(match want {
        Want::Nothing => None,
        Want::Text if meta.size > TEXT_CAP => Some(Content::TooLarge),
        Want::Text => {
            let mut buf = Vec::with_capacity(meta.size as usize);
            body.take(meta.size).read_to_end(&mut buf)?;
            Some(Content::Bytes(Arc::new(buf)))
        }
        Want::Body => Some(Content::Spooled {
            offset: spool.append(body, meta.size)?,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn zeros_are_holes_and_the_budget_holds() {
        let dir = tempfile::tempdir().unwrap();
        let spool = BodySpool::new_in(dir.path(), 1 << 20).unwrap();
        // A 256 MiB file of zeros with 4 KiB of data at its end, as a sparse file reads.
        let size = 256u64 << 20;
        let mut body = io::repeat(0)
            .take(size - 4096)
            .chain(io::repeat(7).take(4096));
        let offset = spool.append(&mut body, size).unwrap();
        let used = spool.file.metadata().unwrap().blocks() * 512;
        assert!(used < 1 << 20, "{used} bytes on disk for a sparse body");
        let mut back = Vec::new();
        spool.reader(offset, size).read_to_end(&mut back).unwrap();
        assert_eq!(back.len() as u64, size);
        assert!(back[..back.len() - 4096].iter().all(|&b| b == 0));
        assert!(back[back.len() - 4096..].iter().all(|&b| b == 7));
        // Data past the budget is refused, with the number.
        let err = spool
            .append(&mut io::repeat(1).take(2 << 20), 2 << 20)
            .unwrap_err();
        let full = err.get_ref().and_then(|e| e.downcast_ref::<SpoolFull>());
        assert_eq!(full, Some(&SpoolFull { budget: 1 << 20 }));
        assert!(
            err.to_string()
                .contains("more than 1048576 bytes (1.0 MiB)"),
            "{err}"
        );
    }
}
