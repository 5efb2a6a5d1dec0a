//! What one pass over a layer yields, kept for the next image that has the same layer: a
//! bot converting many images on one base reads that base once, not once per image.
//!
//! An entry is keyed by the blob's digest, its diff_id and a fingerprint of what the scan
//! was asked to keep of it ([`CaptureKey`]); it holds the layer's entries (their metadata
//! and the small text bodies kept in memory) and, in a file of its own, the bodies of the
//! files to re-own. Only a layer that was read to its end and verified (digest and
//! diff_id) is kept. The cache is bounded by a byte budget (entries in memory and bodies
//! on disk counted together); the least recently used entries go first, and an entry
//! larger than the whole budget is not kept.

use crate::control::Locked;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::layer::merged::LayerChange;
use crate::layer::scan::{BodySpool, TEXT_CAP};
use crate::layer::{Change, Content, LayerInfo};
use crate::model::Digest;

/// What one layer's scan is asked to keep, as a digest: the recipes' capture globs, the
/// places the command's script may be, the caps, and the version of the scan itself. Two
/// scans with the same key keep the same bodies of the same layer.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CaptureKey(Digest);

impl CaptureKey {
    /// The key of a scan that keeps what `parts` describe (each a line of the policy).
    pub fn new<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> CaptureKey {
        let mut text = format!(
            "unroot layer scan {} text_cap={} config_budget={}\n",
            env!("CARGO_PKG_VERSION"),
            TEXT_CAP,
            crate::analyze::service_config::CONFIG_BUDGET,
        )
        .into_bytes();
        let mut lines: Vec<&[u8]> = parts.into_iter().collect();
        lines.sort_unstable();
        lines.dedup();
        for l in lines {
            // Length-prefixed, so no two policies write the same bytes.
            text.extend_from_slice(format!("{}:", l.len()).as_bytes());
            text.extend_from_slice(l);
            text.push(b'\n');
        }
        CaptureKey(Digest::sha256_of(&text))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    digest: Digest,
    diff_id: Digest,
    capture: CaptureKey,
}

/// One layer as a scan saw it.
pub(crate) struct CachedLayer {
    /// What was learned of it.
    pub info: LayerInfo,
    /// Its entries in the order they were read; a `Spooled` body's offset is in `bodies`.
    pub changes: Vec<LayerChange>,
    /// The bodies of the files to re-own, when it has any.
    pub bodies: Option<BodySpool>,
    cost: u64,
}

struct Slot {
    layer: Arc<CachedLayer>,
    used: u64,
}

#[derive(Default)]
struct Inner {
    slots: HashMap<Key, Slot>,
    bytes: u64,
    clock: u64,
}

/// A bounded cache of layer scans, shared by the jobs of a session.
pub struct LayerCache {
    dir: PathBuf,
    budget: u64,
    inner: Mutex<Inner>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// What a cache has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Layers served from the cache.
    pub hits: u64,
    /// Layers read because the cache did not have them.
    pub misses: u64,
    /// Layers held.
    pub layers: u64,
    /// Bytes held (in memory and on disk), of the budget.
    pub bytes: u64,
    /// The budget.
    pub budget: u64,
}

/// The memory an entry takes besides its path and bodies (the node, the metadata, the
/// vector's slot), an estimate.
const ENTRY_OVERHEAD: u64 = 192;

impl LayerCache {
    /// A cache holding at most `budget` bytes; the bodies of files to re-own go to
    /// (unlinked) files in `dir`.
    pub fn new(dir: &Path, budget: u64) -> LayerCache {
        LayerCache {
            dir: dir.to_path_buf(),
            budget,
            inner: Mutex::new(Inner::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The budget, in bytes.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Hits, misses and what is held.
    pub fn stats(&self) -> CacheStats {
        let inner = self.lock();
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            layers: inner.slots.len() as u64,
            bytes: inner.bytes,
            budget: self.budget,
        }
    }

    /// The scan of this layer, when it is held; counts a hit or a miss.
    pub(crate) fn get(
        &self,
        digest: &Digest,
        diff_id: &Digest,
        capture: &CaptureKey,
    ) -> Option<Arc<CachedLayer>> {
        let key = Key {
            digest: digest.clone(),
            diff_id: diff_id.clone(),
            capture: capture.clone(),
        };
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        match inner.slots.get_mut(&key) {
            Some(slot) => {
                slot.used = now;
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(slot.layer.clone())
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// A recorder for a layer being read, or `None` when the cache keeps nothing.
    pub(crate) fn recorder(&self) -> Option<Recorder> {
        (self.budget > 0).then(|| Recorder {
            changes: Vec::new(),
            cost: 0,
            limit: self.budget,
            over: false,
        })
    }

    /// Keeps a layer that was read and verified, its bodies copied from `spool` (where
    /// the scan kept them). Evicts the least recently used entries to make room; a layer
    /// the recorder gave up on, or one that cannot be copied, is not kept.
    pub(crate) fn insert(
        &self,
        capture: &CaptureKey,
        info: &LayerInfo,
        recorder: Recorder,
        spool: &BodySpool,
    ) -> io::Result<()> {
        if recorder.over {
            return Ok(());
        }
        let mut cost = recorder.cost;
        let mut changes = recorder.changes;
        let mut bodies = None;
        for c in &mut changes {
            if let (Some(Content::Spooled { offset }), Change::Put(meta)) =
                (&mut c.content, &c.change)
            {
                cost += meta.size;
                if cost > self.budget {
                    return Ok(());
                }
                let held = match &mut bodies {
                    Some(b) => b,
                    None => bodies.insert(BodySpool::new_in(&self.dir, self.budget)?),
                };
                *offset = held.append(&mut spool.reader(*offset, meta.size), meta.size)?;
            }
        }
        let key = Key {
            digest: info.digest.clone(),
            diff_id: info.diff_id.clone(),
            capture: capture.clone(),
        };
        let layer = Arc::new(CachedLayer {
            info: info.clone(),
            changes,
            bodies,
            cost,
        });
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        if let Some(old) = inner.slots.remove(&key) {
            inner.bytes -= old.layer.cost;
        }
        while inner.bytes + cost > self.budget {
            let Some(oldest) = inner
                .slots
                .iter()
                .min_by_key(|(_, s)| s.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            let gone = inner.slots.remove(&oldest).expect("just found");
            inner.bytes -= gone.layer.cost;
        }
        inner.bytes += cost;
        inner.slots.insert(key, Slot { layer, used: now });
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.locked()
    }
}

/// The entries of a layer as it is read, kept for the cache until they cost more than
/// its budget.
pub(crate) struct Recorder {
    changes: Vec<LayerChange>,
    cost: u64,
    limit: u64,
    over: bool,
}

impl Recorder {
    /// One more entry.
    pub fn record(&mut self, change: &LayerChange) {
        if self.over {
            return;
        }
        self.cost += ENTRY_OVERHEAD + change.path.as_bytes().len() as u64;
        if let Some(Content::Bytes(b)) = &change.content {
            self.cost += b.len() as u64;
        }
        if self.cost > self.limit {
            self.over = true;
            self.changes = Vec::new();
        } else {
            self.changes.push(change.clone());
        }
    }
}

impl CachedLayer {
    /// The entries again, for a scan whose kept bodies go to `spool`: each body to
    /// re-own is copied there (a local copy, no layer is read).
    pub fn replay(&self, spool: &BodySpool, push: &mut dyn FnMut(LayerChange)) -> io::Result<()> {
        for c in &self.changes {
            let mut c = c.clone();
            if let (Some(Content::Spooled { offset }), Change::Put(meta), Some(bodies)) =
                (&mut c.content, &c.change, &self.bodies)
            {
                *offset = spool.append(&mut bodies.reader(*offset, meta.size), meta.size)?;
            }
            push(c);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::{Compression, ImagePath, Kind, Meta};
    use std::io::Read;

    fn file(path: &str, size: u64, content: Option<Content>) -> LayerChange {
        LayerChange {
            path: ImagePath::new(path),
            change: Change::Put(Meta {
                kind: Kind::File,
                mode: 0o755,
                uid: 1000,
                gid: 1000,
                size,
                mtime: 0,
                link: None,
                device: (0, 0),
                xattrs: Default::default(),
            }),
            content,
        }
    }

    fn info(n: u8) -> LayerInfo {
        LayerInfo {
            digest: Digest::sha256_of(&[n]),
            diff_id: Digest::sha256_of(&[n, n]),
            uncompressed_size: 0,
            compression: Compression::Gzip,
            entries: 1,
            out_of_range: 0,
            out_of_range_example: None,
        }
    }

    /// A layer of one file to re-own, whose body of `size` bytes is in `spool`.
    fn layer(spool: &BodySpool, size: u64) -> (Recorder, u64) {
        let body = vec![7u8; size as usize];
        let offset = spool.append(&mut body.as_slice(), size).unwrap();
        (
            Recorder {
                changes: vec![file("/bin/app", size, Some(Content::Spooled { offset }))],
                cost: ENTRY_OVERHEAD + 8,
                limit: u64::MAX,
                over: false,
            },
            offset,
        )
    }

    #[test]
    fn bodies_come_back_the_least_recently_used_go_first_and_keys_differ_by_policy() {
        let dir = tempfile::tempdir().unwrap();
        let scan = BodySpool::new_in(dir.path(), 1 << 30).unwrap();
        let key = CaptureKey::new([b"capture /etc/nginx/**".as_slice()]);
        assert_ne!(key, CaptureKey::new([]), "what is kept is in the key");
        assert_eq!(
            key,
            CaptureKey::new([
                b"capture /etc/nginx/**".as_slice(),
                b"capture /etc/nginx/**"
            ]),
            "the same policy, however often a glob is named"
        );
        // Room for two layers of 1000-byte bodies, not three.
        let cache = LayerCache::new(dir.path(), 2 * (1000 + ENTRY_OVERHEAD + 8) + 10);
        for n in [1, 2] {
            let (rec, _) = layer(&scan, 1000);
            cache.insert(&key, &info(n), rec, &scan).unwrap();
        }
        let one = cache.get(&info(1).digest, &info(1).diff_id, &key).unwrap();
        assert!(cache
            .get(&info(1).digest, &info(1).diff_id, &CaptureKey::new([]))
            .is_none());
        // Layer 2 is now the least recently used: a third layer pushes it out.
        let (rec, _) = layer(&scan, 1000);
        cache.insert(&key, &info(3), rec, &scan).unwrap();
        assert!(cache.get(&info(2).digest, &info(2).diff_id, &key).is_none());
        assert!(cache.get(&info(3).digest, &info(3).diff_id, &key).is_some());
        let stats = cache.stats();
        assert_eq!((stats.layers, stats.hits, stats.misses), (2, 2, 2));
        assert!(stats.bytes <= stats.budget);

        // Replayed into another scan's spool, the body reads back as it was.
        let other = BodySpool::new_in(dir.path(), 1 << 30).unwrap();
        let mut changes = Vec::new();
        one.replay(&other, &mut |c| changes.push(c)).unwrap();
        let [c] = changes.as_slice() else {
            panic!("{changes:?}")
        };
        let Some(Content::Spooled { offset }) = c.content else {
            panic!("{c:?}")
        };
        let mut back = Vec::new();
        other.reader(offset, 1000).read_to_end(&mut back).unwrap();
        assert_eq!(back, vec![7u8; 1000]);

        // A layer larger than the whole budget is not kept, and evicts nothing.
        let (rec, _) = layer(&scan, 10_000);
        cache.insert(&key, &info(4), rec, &scan).unwrap();
        assert!(cache.get(&info(4).digest, &info(4).diff_id, &key).is_none());
        assert_eq!(cache.stats().layers, 2);
    }
}
