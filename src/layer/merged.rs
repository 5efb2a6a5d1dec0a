//! The merged view of an image's layers: the final filesystem as path -> metadata.
//!
//! Invariant: the view never holds a path hidden by a whiteout or an opaque directory of a
//! higher layer, nor a path below a non-directory; [`MergedView::resolve`] never follows a
//! link outside the image root.

use std::collections::{btree_map, BTreeMap};
use std::sync::Arc;

use super::entry::{Change, Kind, Meta};
use super::path::ImagePath;

/// Where a file's body can be found, when it was kept while reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    /// A small file kept in memory.
    Bytes(Arc<Vec<u8>>),
    /// A file kept in the body spool at this offset.
    Spooled {
        /// Byte offset in the spool.
        offset: u64,
    },
    /// The file was wanted but is larger than the cap.
    TooLarge,
}

/// One path of the merged filesystem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Its metadata in the layer that last wrote it.
    pub meta: Meta,
    /// Index of that layer (0 = base).
    pub layer: usize,
    /// The body, when it was kept.
    pub content: Option<Content>,
}

/// One entry of a layer, ready to be merged.
#[derive(Clone, Debug)]
pub struct LayerChange {
    /// The path it affects.
    pub path: ImagePath,
    /// What it does.
    pub change: Change,
    /// The body, when kept.
    pub content: Option<Content>,
}

/// Why a path cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// Following links went round in circles (or more than 40 hops).
    #[error("too many levels of symbolic links resolving `{0}` (a symlink loop)")]
    Loop(String),
}

/// The maximum number of symlinks followed in one resolution, as Linux does.
const MAX_HOPS: usize = 40;

/// The final filesystem of the layers merged so far, as a tree: each path component is
/// stored once, in its directory, so deep trees of long names cost what their names do,
/// not what their full paths would.
#[derive(Debug)]
pub struct MergedView {
    /// Slot 0 is the root.
    slots: Vec<Slot>,
    /// Slots removed, to use again.
    free: Vec<u32>,
    /// Paths with a node.
    count: usize,
    layers: usize,
}

/// One path of the tree: its node (none for a directory only implied by what is below
/// it) and its children by name.
#[derive(Debug, Default)]
struct Slot {
    node: Option<Node>,
    children: BTreeMap<Box<[u8]>, u32>,
}

impl Default for MergedView {
    fn default() -> Self {
        MergedView {
            slots: vec![Slot::default()],
            free: Vec::new(),
            count: 0,
            layers: 0,
        }
    }
}

impl MergedView {
    /// An empty view.
    pub fn new() -> MergedView {
        MergedView::default()
    }

    /// Number of layers applied.
    pub fn layer_count(&self) -> usize {
        self.layers
    }

    /// Number of paths.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the view is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Applies the next layer's changes, in any order (a layer's whiteouts and opaque
    /// markers hide what lower layers have, never its own entries).
    pub fn apply_layer(&mut self, changes: Vec<LayerChange>) {
        let layer = self.layers;
        for c in changes {
            self.apply(layer, c);
        }
        self.layers = self.layers.max(layer + 1);
    }

    /// Records that layer `layer` is applied (even when it had no entries).
    pub fn applied(&mut self, layer: usize) {
        self.layers = self.layers.max(layer + 1);
    }

    /// Applies one change of layer `layer`: layers must be applied in order, but a
    /// layer's changes may come one by one as it is read.
    pub fn apply(&mut self, layer: usize, c: LayerChange) {
        self.layers = self.layers.max(layer + 1);
        match c.change {
            Change::Whiteout => self.hide(&c.path, layer, true),
            Change::Opaque => self.hide(&c.path, layer, false),
            Change::Put(meta) => {
                let id = self.ensure(&c.path);
                if meta.kind != Kind::Dir {
                    self.clear_children(id, None);
                }
                let slot = &mut self.slots[id as usize];
                if slot.node.is_none() {
                    self.count += 1;
                }
                slot.node = Some(Node {
                    meta,
                    layer,
                    content: c.content,
                });
            }
        }
    }

