//! What a conversion does (or did), as reports show it: the user, the ports, every path
//! of the new layer with why and a diff of edited files, the config fields that change.

use serde::Serialize;

use crate::model::ImageConfig;
use crate::plan::{Body, Plan, Reason};

/// What the conversion does.
#[derive(Clone, Debug, Serialize)]
pub struct Conversion {
    /// `User` before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_before: Option<String>,
    /// `User` after, `UID:GID`.
    pub user: String,
    /// The account's name.
    pub user_name: String,
    /// Why this user.
    pub user_reason: String,
    /// Ports moved.
    pub port_moves: Vec<PortMove>,
    /// Ports moved in the command line, each where it is.
    pub port_args: Vec<PortArgMove>,
    /// Directories made writable for the runtime user.
    pub writable: Vec<String>,
    /// Every path the new layer holds, with why.
    pub changes: Vec<ChangeOut>,
    /// What the conversion leaves as it is, and why.
    pub notes: Vec<String>,
    /// The recipes applied.
    pub recipes: Vec<String>,
    /// Config fields that change.
    pub config_changes: Vec<ConfigChange>,
    /// Bytes of file content the new layer carries.
    pub content_bytes: u64,
}

/// A moved port.
#[derive(Clone, Debug, Serialize)]
pub struct PortMove {
    /// The privileged port.
    pub from: u16,
    /// Where it moved.
    pub to: u16,
}

/// A port moved in `Entrypoint` or `Cmd`.
#[derive(Clone, Debug, Serialize)]
pub struct PortArgMove {
    /// Where: `config.Cmd[3]`.
    pub location: String,
    /// The privileged port.
    pub from: u16,
    /// Where it moved.
    pub to: u16,
    /// The argument before.
    pub before: String,
    /// The argument after.
    pub after: String,
}

/// One path of the new layer.
#[derive(Clone, Debug, Serialize)]
pub struct ChangeOut {
    /// The path.
    pub path: String,
    /// Why (`passwd-entry`, `reowned`, `code-dir`, `writable`, `created-dir`, `edited`).
    pub reason: &'static str,
    /// The explanation.
    pub description: String,
    /// Owner and mode before (`uid:gid mode`), when it existed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// Owner and mode after.
    pub after: String,
    /// For files whose content changed: a unified diff.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

/// A field of the image config that changes.
#[derive(Clone, Debug, Serialize)]
pub struct ConfigChange {
    /// `User`, `ExposedPorts`, `Env`, `Entrypoint` or `Cmd`.
    pub field: &'static str,
    /// Its value before.
    pub before: serde_json::Value,
    /// Its value after.
    pub after: serde_json::Value,
}

impl Conversion {
    /// Describes a plan; `before` and `after` are the configs around it.
    pub fn from_plan(plan: &Plan, before: &ImageConfig, after: &ImageConfig) -> Conversion {
        let mut config_changes = Vec::new();
        let (u0, u1) = (
            before.user().unwrap_or_default(),
            after.user().unwrap_or_default(),
        );
        if u0 != u1 {
            config_changes.push(ConfigChange {
                field: "User",
                before: u0.into(),
                after: u1.into(),
            });
        }
        for (field, b, a) in [
            (
                "ExposedPorts",
                before.exposed_ports(),
                after.exposed_ports(),
            ),
            ("Env", before.env(), after.env()),
            ("Volumes", before.volumes(), after.volumes()),
            ("Entrypoint", before.entrypoint(), after.entrypoint()),
            ("Cmd", before.cmd(), after.cmd()),
        ] {
            if b != a {
                config_changes.push(ConfigChange {
                    field,
                    before: b.into(),
                    after: a.into(),
                });
            }
        }
        let owner = |m: &crate::layer::Meta| format!("{}:{} {:04o}", m.uid, m.gid, m.mode);
        Conversion {
            user_before: plan.user_before.clone(),
            user: plan.user(),
            user_name: plan.identity.name.clone(),
            user_reason: plan.identity.why.clone(),
            port_moves: plan
                .port_moves
                .iter()
                .map(|&(from, to)| PortMove { from, to })
                .collect(),
            port_args: plan
                .arg_moves
                .iter()
                .map(|m| PortArgMove {
                    location: m.location.clone(),
                    from: m.from,
                    to: m.to,
                    before: m.before.clone(),
                    after: m.after.clone(),
                })
                .collect(),
            writable: plan.writable.iter().map(|w| w.display()).collect(),
            changes: plan
                .changes
                .iter()
                .map(|(path, c)| ChangeOut {
                    path: path.display(),
                    reason: match c.reason {
                        Reason::PasswdEntry => "passwd-entry",
                        Reason::GroupEntry => "group-entry",
                        Reason::Reowned { .. } => "reowned",
                        Reason::CodeDir { .. } => "code-dir",
                        Reason::Writable => "writable",
                        Reason::CreatedDir => "created-dir",
                        Reason::Edited { .. } => "edited",
                        Reason::PortsMoved { .. } => "ports-moved",
                        Reason::Owned { .. } => "owned-dir",
                        Reason::Readable { .. } => "readable",
                    },
                    description: c.reason.describe(),
                    before: c.before.as_ref().map(owner),
                    after: owner(&c.meta),
                    diff: match (&c.original, &c.body) {
                        (Some(old), Body::Bytes(new)) => Some(unified_diff(path, old, new)),
                        _ => None,
                    },
                })
                .collect(),
            notes: plan.notes.clone(),
            recipes: plan.recipes.clone(),
            config_changes,
            content_bytes: plan.content_bytes(),
        }
    }
}

/// A unified diff of a file's old and new text (lossy for bytes that are not UTF-8).
pub fn unified_diff(path: &crate::layer::ImagePath, old: &[u8], new: &[u8]) -> String {
    let (old, new) = (String::from_utf8_lossy(old), String::from_utf8_lossy(new));
    let a = format!("a{path}");
    let b = format!("b{path}");
    similar::TextDiff::from_lines(old.as_ref(), new.as_ref())
        .unified_diff()
        .context_radius(2)
        .header(&a, &b)
        .to_string()
}
