//! The plan: every change a conversion makes, decided before anything is written, and
//! printable. The generic conversion builds one from the merged view and the config.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::layer::{ImagePath, Meta, Scan};
use crate::model::ImageConfig;
use crate::recipe::edit::ApplyError;
use crate::recipe::{MatchedRecipe, Selection};

pub mod generic;
pub mod learn;
pub mod scripts;
pub mod users;

/// How a recipe that matches but does not apply is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecipeFailure {
    /// It stops the conversion (`convert`).
    Stop,
    /// It is kept in the plan, and reported as a finding (`analyze`).
    Record,
}

/// Why a plan cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The generic conversion cannot go on.
    #[error(transparent)]
    Generic(#[from] generic::PlanError),
    /// A recipe matches but does not apply (with [`RecipeFailure::Stop`]).
    #[error(transparent)]
    Recipe(#[from] ApplyError),
}

/// Plans the conversion of a scanned image: the recipes of `recipes` that match are
/// applied first (their edits, the directories they make writable, their preferred
/// users), then the generic conversion with `options`.
pub fn build(
    scan: &Scan,
    config: &ImageConfig,
    recipes: &Selection,
    options: &generic::Options,
    failure: RecipeFailure,
) -> Result<Plan, BuildError> {
    let matched = MatchedRecipe::find(recipes, &scan.view);
    let mut outcomes = Vec::new();
    let mut problems = Vec::new();
    // A recipe asked for by name with nothing of its service in the image would convert
    // nothing while its name says otherwise.
    for r in &recipes.forced {
        if !matched.iter().any(|m| m.recipe.name == r.name) {
            let e = crate::recipe::edit::ApplyError::NotInImage {
                recipe: r.name.clone(),
                signature: r
                    .signature
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect(),
            };
            match failure {
                RecipeFailure::Record => problems.push(e),
                RecipeFailure::Stop => return Err(BuildError::Recipe(e)),
            }
        }
    }
    for m in &matched {
        match crate::recipe::edit::apply(m, &scan.view, &options.ports) {
            Ok(outcome) => outcomes.push((m.recipe.name.clone(), outcome)),
            Err(e) if failure == RecipeFailure::Record => problems.push(e),
            Err(e) => return Err(BuildError::Recipe(e)),
        }
    }
    let mut options = options.clone();
    options.preferred_users = matched
        .iter()
        .flat_map(|m| {
            m.recipe
                .users
                .iter()
                .map(|u| (u.clone(), m.recipe.name.clone()))
        })
        .collect();
    options.recipe_writable = outcomes
        .iter()
        .flat_map(|(name, o)| {
            o.writable_dirs
                .iter()
                .map(move |d| (d.clone(), name.clone()))
        })
        .collect();
    let env = config.env();
    options.recipe_owned = matched
        .iter()
        .flat_map(|m| {
            m.recipe.owned.iter().map(|o| {
                let path = o.resolve(&env);
                generic::OwnedDir {
                    path: scan.view.resolve(&path).unwrap_or(path),
                    mode: o.mode,
                    what: o.what.clone(),
                    recipe: m.recipe.name.clone(),
                }
            })
        })
        .collect();
    options.recipe_ports = matched
        .iter()
        .flat_map(|m| {
            m.recipe
                .listens
                .iter()
                .map(|p| (p.clone(), m.recipe.name.clone()))
        })
        .collect();
    options.recipe_user_options = matched
        .iter()
        .flat_map(|m| {
            m.recipe
                .user_options
                .iter()
                .map(|o| (o.clone(), m.recipe.name.clone()))
        })
        .collect();
    options.recipe_readable = matched
        .iter()
        .flat_map(|m| {
            m.recipe.readable.iter().map(|r| generic::ReadablePath {
                path: r.path.clone(),
                recipe: m.recipe.name.clone(),
            })
        })
        .collect();
    let mut plan = generic::plan(scan, config, &options)?;
    plan.add_recipe_outcomes(&outcomes, &scan.view, &config.env(), options.mtime);
    plan.recipe_problems = problems;
    Ok(plan)
}

/// The body of a file in the new layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// No body (directories, links).
    Empty,
    /// New or edited content.
    Bytes(Arc<Vec<u8>>),
    /// The unchanged content of a file kept in the scan's spool.
    Spooled {
        /// Offset in the spool.
        offset: u64,
        /// Length.
        len: u64,
    },
}