    /// Removes what layers below `layer` have at `path` (the path itself when `itself`)
    /// and below it.
    fn hide(&mut self, path: &ImagePath, layer: usize, itself: bool) {
        let Some(id) = self.find(path) else {
            return;
        };
        self.clear_children(id, Some(layer));
        if itself {
            let slot = &mut self.slots[id as usize];
            if slot.node.as_ref().is_some_and(|n| n.layer < layer) {
                slot.node = None;
                self.count -= 1;
            }
        }
        self.prune(path);
    }

    /// Removes the children of `id` (those of layers below `below` when given, keeping
    /// the directories that still hold newer entries).
    fn clear_children(&mut self, id: u32, below: Option<usize>) {
        let children = std::mem::take(&mut self.slots[id as usize].children);
        let mut kept = BTreeMap::new();
        for (name, child) in children {
            if self.clear_subtree(child, below) {
                kept.insert(name, child);
            } else {
                self.release(child);
            }
        }
        self.slots[id as usize].children = kept;
    }

    /// Clears `id` and what is below it (of layers below `below` when given); whether
    /// anything is left there.
    fn clear_subtree(&mut self, id: u32, below: Option<usize>) -> bool {
        self.clear_children(id, below);
        let slot = &mut self.slots[id as usize];
        let hidden = match (&slot.node, below) {
            (Some(_), None) => true,
            (Some(n), Some(layer)) => n.layer < layer,
            (None, _) => false,
        };
        if hidden {
            slot.node = None;
            self.count -= 1;
        }
        let slot = &self.slots[id as usize];
        slot.node.is_some() || !slot.children.is_empty()
    }

    /// Gives a slot (already emptied) back for reuse.
    fn release(&mut self, id: u32) {
        self.slots[id as usize] = Slot::default();
        self.free.push(id);
    }

    /// Removes the slots along `path` that neither hold a node nor lead to one.
    fn prune(&mut self, path: &ImagePath) {
        let mut trail = vec![0u32];
        for c in path.components() {
            let Some(&id) = self.slots[*trail.last().expect("root") as usize]
                .children
                .get(c)
            else {
                return;
            };
            trail.push(id);
        }
        let names: Vec<&[u8]> = path.components().collect();
        for depth in (1..trail.len()).rev() {
            let id = trail[depth];
            let slot = &self.slots[id as usize];
            if slot.node.is_some() || !slot.children.is_empty() {
                break;
            }
            self.slots[trail[depth - 1] as usize]
                .children
                .remove(names[depth - 1]);
            self.release(id);
        }
    }

    /// The slot of `path`, when the tree has one.
    fn find(&self, path: &ImagePath) -> Option<u32> {
        let mut id = 0u32;
        for c in path.components() {
            id = *self.slots[id as usize].children.get(c)?;
        }
        Some(id)
    }

    /// The slot of `path`, made (with its parents) when missing.
    fn ensure(&mut self, path: &ImagePath) -> u32 {
        let mut id = 0u32;
        for c in path.components() {
            id = match self.slots[id as usize].children.get(c) {
                Some(&child) => child,
                None => {
                    let child = match self.free.pop() {
                        Some(reused) => reused,
                        None => {
                            self.slots.push(Slot::default());
                            (self.slots.len() - 1) as u32
                        }
                    };
                    self.slots[id as usize]
                        .children
                        .insert(c.to_vec().into_boxed_slice(), child);
                    child
                }
            };
        }
        id
    }

    /// Maps the owners of `layer`'s nodes that are above `max`: uids to `uid`, gids to 0
    /// (what a rewritten layer holds).
    pub fn remap_ids(&mut self, layer: usize, max: u64, uid: u64) {
        for node in self
            .slots
            .iter_mut()
            .filter_map(|s| s.node.as_mut())
            .filter(|n| n.layer == layer)
        {
            if node.meta.uid > max {
                node.meta.uid = uid;
            }
            if node.meta.gid > max {
                node.meta.gid = 0;
            }
        }
    }

    /// The node at exactly this path (no link following).
    pub fn get(&self, path: &ImagePath) -> Option<&Node> {
        self.slots[self.find(path)? as usize].node.as_ref()
    }

