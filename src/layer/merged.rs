//! The merged view of an image's layers: the final filesystem as path -> metadata.
//!
//! Invariant: the view never holds a path hidden by a whiteout or an opaque directory of a
//! higher layer, nor a path below a non-directory; [`MergedView::resolve`] never follows a
//! link outside the image root.

use std::collections::BTreeMap;
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

/// The final filesystem of the layers merged so far.
#[derive(Default, Debug)]
pub struct MergedView {
    nodes: BTreeMap<ImagePath, Node>,
    layers: usize,
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
        self.nodes.len()
    }

    /// Whether the view is empty.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Applies the next layer: first its whiteouts and opaque markers to what lies below,
    /// then its entries.
    pub fn apply_layer(&mut self, changes: Vec<LayerChange>) {
        let layer = self.layers;
        self.layers += 1;
        for c in &changes {
            match c.change {
                Change::Whiteout => {
                    self.nodes.remove(&c.path);
                    self.remove_below(&c.path);
                }
                Change::Opaque => self.remove_below(&c.path),
                Change::Put(_) => {}
            }
        }
        for c in changes {
            if let Change::Put(meta) = c.change {
                if meta.kind != Kind::Dir {
                    self.remove_below(&c.path);
                }
                self.nodes.insert(
                    c.path,
                    Node {
                        meta,
                        layer,
                        content: c.content,
                    },
                );
            }
        }
    }

    fn remove_below(&mut self, dir: &ImagePath) {
        let (lo, hi) = dir.subtree_bounds();
        let doomed: Vec<ImagePath> = self.nodes.range(lo..hi).map(|(p, _)| p.clone()).collect();
        for p in doomed {
            self.nodes.remove(&p);
        }
    }

    /// Maps the owners of `layer`'s nodes that are above `max`: uids to `uid`, gids to 0
    /// (what a rewritten layer holds).
    pub fn remap_ids(&mut self, layer: usize, max: u64, uid: u64) {
        for node in self.nodes.values_mut().filter(|n| n.layer == layer) {
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
        self.nodes.get(path)
    }

    /// Every path, sorted.
    pub fn iter(&self) -> impl Iterator<Item = (&ImagePath, &Node)> {
        self.nodes.iter()
    }

    /// Every path strictly below `dir`, sorted.
    pub fn below<'a>(
        &'a self,
        dir: &ImagePath,
    ) -> impl Iterator<Item = (&'a ImagePath, &'a Node)> + 'a {
        let (lo, hi) = dir.subtree_bounds();
        self.nodes.range(lo..hi)
    }

    /// Whether the path exists, as a node or as an implicit parent directory of one.
    pub fn exists(&self, path: &ImagePath) -> bool {
        path.is_root() || self.nodes.contains_key(path) || self.below(path).next().is_some()
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
            match self.nodes.get(&next) {
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
