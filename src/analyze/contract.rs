//! The runtime contract of a converted image, as facts: its user, its ports, the
//! directories that must stay writable, and whether the root filesystem can be read-only.
//! The report renders it for docker and Kubernetes.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::layer::{ImagePath, Kind, MergedView};
use crate::model::ImageConfig;
use crate::plan::Plan;
use crate::recipe::MatchedRecipe;

/// A port the converted image listens on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Port {
    /// The port.
    pub port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// The privileged port it replaced, if it moved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved_from: Option<u16>,
}

/// What the converted image needs to run unprivileged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuntimeContract {
    /// The numeric user.
    pub uid: u64,
    /// The numeric group.
    pub gid: u64,
    /// Ports to publish.
    pub ports: Vec<Port>,
    /// Directories to mount writable (tmpfs / emptyDir) on a read-only root filesystem.
    pub writable: Vec<String>,
    /// Whether the root filesystem can be read-only.
    pub read_only_root_filesystem: bool,
    /// What the user should know.
    pub notes: Vec<String>,
}

impl RuntimeContract {
    /// The owner a tmpfs at writable directory `dir` must have, as `uid=`/`gid=` mount
    /// options: runtimes give a tmpfs the mode of the directory it covers but keep it
    /// root's, so the runtime user (owner) and group 0 (an arbitrary UID) must be named.
    /// `None` for /tmp (1777, anyone's).
    pub fn tmpfs_owner(&self, dir: &str) -> Option<(u64, u64)> {
        (dir != "/tmp").then_some((self.uid, 0))
    }

    /// The contract of the image the plan produces (`config` is the converted config).
    pub fn new(
        view: &MergedView,
        config: &ImageConfig,
        plan: &Plan,
        recipes: &[MatchedRecipe<'_>],
    ) -> RuntimeContract {
        let mut notes = Vec::new();
        let moved: Vec<(u16, u16)> = plan.port_moves.clone();
        let mut ports = Vec::new();
        for key in config.exposed_ports() {
            let (p, proto) = key.split_once('/').unwrap_or((&key, "tcp"));
            if let Ok(port) = p.parse::<u16>() {
                let moved_from = moved.iter().find(|(_, to)| *to == port).map(|(f, _)| *f);
                ports.push(Port {
                    port,
                    protocol: proto.to_string(),
                    moved_from,
                });
            }
        }
        ports.sort_by_key(|p| (p.port, p.protocol.clone()));

        // Directories the service writes: volumes, the recipes' runtime paths, and the
        // plan's writable directories.
        let mut wanted: BTreeSet<ImagePath> = BTreeSet::new();
        for v in config.volumes() {
            wanted.insert(
                view.resolve(&ImagePath::new(&v))
                    .unwrap_or_else(|_| ImagePath::new(&v)),
            );
        }
        for matched in recipes {
            for (_, _, dir) in super::runtime_paths::service_paths(matched, view) {
                wanted.insert(view.resolve(&dir).unwrap_or(dir));
            }
        }
        wanted.extend(plan.writable.iter().cloned());
        // A tmpfs or emptyDir starts empty: it would hide files the image has there.
        let mut dirs: BTreeSet<ImagePath> = BTreeSet::new();
        dirs.insert(ImagePath::new("/tmp"));
        let mut read_only = true;
        for w in wanted {
            if view.below(&w).any(|(_, n)| n.meta.kind != Kind::Dir) {
                read_only = false;
                notes.push(format!(
                    "`{w}` must be writable and holds files from the image: a tmpfs or emptyDir would hide them, so the root filesystem stays writable (or mount a volume filled from the image there)"
                ));
            } else {
                dirs.insert(w);
            }
        }
        // Only the top-most of nested directories needs a mount.
        let mut tops: Vec<ImagePath> = Vec::new();
        for d in dirs {
            if !d.is_root() && !tops.iter().any(|t| d.is_below(t)) {
                tops.push(d);
            }
        }
        for o in &plan.owned {
            let parent = o.path.parent().map(|p| p.display()).unwrap_or_default();
            notes.push(format!(
                "`{}` is the {} service's {}, which it must own with mode {:04o}: it stays uid {}'s in the image, and the writable mount is its parent `{parent}`, in which the service, running as any UID in group 0, creates it at start; a volume with data mounted at `{}` itself must be owned by the UID the container runs as",
                o.path, o.recipe, o.what, o.mode, plan.identity.uid, o.path
            ));
        }
        RuntimeContract {
            uid: plan.identity.uid,
            gid: plan.identity.gid,
            ports,
            writable: tops.iter().map(|p| p.display()).collect(),
            read_only_root_filesystem: read_only,
            notes,
        }
    }
}