    /// Every path with a node, parents before their children, names in byte order.
    pub fn iter(&self) -> Walk<'_> {
        self.walk(0, ImagePath::root())
    }

    /// Every path strictly below `dir`, in the order of [`MergedView::iter`].
    pub fn below(&self, dir: &ImagePath) -> Walk<'_> {
        match self.find(dir) {
            Some(id) => self.walk(id, dir.clone()),
            None => Walk {
                view: self,
                stack: Vec::new(),
            },
        }
    }

    fn walk(&self, id: u32, path: ImagePath) -> Walk<'_> {
        Walk {
            view: self,
            stack: vec![(path, self.slots[id as usize].children.iter())],
        }
    }

    /// Whether the path exists, as a node or as an implicit parent directory of one.
    pub fn exists(&self, path: &ImagePath) -> bool {
        path.is_root() || self.find(path).is_some()
    }

    /// Follows symlinks in every component of `path` (the last one too), inside the image
    /// root: absolute targets start at the image root and `..` stops there. Returns the
    /// path that was reached, which may not exist.
    pub fn resolve(&self, path: &ImagePath) -> Result<ImagePath, ResolveError> {
        self.resolve_inner(path, true)
    }

    /// As [`MergedView::resolve`], but a symlink in the last component is not followed.
    pub fn resolve_parent(&self, path: &ImagePath) -> Result<ImagePath, ResolveError> {
        self.resolve_inner(path, false)
    }

    fn resolve_inner(
        &self,
        path: &ImagePath,
        follow_last: bool,
    ) -> Result<ImagePath, ResolveError> {
        let mut hops = 0usize;
        // Components still to walk, in reverse order so that pop() gives the next one.
        let mut todo: Vec<Vec<u8>> = path.components().rev().map(|c| c.to_vec()).collect();
        let mut current = ImagePath::root();
        while let Some(component) = todo.pop() {
            if component == b".." {
                current = current.parent().unwrap_or_default();
                continue;
            }
            if component == b"." {
                continue;
            }
            let next = current.join(&component);
            let is_last = todo.is_empty();
            match self.get(&next) {
                Some(node) if node.meta.kind == Kind::Symlink && (follow_last || !is_last) => {
                    hops += 1;
                    if hops > MAX_HOPS {
                        return Err(ResolveError::Loop(path.display()));
                    }
                    let target = node.meta.link.clone().unwrap_or_default();
                    if target.first() == Some(&b'/') {
                        current = ImagePath::root();
                    }
                    for c in target.split(|&b| b == b'/').filter(|c| !c.is_empty()).rev() {
                        todo.push(c.to_vec());
                    }
                }
                _ => current = next,
            }
        }
        Ok(current)
    }
}

/// The paths of a view or of one of its directories, walked depth first.
pub struct Walk<'a> {
    view: &'a MergedView,
    stack: Vec<(ImagePath, Children<'a>)>,
}

/// The children of one directory of the tree, by name.
type Children<'a> = btree_map::Iter<'a, Box<[u8]>, u32>;