/// Why a path is in the new layer.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// `/etc/passwd` gained the runtime user.
    PasswdEntry,
    /// `/etc/group` gained the runtime user's group.
    GroupEntry,
    /// An executable or library owned by a non-root user, now owned by root.
    Reowned {
        /// Its former owner.
        uid: u64,
    },
    /// A directory of the former service user that holds code, now root-owned.
    CodeDir {
        /// Its former owner.
        uid: u64,
    },
    /// A directory the service writes, now `UID:0` and group-writable.
    Writable,
    /// A directory the service writes that did not exist.
    CreatedDir,
    /// A file a recipe edited.
    Edited {
        /// The recipe.
        recipe: String,
        /// What it changed, in order.
        edits: Vec<String>,
    },
    /// The command's script, with its listen ports moved.
    PortsMoved {
        /// Each move: `line 12: 80 -> 8080`.
        edits: Vec<String>,
    },
    /// A directory the service must own (a recipe's `[[owned]]`): the runtime user's,
    /// with the mode the service requires, not group-writable.
    Owned {
        /// What it is (`data directory`).
        what: String,
    },
    /// A file or directory the service reads that only root (or its group) could (a
    /// recipe's `[[readable]]`): the runtime user's, group 0, readable by both.
    Readable {
        /// The recipe.
        recipe: String,
    },
}

impl Reason {
    /// A short explanation for reports.
    pub fn describe(&self) -> String {
        match self {
            Reason::PasswdEntry => "added the runtime user".into(),
            Reason::GroupEntry => "added the runtime user's group".into(),
            Reason::Reowned { uid } => format!("executable or library owned by uid {uid}: now root-owned, not writable by the user"),
            Reason::CodeDir { uid } => format!("directory of uid {uid} that holds code: now root-owned, not writable by the user"),
            Reason::Writable => "runtime-writable: owner UID, group 0, group-writable".into(),
            Reason::CreatedDir => "created as a runtime-writable directory".into(),
            Reason::Edited { recipe, edits } => format!("{recipe} recipe: {}", edits.join("; ")),
            Reason::Owned { what } => format!("{what} the service must own: owner UID, its own mode, not group-writable"),
            Reason::Readable { recipe } => format!("{recipe} recipe: read by the service: owner UID, group 0, readable by both"),
            Reason::PortsMoved { edits } => {
                format!("the command's script: ports moved ({})", edits.join("; "))
            }
        }
    }
}

/// One path of the new layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileChange {
    /// Its metadata in the new layer.
    pub meta: Meta,
    /// Its body.
    pub body: Body,
    /// Why it is there.
    pub reason: Reason,
    /// Its metadata before, when it existed.
    pub before: Option<Meta>,
    /// Its content before, for files whose content changed.
    pub original: Option<Arc<Vec<u8>>>,
}

/// The runtime identity of the converted image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// User id.
    pub uid: u64,
    /// Group id.
    pub gid: u64,
    /// Its name in `/etc/passwd`.
    pub name: String,
    /// How it was chosen.
    pub why: String,
}

/// A port moved in a command line, or in the script it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgMove {
    /// Where: `config.Cmd[3]`, or `/docker-entrypoint.sh:12`.
    pub location: String,
    /// The port before, and after.
    pub from: u16,
    /// Where it moved.
    pub to: u16,
    /// The argument (or line) before.
    pub before: String,
    /// The argument (or line) after.
    pub after: String,
}

/// Everything a conversion changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The runtime user.
    pub identity: Identity,
    /// The config's `User` before.
    pub user_before: Option<String>,
    /// Paths of the new layer, sorted.
    pub changes: BTreeMap<ImagePath, FileChange>,
    /// New `ExposedPorts` keys, when they change.
    pub exposed_ports: Option<Vec<String>>,
    /// New `Env`, when it changes.
    pub env: Option<Vec<String>>,
    /// New `Volumes` keys, when they change (a directory the service must own gives way
    /// to its parent).
    pub volumes: Option<Vec<String>>,
    /// Ports moved, `(from, to)`, sorted.
    pub port_moves: Vec<(u16, u16)>,
    /// The ports whose move reaches the service: a port variable, a command-line argument
    /// or a recipe's directive moved them (moving `ExposedPorts` alone documents a port
    /// but does not change where the service listens).
    pub listen_moves: BTreeSet<u16>,
    /// New `Entrypoint`, when a port in it moves.
    pub entrypoint: Option<Vec<String>>,
    /// New `Cmd`, when a port in it moves.
    pub cmd: Option<Vec<String>>,
    /// Each port moved in a command line.
    pub arg_moves: Vec<ArgMove>,
    /// The directories the service may write (and that must be writable at run time:
    /// tmpfs or volumes on a read-only root filesystem).
    pub writable: Vec<ImagePath>,
    /// The directories the service must own (kept the runtime user's, with their mode;
    /// their parents are in `writable`).
    pub owned: Vec<generic::OwnedDir>,
    /// Things the user should know (what was not changed and why).
    pub notes: Vec<String>,
    /// The recipes applied, by name.
    pub recipes: Vec<String>,
    /// Recipes that match but could not be applied (analysis only: a conversion stops
    /// instead).
    pub recipe_problems: Vec<ApplyError>,
}

