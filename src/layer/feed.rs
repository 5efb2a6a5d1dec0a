//! Layers read at once, merged in order without holding them: the layer whose turn it is
//! (every layer below it is merged) puts its entries into the view as they are read; a
//! layer read ahead of its turn keeps its entries until then.
//!
//! Invariant: the view receives the entries of layer `n` only after every entry of the
//! layers below `n`, and those of one layer in the order they were read. A layer merged
//! while it is read is not yet verified; a scan that fails drops the view.

use crate::control::Locked;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::merged::{LayerChange, MergedView};

/// The view being built, and whose turn it is.
#[derive(Debug, Default)]
pub struct OrderedMerge {
    view: Mutex<MergedView>,
    /// The layer that merges now: every layer below it is merged.
    turn: AtomicUsize,
}

/// What a layer's reader gives back when the layer was read: its entries, when its turn
/// had not come while it was read.
#[derive(Debug)]
pub enum Fed {
    /// Every entry is in the view.
    Merged,
    /// The entries, to merge once the layers below are.
    Pending(Vec<LayerChange>),
}

impl OrderedMerge {
    /// A merge into `view`, starting with layer 0.
    pub fn new(view: MergedView) -> OrderedMerge {
        OrderedMerge {
            view: Mutex::new(view),
            turn: AtomicUsize::new(0),
        }
    }

    /// The feed of layer `layer`'s entries.
    pub fn feed(&self, layer: usize) -> Feed<'_> {
        Feed {
            merge: self,
            layer,
            pending: Vec::new(),
            live: false,
        }
    }

    /// Ends the turn of `layer`, whose reader returned `fed`: merges what it kept, and
    /// gives the turn to the next layer. Called for each layer in order, once.
    pub fn finish(&self, layer: usize, fed: Fed) {
        debug_assert_eq!(
            self.turn.load(Ordering::Acquire),
            layer,
            "layers end in order"
        );
        let mut view = self.lock();
        if let Fed::Pending(changes) = fed {
            for c in changes {
                view.apply(layer, c);
            }
        }
        // A layer with no entries counts too.
        view.applied(layer);
        drop(view);
        self.turn.store(layer + 1, Ordering::Release);
    }

    /// The view, once every reader is done.
    pub fn into_view(self) -> MergedView {
        self.view.into_inner().unwrap_or_else(|e| e.into_inner())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MergedView> {
        // A reader that panicked while merging fails its scan, which drops the view.
        self.view.locked()
    }
}

/// Where one layer's reader puts its entries.
pub struct Feed<'a> {
    merge: &'a OrderedMerge,
    layer: usize,
    pending: Vec<LayerChange>,
    /// The turn came: entries go to the view.
    live: bool,
}

impl Feed<'_> {
    /// Takes the next entry of the layer.
    pub fn push(&mut self, change: LayerChange) {
        if !self.live && self.merge.turn.load(Ordering::Acquire) == self.layer {
            self.live = true;
            let mut view = self.merge.lock();
            for c in self.pending.drain(..) {
                view.apply(self.layer, c);
            }
            self.pending = Vec::new();
        }
        if self.live {
            self.merge.lock().apply(self.layer, change);
        } else {
            self.pending.push(change);
        }
    }

    /// The layer was read: what is left for [`OrderedMerge::finish`].
    pub fn done(self) -> Fed {
        if self.live {
            Fed::Merged
        } else {
            Fed::Pending(self.pending)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::entry::{Change, Kind, Meta};
    use crate::layer::ImagePath;

    fn put(path: &str) -> LayerChange {
        LayerChange {
            path: ImagePath::new(path),
            change: Change::Put(Meta {
                kind: Kind::File,
                mode: 0o644,
                uid: 0,
                gid: 0,
                size: 0,
                mtime: 0,
                link: None,
                device: (0, 0),
                xattrs: Default::default(),
            }),
            content: None,
        }
    }

    fn whiteout(path: &str) -> LayerChange {
        LayerChange {
            path: ImagePath::new(path),
            change: Change::Whiteout,
            content: None,
        }
    }

    #[test]
    fn a_layer_read_ahead_waits_and_the_one_in_turn_streams() {
        let merge = OrderedMerge::new(MergedView::new());
        // Layer 1 is read first, before its turn: it keeps its entries.
        let mut upper = merge.feed(1);
        upper.push(whiteout("/a"));
        upper.push(put("/b"));
        // Layer 0 is in turn: its entries are in the view at once.
        let mut base = merge.feed(0);
        base.push(put("/a"));
        assert!(merge.lock().get(&ImagePath::new("/a")).is_some());
        let base = base.done();
        assert!(matches!(base, Fed::Merged));
        merge.finish(0, base);
        // Layer 1's turn came while it was still being read: what it kept goes in first.
        upper.push(put("/c"));
        assert!(merge.lock().get(&ImagePath::new("/a")).is_none());
        let upper = upper.done();
        assert!(matches!(upper, Fed::Merged));
        merge.finish(1, upper);
        let view = merge.into_view();
        let paths: Vec<String> = view.iter().map(|(p, _)| p.display()).collect();
        assert_eq!(paths, ["/b", "/c"]);
        assert_eq!(view.layer_count(), 2);
    }

    #[test]
    fn a_layer_done_before_its_turn_is_merged_at_its_turn() {
        let merge = OrderedMerge::new(MergedView::new());
        let mut upper = merge.feed(1);
        upper.push(whiteout("/a"));
        let upper = upper.done();
        assert!(matches!(&upper, Fed::Pending(c) if c.len() == 1));
        let mut base = merge.feed(0);
        base.push(put("/a"));
        base.push(put("/z"));
        let base = base.done();
        merge.finish(0, base);
        merge.finish(1, upper);
        let view = merge.into_view();
        let paths: Vec<String> = view.iter().map(|(p, _)| p.display()).collect();
        assert_eq!(paths, ["/z"]);
    }
}