impl<'a> Iterator for Walk<'a> {
    type Item = (ImagePath, &'a Node);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (dir, children) = self.stack.last_mut()?;
            let Some((name, &id)) = children.next() else {
                self.stack.pop();
                continue;
            };
            let path = dir.join(name);
            let slot = &self.view.slots[id as usize];
            if !slot.children.is_empty() {
                self.stack.push((path.clone(), slot.children.iter()));
            }
            if let Some(node) = &slot.node {
                return Some((path, node));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::entry::Kind;
    use std::collections::BTreeMap as Map;

    fn meta(kind: Kind, link: Option<&str>) -> Meta {
        Meta {
            kind,
            mode: 0o755,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: 0,
            link: link.map(|l| l.as_bytes().to_vec()),
            device: (0, 0),
            xattrs: Map::new(),
        }
    }

    fn put(path: &str, kind: Kind, link: Option<&str>) -> LayerChange {
        LayerChange {
            path: ImagePath::new(path),
            change: Change::Put(meta(kind, link)),
            content: None,
        }
    }

    fn mark(path: &str, change: Change) -> LayerChange {
        LayerChange {
            path: ImagePath::new(path),
            change,
            content: None,
        }
    }

    fn paths(v: &MergedView) -> Vec<String> {
        v.iter().map(|(p, _)| p.display()).collect()
    }

    #[test]
    fn whiteouts_hide_lower_paths_and_subtrees() {
        let mut v = MergedView::new();
        v.apply_layer(vec![
            put("/a", Kind::Dir, None),
            put("/a/x", Kind::File, None),
            put("/a/y", Kind::Dir, None),
            put("/a/y/z", Kind::File, None),
            put("/b", Kind::File, None),
        ]);
        v.apply_layer(vec![
            mark("/a/y", Change::Whiteout),
            put("/c", Kind::File, None),
        ]);
        assert_eq!(paths(&v), ["/a", "/a/x", "/b", "/c"]);
        assert_eq!(v.get(&ImagePath::new("/c")).unwrap().layer, 1);
    }

    #[test]
    fn opaque_dir_keeps_same_layer_entries() {
        let mut v = MergedView::new();
        v.apply_layer(vec![
            put("/d", Kind::Dir, None),
            put("/d/old", Kind::File, None),
        ]);
        // The marker may come after the layer's own entries in the tar.
        v.apply_layer(vec![
            put("/d/new", Kind::File, None),
            mark("/d", Change::Opaque),
        ]);
        assert_eq!(paths(&v), ["/d", "/d/new"]);
    }

    #[test]
    fn file_replacing_dir_drops_children() {
        let mut v = MergedView::new();
        v.apply_layer(vec![
            put("/d", Kind::Dir, None),
            put("/d/x", Kind::File, None),
        ]);
        v.apply_layer(vec![put("/d", Kind::Symlink, Some("/elsewhere"))]);
        assert_eq!(paths(&v), ["/d"]);
    }

    #[test]
    fn the_tree_keeps_no_trace_of_what_was_hidden() {
        let mut v = MergedView::new();
        // Parents implied by a deeper path exist without a node of their own.
        v.apply_layer(vec![
            put("/a/b/c", Kind::File, None),
            put("/a-b", Kind::File, None),
        ]);
        assert!(v.exists(&ImagePath::new("/a/b")));
        assert_eq!(v.get(&ImagePath::new("/a/b")), None);
        // Component order: a directory's subtree comes before a sibling sorting after it.
        assert_eq!(paths(&v), ["/a/b/c", "/a-b"]);
        assert_eq!(v.len(), 2);
        v.apply_layer(vec![mark("/a/b", Change::Whiteout)]);
        assert!(!v.exists(&ImagePath::new("/a/b")));
        assert!(
            !v.exists(&ImagePath::new("/a")),
            "an empty implied parent is pruned"
        );
        assert_eq!(v.len(), 1);
        // A layer's whiteout hides lower layers only, never the layer's own entries.
        v.apply_layer(vec![
            put("/x/y", Kind::File, None),
            mark("/x", Change::Whiteout),
            put("/a/new", Kind::File, None),
        ]);
        assert_eq!(paths(&v), ["/a/new", "/a-b", "/x/y"]);
        assert_eq!(v.below(&ImagePath::new("/a")).count(), 1);
        assert_eq!(v.below(&ImagePath::new("/nowhere")).count(), 0);
        // Slots freed by the whiteout are used again.
        assert!(v.slots.len() <= 7, "{} slots", v.slots.len());
    }

    #[test]
    fn resolves_links_inside_the_root() {
        let mut v = MergedView::new();
        v.apply_layer(vec![
            put("/var", Kind::Dir, None),
            put("/run", Kind::Dir, None),
            put("/var/run", Kind::Symlink, Some("/run")),
            put(
                "/etc/sites-enabled/default",
                Kind::Symlink,
                Some("../sites-available/default"),
            ),
            put("/up", Kind::Symlink, Some("../../../../etc")),
        ]);
        let r = |p: &str| v.resolve(&ImagePath::new(p)).unwrap().display();
        assert_eq!(r("/var/run/nginx.pid"), "/run/nginx.pid");
        assert_eq!(
            r("/etc/sites-enabled/default"),
            "/etc/sites-available/default"
        );
        assert_eq!(r("/up/passwd"), "/etc/passwd");
        assert_eq!(
            v.resolve_parent(&ImagePath::new("/var/run"))
                .unwrap()
                .display(),
            "/var/run"
        );
    }

    #[test]
    fn detects_symlink_loops() {
        let mut v = MergedView::new();
        v.apply_layer(vec![
            put("/a", Kind::Symlink, Some("b")),
            put("/b", Kind::Symlink, Some("/a")),
        ]);
        assert!(matches!(
            v.resolve(&ImagePath::new("/a/x")),
            Err(ResolveError::Loop(_))
        ));
    }
}