impl Plan {
    /// Adds what recipes did: edited files, moved ports, environment. `env` is the
    /// config's `Env` before the plan.
    pub fn add_recipe_outcomes(
        &mut self,
        outcomes: &[(String, crate::recipe::edit::Outcome)],
        view: &crate::layer::MergedView,
        env: &[String],
        mtime: u64,
    ) {
        for (recipe, outcome) in outcomes {
            self.recipes.push(recipe.clone());
            for f in &outcome.files {
                let Some(node) = view.get(&f.path) else {
                    continue;
                };
                let mut meta = node.meta.clone();
                meta.size = f.text.len() as u64;
                meta.mtime = mtime;
                // A config only its owner and group may read (redis: redis:redis 0640)
                // becomes readable by group 0 too, so an arbitrary UID in group 0
                // (OpenShift) can start the service.
                if meta.mode & 0o004 == 0 {
                    meta.gid = 0;
                    meta.mode |= 0o040;
                }
                // A file a recipe also makes readable keeps the owner and mode it gave.
                if let Some(c) = self
                    .changes
                    .get(&f.path)
                    .filter(|c| matches!(c.reason, Reason::Readable { .. }))
                {
                    meta.uid = c.meta.uid;
                    meta.gid = c.meta.gid;
                    meta.mode = c.meta.mode;
                }
                self.changes.insert(
                    f.path.clone(),
                    FileChange {
                        meta,
                        body: Body::Bytes(Arc::new(f.text.clone())),
                        reason: Reason::Edited {
                            recipe: recipe.clone(),
                            edits: f.edits.clone(),
                        },
                        before: Some(node.meta.clone()),
                        original: Some(f.original.clone()),
                    },
                );
            }
            for m in &outcome.port_moves {
                self.listen_moves.insert(m.0);
                if !self.port_moves.contains(m) {
                    self.port_moves.push(*m);
                }
            }
            if !outcome.env.is_empty() {
                let mut vars = self.env.clone().unwrap_or_else(|| env.to_vec());
                for (name, value) in &outcome.env {
                    let line = format!("{name}={value}");
                    match vars
                        .iter_mut()
                        .find(|v| v.split_once('=').is_some_and(|(k, _)| k == name))
                    {
                        Some(v) => *v = line,
                        None => vars.push(line),
                    }
                }
                self.env = Some(vars);
            }
        }
        self.port_moves.sort();
    }

    /// The new layer as merge input, to see the converted image's filesystem without
    /// reading the layer back.
    pub fn layer_changes(&self) -> Vec<crate::layer::merged::LayerChange> {
        use crate::layer::{Change, Content};
        self.changes
            .iter()
            .map(|(path, c)| crate::layer::merged::LayerChange {
                path: path.clone(),
                change: Change::Put(c.meta.clone()),
                content: match &c.body {
                    Body::Empty => None,
                    Body::Bytes(b) => Some(Content::Bytes(b.clone())),
                    Body::Spooled { offset, .. } => Some(Content::Spooled { offset: *offset }),
                },
            })
            .collect()
    }

    /// The config `User` value: `UID:GID`.
    pub fn user(&self) -> String {
        format!("{}:{}", self.identity.uid, self.identity.gid)
    }

    /// Bytes of file content the new layer carries.
    pub fn content_bytes(&self) -> u64 {
        self.changes
            .values()
            .map(|c| match &c.body {
                Body::Empty => 0,
                Body::Bytes(b) => b.len() as u64,
                Body::Spooled { len, .. } => *len,
            })
            .sum()
    }
}
