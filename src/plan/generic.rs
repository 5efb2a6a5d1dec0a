//! The generic conversion, for any image and without recipes:
//!
//! - a numeric `User` (`UID:GID`): the image's own non-root user when it has one (named in
//!   `User`, or the one obvious service account that owns files), else 65532; `--uid` and
//!   `--gid` override. `/etc/passwd` and `/etc/group` gain entries when they lack them.
//! - executables and libraries owned by a non-root user become root-owned and not
//!   writable by the user (undoing `COPY --chown`).
//! - directories the service writes (those the former service user owns, `Volumes`, the
//!   user's home) become `UID:0` and group-writable, so an arbitrary UID in group 0
//!   (OpenShift) can write them too. Nothing else becomes writable: a directory of the
//!   former user that holds code below it becomes root-owned instead, or the user could
//!   swap the binaries in it.
//! - `ExposedPorts` below 1024, `*PORT` environment variables and the listen ports of
//!   `Entrypoint` and `Cmd` (`--port 80`, `-b 0.0.0.0:80`, an exposed port given alone;
//!   see [`crate::model::command`]) move by the port map.

use std::collections::{BTreeMap, BTreeSet};

use crate::layer::merged::ResolveError;
use crate::layer::scan::CapturePolicy;
use crate::layer::{Content, ImagePath, Kind, MergedView, Meta, Scan, Want};
use crate::model::command::{port_args, rewrite};
use crate::model::ImageConfig;

use super::users::{self, SYSTEM_ACCOUNTS};
use super::{ArgMove, Body, FileChange, Identity, Plan, Reason};
use crate::layer::accounts::{self, PasswdEntry};
use crate::model::ports::{is_port_variable, PortMap};

/// The UID unroot picks when the image has no non-root user of its own (distroless's
/// `nonroot`).
pub const DEFAULT_UID: u64 = 65532;

pub use crate::layer::reader::MAX_MAPPED_ID;

/// Choices the user made on the command line.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `--uid`.
    pub uid: Option<u64>,
    /// `--gid`.
    pub gid: Option<u64>,
    /// The port map (`--port` overrides included).
    pub ports: PortMap,
    /// Modification time for new and edited files.
    pub mtime: u64,
    /// Service accounts the matched recipes prefer, most preferred first, with the
    /// recipe's name: `("www-data", "nginx")`.
    pub preferred_users: Vec<(String, String)>,
    /// Directories the matched recipes say the service writes, with the recipe's name.
    pub recipe_writable: Vec<(ImagePath, String)>,
    /// Directories the matched recipes say the service must own.
    pub recipe_owned: Vec<OwnedDir>,
    /// Ports the matched recipes say the service listens on (`53/udp`), with the
    /// recipe's name: exposed, and moved where the command line names them.
    pub recipe_ports: Vec<(String, String)>,
    /// Files and directories the matched recipes say the service reads.
    pub recipe_readable: Vec<ReadablePath>,
    /// Options of the command line that make the service switch users (`--user`), with
    /// the recipe's name: removed with their value.
    pub recipe_user_options: Vec<(String, String)>,
}

/// A file or directory the service reads that only root (or its group) may (a recipe's
/// `[[readable]]`): it becomes the runtime user's, group 0, readable by both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadablePath {
    /// The path.
    pub path: ImagePath,
    /// The recipe that says so.
    pub recipe: String,
}

/// A directory the service must own with a mode it checks (a recipe's `[[owned]]`): it
/// keeps the runtime user as owner and that mode, and its parent becomes the writable
/// mount in which any UID in group 0 can create it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedDir {
    /// The directory.
    pub path: ImagePath,
    /// The mode the service requires.
    pub mode: u32,
    /// What it is (`data directory`).
    pub what: String,
    /// The recipe that says so.
    pub recipe: String,
}

/// Why the generic conversion cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A path that must be read or written sits behind a symlink loop.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// `/etc/passwd` or `/etc/group` cannot be read.
    #[error(transparent)]
    Accounts(#[from] accounts::AccountsError),
    /// `--uid 0`.
    #[error(
        "the runtime user must not be root: `--uid 0` is refused (group 0, `--gid 0`, is allowed)"
    )]
    Root,
}

/// What the generic conversion reads during the scan: the account files (by name, so
/// that they are found behind symlinks too) in memory, and the bodies of executables and
/// libraries owned by non-root users, which it may re-own.
pub struct GenericCapture;

impl CapturePolicy for GenericCapture {
    fn want(&self, path: &ImagePath, meta: &Meta) -> Want {
        let name = path.file_name();
        if name == b"passwd" || name == b"group" {
            return Want::Text;
        }
        if meta.uid != 0 && is_code(path, meta) {
            return Want::Body;
        }
        Want::Nothing
    }
}

/// Whether a file is an executable or a library: code the service runs but never writes.
pub fn is_code(path: &ImagePath, meta: &Meta) -> bool {
    if meta.is_executable() {
        return true;
    }
    let name = path.file_name();
    name.ends_with(b".so") || name.windows(4).any(|w| w == b".so.") || name.ends_with(b".jar")
}

/// The non-root account that owns files in the image, when there is exactly one that is
/// not a distribution's own system account.
fn obvious_service_user<'a>(
    view: &MergedView,
    passwd: &'a [PasswdEntry],
) -> Option<&'a PasswdEntry> {
    let owners: BTreeSet<u64> = view
        .iter()
        .map(|(_, n)| n.meta.uid)
        .filter(|&u| u != 0)
        .collect();
    let candidates: Vec<&PasswdEntry> = passwd
        .iter()
        .filter(|p| p.uid != 0 && p.uid < 65534 && owners.contains(&p.uid))
        .filter(|p| !SYSTEM_ACCOUNTS.contains(&p.name.as_str()))
        .collect();
    match candidates.as_slice() {
        [one] => Some(one),
        _ => None,
    }
}

/// Builds the generic plan: each pass turns what the image holds (and what recipes or
/// learning say of its service) into changes, each change with its reason.
pub fn plan(scan: &Scan, config: &ImageConfig, opts: &Options) -> Result<Plan, PlanError> {
    if opts.uid == Some(0) {
        return Err(PlanError::Root);
    }
    let mut p = Planner {
        view: &scan.view,
        config,
        opts,
        accounts: accounts::Accounts::read(&scan.view)?,
        changes: BTreeMap::new(),
        notes: Vec::new(),
    };
    let user_before = config.user().map(String::from);
    let former = p.former_user(user_before.as_deref());
    let identity = p.identity(former.as_ref());
    p.reown_code();
    let holds_code = p.dirs_holding_code();
    let (writable, owned) = p.writable(former.as_ref(), &identity, &holds_code)?;
    p.readable(&identity);
    let volumes = p.volumes(&owned)?;
    p.tmp();
    let ports = p.ports();
    let Planner { changes, notes, .. } = p;
    let mut plan = Plan {
        identity,
        user_before,
        changes,
        exposed_ports: ports.exposed,
        env: ports.env,
        volumes,
        port_moves: ports.moves.into_iter().collect(),
        listen_moves: ports.listen_moves,
        entrypoint: ports.entrypoint,
        cmd: ports.cmd,
        arg_moves: ports.arg_moves,
        writable,
        owned,
        notes,
        recipes: Vec::new(),
        recipe_problems: Vec::new(),
    };
    let (uid, gid) = (plan.identity.uid, plan.identity.gid);
    for (what, id) in [("uid", uid), ("gid", gid)] {
        if id > MAX_MAPPED_ID {
            plan.notes.push(format!(
                "{what} {id} is above 65535: rootless runtimes with the default subordinate id range (65536 ids from /etc/subuid) cannot map it; pick an id below 65536 unless every runtime it goes to maps more"
            ));
        }
    }
    Ok(plan)
}

/// The service user the image had: `(uid, gid, why)`.
type Former = (u64, Option<u64>, String);

/// The state the passes share: the image, the options, and what they decided so far.
struct Planner<'a> {
    view: &'a MergedView,
    config: &'a ImageConfig,
    opts: &'a Options,
    accounts: accounts::Accounts,
    changes: BTreeMap<ImagePath, FileChange>,
    notes: Vec<String>,
}

/// What the ports passes decide.
#[derive(Default)]
struct PortChanges {
    moves: BTreeMap<u16, u16>,
    listen_moves: BTreeSet<u16>,
    exposed: Option<Vec<String>>,
    env: Option<Vec<String>>,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    arg_moves: Vec<ArgMove>,
}

impl<'a> Planner<'a> {
    /// The service user the image had: named in `User`; else the one its command switches
    /// to, the recipe's, or the obvious owner of files.
    fn former_user(&mut self, user_before: Option<&str>) -> Option<Former> {
        let accounts = &self.accounts;
        let image_user = accounts::resolve_user(user_before, &accounts.passwd, &accounts.groups);
        match image_user.uid {
            Some(0) => {
                let switched = users::command_user(self.config, &accounts.passwd);
                let preferred = self.opts.preferred_users.iter().find_map(|(name, recipe)| {
                    let p = accounts
                        .passwd
                        .iter()
                        .find(|p| &p.name == name && p.uid != 0)?;
                    Some((
                        p.uid,
                        Some(p.gid),
                        format!("`{}`, the service account of the {recipe} recipe", p.name),
                    ))
                });
                switched.or(preferred).or_else(|| {
                    obvious_service_user(self.view, &accounts.passwd).map(|p| {
                        (
                            p.uid,
                            Some(p.gid),
                            format!(
                                "`{}`, the only non-system account that owns files in the image",
                                p.name
                            ),
                        )
                    })
                })
            }
            Some(uid) => Some((
                uid,
                image_user.gid,
                format!("the image's `User` {}", user_before.unwrap_or_default()),
            )),
            None => {
                self.notes.push(format!(
                    "the image's `User` `{}` has no entry in `/etc/passwd`; the image could not start as it was",
                    user_before.unwrap_or_default()
                ));
                None
            }
        }
    }

    /// The runtime user and group, with the account entries it lacks.
    fn identity(&mut self, former: Option<&Former>) -> Identity {
        let opts = self.opts;
        let (uid, why) = match (opts.uid, former) {
            (Some(u), _) => (u, "given with `--uid`".to_string()),
            (None, Some((u, _, why))) => (*u, why.clone()),
            (None, None) => (
                DEFAULT_UID,
                format!("no non-root user in the image, so the default {DEFAULT_UID}"),
            ),
        };
        let existing = self.accounts.passwd.iter().find(|p| p.uid == uid).cloned();
        // The group: as given; else the one the image's user ran with (a numeric `User`
        // without a passwd entry runs with group 0); else the account's primary group;
        // else the UID.
        let kept_user = opts.uid.is_none() && former.is_some();
        let gid = opts
            .gid
            .or(former.filter(|f| f.0 == uid).and_then(|f| f.1))
            .or(existing.as_ref().map(|p| p.gid))
            .unwrap_or(if kept_user { 0 } else { uid });
        if uid > MAX_MAPPED_ID || gid > MAX_MAPPED_ID {
            self.notes.push(format!(
                "uid {uid} / gid {gid} is above {MAX_MAPPED_ID}: rootless runtimes with the default subordinate id range cannot run it"
            ));
        }
        let name = match existing {
            Some(p) => p.name,
            None => self.add_passwd_entry(uid, gid),
        };
        if !self.accounts.groups.iter().any(|g| g.gid == gid) {
            self.add_group_entry(&name, gid);
        }
        Identity {
            uid,
            gid,
            name,
            why,
        }
    }

    /// Adds the runtime user to `/etc/passwd` (made when the image has none); its name.
    fn add_passwd_entry(&mut self, uid: u64, gid: u64) -> String {
        let accounts = &self.accounts;
        let name = users::free_name(&accounts.passwd, &accounts.groups, uid);
        let home = format!("/home/{name}");
        let line = format!("{name}:x:{uid}:{gid}:{name}:{home}:/sbin/nologin");
        let (text, before) = match &accounts.passwd_text {
            Some(t) => (
                users::append_line(t, &line),
                self.view.get(&accounts.passwd_path).map(|n| n.meta.clone()),
            ),
            None => (
                users::append_line(b"root:x:0:0:root:/root:/sbin/nologin\n", &line),
                None,
            ),
        };
        self.changes.insert(
            accounts.passwd_path.clone(),
            text_change(
                text,
                before,
                accounts.passwd_text.as_ref(),
                self.opts.mtime,
                Reason::PasswdEntry,
            ),
        );
        name
    }

    /// Adds the runtime user's group to `/etc/group`.
    fn add_group_entry(&mut self, name: &str, gid: u64) {
        let accounts = &self.accounts;
        let line = format!("{name}:x:{gid}:");
        let (text, before) = match &accounts.group_text {
            Some(t) => (
                users::append_line(t, &line),
                self.view.get(&accounts.group_path).map(|n| n.meta.clone()),
            ),
            None => (users::append_line(b"root:x:0:\n", &line), None),
        };
        self.changes.insert(
            accounts.group_path.clone(),
            text_change(
                text,
                before,
                accounts.group_text.as_ref(),
                self.opts.mtime,
                Reason::GroupEntry,
            ),
        );
    }

    /// Code owned by non-root users goes back to root.
    fn reown_code(&mut self) {
        let view = self.view;
        for (path, node) in view.iter() {
            let meta = &node.meta;
            if meta.uid == 0 {
                continue;
            }
            match meta.kind {
                Kind::File => {
                    if !is_code(&path, meta) {
                        continue;
                    }
                    let Some(Content::Spooled { offset }) = node.content.as_ref() else {
                        continue;
                    };
                    let mut new = root_owned(meta);
                    new.kind = Kind::File;
                    new.link = None;
                    self.changes.insert(
                        path.clone(),
                        FileChange {
                            meta: new,
                            body: Body::Spooled {
                                offset: *offset,
                                len: meta.size,
                            },
                            reason: Reason::Reowned { uid: meta.uid },
                            before: Some(meta.clone()),
                            original: None,
                        },
                    );
                }
                Kind::Hardlink => self.reown_hardlink(&path, meta),
                _ => {}
            }
        }
    }

    /// A hard link has the same inode as its target: when the target is re-owned by its
    /// own entry, this name becomes a hard link to it in the new layer.
    fn reown_hardlink(&mut self, path: &ImagePath, meta: &Meta) {
        let Some(target_path) = meta.hardlink_target() else {
            return;
        };
        let Some(target) = self.view.get(&target_path) else {
            return;
        };
        let reowned = target.meta.kind == Kind::File
            && target.meta.uid != 0
            && is_code(&target_path, &target.meta)
            && matches!(target.content, Some(Content::Spooled { .. }));
        if !reowned {
            return;
        }
        let mut new = root_owned(&target.meta);
        new.kind = Kind::Hardlink;
        new.link = Some(target_path.as_bytes().to_vec());
        new.xattrs.clear();
        new.size = 0;
        self.changes.insert(
            path.clone(),
            FileChange {
                meta: new,
                body: Body::Empty,
                reason: Reason::Reowned {
                    uid: target.meta.uid,
                },
                before: Some(meta.clone()),
                original: None,
            },
        );
    }

    /// The directories that hold code (anywhere below them): not ones the service must
    /// write, or the user could swap the root-owned binaries in them.
    fn dirs_holding_code(&self) -> BTreeSet<ImagePath> {
        let mut holds_code: BTreeSet<ImagePath> = BTreeSet::new();
        for (path, node) in self.view.iter() {
            if matches!(node.meta.kind, Kind::File | Kind::Hardlink) && is_code(&path, &node.meta) {
                let mut p = path.parent();
                while let Some(dir) = p {
                    if !holds_code.insert(dir.clone()) {
                        break;
                    }
                    p = dir.parent();
                }
            }
        }
        holds_code
    }

    /// The directories the service writes: the former service user's (those that hold
    /// code become root-owned instead), volumes, the user's home, the recipes'; and the
    /// directories it must own. Returns the top-most writable directories and the owned
    /// ones.
    fn writable(
        &mut self,
        former: Option<&Former>,
        identity: &Identity,
        holds_code: &BTreeSet<ImagePath>,
    ) -> Result<(Vec<ImagePath>, Vec<OwnedDir>), PlanError> {
        let view = self.view;
        let uid = identity.uid;
        let mut roots: Vec<(ImagePath, String)> = Vec::new();
        if let Some((former_uid, _, _)) = former {
            for (path, node) in view.iter() {
                if node.meta.kind != Kind::Dir || node.meta.uid != *former_uid {
                    continue;
                }
                if holds_code.contains(&path) {
                    self.changes.insert(
                        path.clone(),
                        FileChange {
                            meta: root_owned(&node.meta),
                            body: Body::Empty,
                            reason: Reason::CodeDir { uid: node.meta.uid },
                            before: Some(node.meta.clone()),
                            original: None,
                        },
                    );
                } else {
                    roots.push((path.clone(), "owned by the service user".to_string()));
                }
            }
        }
        for v in self.config.volumes() {
            roots.push((view.resolve(&ImagePath::new(&v))?, "a volume".to_string()));
        }
        if let Some(home) = self.writable_home(identity, holds_code)? {
            roots.push((home, "the user's home".to_string()));
        }
        for (dir, recipe) in &self.opts.recipe_writable {
            roots.push((dir.clone(), format!("written by the {recipe} service")));
        }
        // A directory the service must own is not made group-writable (the service refuses
        // it then); its parent is, and is what gets mounted.
        let mut owned: Vec<OwnedDir> = Vec::new();
        for o in &self.opts.recipe_owned {
            let Some(parent) = o.path.parent().filter(|p| !p.is_root()) else {
                continue;
            };
            roots.push((
                parent,
                format!("where the {} service creates its {}", o.recipe, o.what),
            ));
            owned.push(o.clone());
        }
        let is_owned = |p: &ImagePath| owned.iter().any(|o| *p == o.path || p.is_below(&o.path));
        roots.retain(|(root, _)| !is_owned(root));
        let mut writable: BTreeSet<ImagePath> = BTreeSet::new();
        for (root, what) in roots {
            if self.make_tree_writable(&root, &what, uid, &is_owned) {
                writable.insert(root);
            }
        }
        let owned = self.own_dirs(owned, uid);
        // Keep only the top-most writable directories in the list shown to users.
        let mut tops: Vec<ImagePath> = Vec::new();
        for w in writable {
            if !tops.iter().any(|t| w.is_below(t)) {
                tops.push(w);
            }
        }
        Ok((tops, owned))
    }

    /// The user's home, when the service may write it: not a system directory, holding
    /// no code and no files of others.
    fn writable_home(
        &mut self,
        identity: &Identity,
        holds_code: &BTreeSet<ImagePath>,
    ) -> Result<Option<ImagePath>, PlanError> {
        let home = self
            .accounts
            .passwd
            .iter()
            .find(|p| p.uid == identity.uid)
            .map(|p| p.home.clone())
            .unwrap_or_else(|| format!("/home/{}", identity.name));
        if is_system_dir(&home) {
            return Ok(None);
        }
        let home = self.view.resolve(&ImagePath::new(&home))?;
        if holds_code.contains(&home) {
            self.notes.push(format!(
                "the user's home `{home}` holds executables, so it is not made writable"
            ));
            Ok(None)
        } else if self
            .view
            .below(&home)
            .any(|(_, n)| n.meta.kind != Kind::Dir && n.meta.uid != identity.uid)
        {
            // A service account's "home" is often its content (www-data: /var/www).
            self.notes.push(format!(
                "the user's home `{home}` holds files it does not own, so it is not made writable"
            ));
            Ok(None)
        } else {
            Ok(Some(home))
        }
    }

    /// Makes `root` and the directories below it `UID:0` and group-writable (created when
    /// missing); whether it became a writable directory.
    fn make_tree_writable(
        &mut self,
        root: &ImagePath,
        what: &str,
        uid: u64,
        is_owned: &dyn Fn(&ImagePath) -> bool,
    ) -> bool {
        if root.is_root() {
            self.notes.push(format!(
                "`/` is {what}; unroot does not make the whole filesystem writable"
            ));
            return false;
        }
        match self.view.get(root) {
            Some(node) if node.meta.kind != Kind::Dir => {
                self.notes.push(format!(
                    "`{root}` is {what} but is a {}, not a directory; left as it is",
                    node.meta.kind.name()
                ));
                return false;
            }
            Some(node) => {
                make_writable(&mut self.changes, root, &node.meta, uid);
                for (p, n) in self.view.below(root) {
                    if n.meta.kind == Kind::Dir && !is_owned(&p) {
                        make_writable(&mut self.changes, &p, &n.meta, uid);
                    }
                }
            }
            // Missing, or only implied by deeper entries: give it an entry of its own.
            None => {
                self.changes
                    .insert(root.clone(), new_dir(uid, self.opts.mtime));
            }
        }
        true
    }

    /// The directories the service must own: the runtime user's, with their mode.
    fn own_dirs(&mut self, owned: Vec<OwnedDir>, uid: u64) -> Vec<OwnedDir> {
        for o in &owned {
            let before = self.view.get(&o.path).map(|n| n.meta.clone());
            let mut change = match &before {
                Some(meta) if meta.kind != Kind::Dir => {
                    self.notes.push(format!(
                        "`{}` is the {} service's {} but is a {}, not a directory; left as it is",
                        o.path,
                        o.recipe,
                        o.what,
                        meta.kind.name()
                    ));
                    continue;
                }
                Some(meta) => FileChange {
                    meta: meta.clone(),
                    body: Body::Empty,
                    reason: Reason::Owned {
                        what: o.what.clone(),
                    },
                    before: before.clone(),
                    original: None,
                },
                None => {
                    let mut created = new_dir(uid, self.opts.mtime);
                    created.reason = Reason::Owned {
                        what: o.what.clone(),
                    };
                    created
                }
            };
            change.meta.uid = uid;
            change.meta.gid = 0;
            change.meta.mode = o.mode;
            if before.as_ref() != Some(&change.meta) {
                self.changes.insert(o.path.clone(), change);
            } else {
                self.changes.remove(&o.path);
            }
        }
        owned
    }

    /// Files and directories the service reads that only root (or its group) may: the
    /// runtime user's, group 0, readable by both (a recipe's `[[readable]]`).
    fn readable(&mut self, identity: &Identity) {
        for (path, r) in self.readable_targets() {
            let Some(node) = self.view.get(&path) else {
                self.notes.push(format!(
                    "`{}`, which the {} recipe makes readable, is not in the image",
                    r.path, r.recipe
                ));
                continue;
            };
            let before = self
                .changes
                .get(&path)
                .map_or(node.meta.clone(), |c| c.meta.clone());
            let mut meta = before.clone();
            meta.uid = identity.uid;
            meta.gid = 0;
            let body = match (meta.kind, &node.content) {
                (Kind::Dir, _) => {
                    meta.mode |= 0o550;
                    Body::Empty
                }
                (Kind::File, Some(Content::Bytes(b))) => {
                    meta.mode |= 0o440;
                    Body::Bytes(b.clone())
                }
                (Kind::File, Some(Content::Spooled { offset })) => {
                    meta.mode |= 0o440;
                    Body::Spooled {
                        offset: *offset,
                        len: meta.size,
                    }
                }
                (kind, _) => {
                    self.notes.push(format!(
                        "`{path}` ({}), which the {} recipe makes readable, was not kept while reading the layers; left as it is",
                        kind.name(),
                        r.recipe
                    ));
                    continue;
                }
            };
            if meta == node.meta {
                continue;
            }
            self.changes
                .entry(path.clone())
                .and_modify(|c| c.meta = meta.clone())
                .or_insert(FileChange {
                    meta,
                    body,
                    reason: Reason::Readable {
                        recipe: r.recipe.clone(),
                    },
                    before: Some(node.meta.clone()),
                    original: None,
                });
        }
    }

    /// The paths a recipe's `[[readable]]` entries name: an exact path (symlinks
    /// resolved), or every file and directory a glob (`/var/lib/knot/**`) matches.
    fn readable_targets(&self) -> Vec<(ImagePath, &'a ReadablePath)> {
        let mut out = Vec::new();
        for r in &self.opts.recipe_readable {
            let pattern = r.path.display();
            if !crate::recipe::is_glob(&pattern) {
                if let Ok(path) = self.view.resolve(&r.path) {
                    out.push((path, r));
                }
                continue;
            }
            let Ok(glob) = globset::Glob::new(&pattern) else {
                continue;
            };
            let glob = glob.compile_matcher();
            for (path, node) in self.view.iter() {
                if matches!(node.meta.kind, Kind::File | Kind::Dir) && glob.is_match(path.display())
                {
                    out.push((path, r));
                }
            }
        }
        out
    }

    /// A volume at a directory the service must own moves to its parent: a fresh volume
    /// takes the parent's owner and mode, so any UID in group 0 can create the directory.
    fn volumes(&self, owned: &[OwnedDir]) -> Result<Option<Vec<String>>, PlanError> {
        let before = self.config.volumes();
        let mut volumes: Vec<String> = Vec::new();
        for v in &before {
            let resolved = self.view.resolve(&ImagePath::new(v))?;
            let v = match owned.iter().find(|o| o.path == resolved) {
                Some(o) => o.path.parent().map_or(v.clone(), |p| p.display()),
                None => v.clone(),
            };
            if !volumes.contains(&v) {
                volumes.push(v);
            }
        }
        Ok((volumes != before).then_some(volumes))
    }

    /// The runtime contract mounts a tmpfs on /tmp and services are pointed there: an
    /// image without it (scratch) gets one, world-writable with the sticky bit as usual.
    fn tmp(&mut self) {
        let tmp = ImagePath::new("/tmp");
        if !self.view.exists(&tmp) {
            let mut dir = new_dir(0, self.opts.mtime);
            dir.meta.gid = 0;
            dir.meta.mode = 0o1777;
            self.changes.insert(tmp, dir);
        }
    }

    /// Ports: `ExposedPorts` (and the ports recipes say the service listens on), port
    /// variables, the command line, the script the command runs; then a privilege drop in
    /// front of the command goes.
    fn ports(&mut self) -> PortChanges {
        let mut out = PortChanges::default();
        let mut exposed = self.config.exposed_ports();
        let before = exposed.clone();
        for (key, _) in &self.opts.recipe_ports {
            if !exposed.contains(key) {
                exposed.push(key.clone());
            }
        }
        let mut new_exposed: Vec<String> = Vec::new();
        for key in &exposed {
            let moved = self.opts.ports.map_exposed(key);
            if let Some(to) = &moved {
                if let (Ok(f), Ok(t)) = (port_of(key), port_of(to)) {
                    out.moves.insert(f, t);
                }
            }
            let k = moved.unwrap_or_else(|| key.clone());
            if !new_exposed.contains(&k) {
                new_exposed.push(k);
            }
        }
        out.exposed = (new_exposed != before).then_some(new_exposed);
        self.port_variables(&mut out);
        let ports: Vec<u16> = exposed.iter().filter_map(|k| port_of(k).ok()).collect();
        let [entrypoint, cmd] = self.command_ports(&ports, &mut out);
        self.script_ports(&ports, &mut out);
        let [entrypoint, cmd] = self.strip_drops([entrypoint, cmd]);
        out.entrypoint = entrypoint;
        out.cmd = cmd;
        out
    }

    /// `*PORT` variables of `Env`.
    fn port_variables(&self, out: &mut PortChanges) {
        let env = self.config.env();
        let mut new_env = Vec::with_capacity(env.len());
        for var in &env {
            match var.split_once('=') {
                Some((k, v)) if is_port_variable(k) => match v
                    .trim()
                    .parse::<u16>()
                    .ok()
                    .and_then(|p| self.opts.ports.map(p).map(|t| (p, t)))
                {
                    Some((from, to)) => {
                        out.moves.insert(from, to);
                        out.listen_moves.insert(from);
                        new_env.push(format!("{k}={to}"));
                    }
                    None => new_env.push(var.clone()),
                },
                _ => new_env.push(var.clone()),
            }
        }
        out.env = (new_env != env).then_some(new_env);
    }

    /// The listen ports of `Entrypoint` and `Cmd`: the new ones, where they change.
    fn command_ports(&self, ports: &[u16], out: &mut PortChanges) -> [Option<Vec<String>>; 2] {
        let mut commands: [Option<Vec<String>>; 2] = [None, None];
        for (slot, (field, args)) in commands.iter_mut().zip([
            ("Entrypoint", self.config.entrypoint()),
            ("Cmd", self.config.cmd()),
        ]) {
            let found = port_args(&args, ports);
            let (new, moved) = rewrite(&args, &found, |p| self.opts.ports.map(p));
            for (index, from, to) in moved {
                out.moves.insert(from, to);
                out.listen_moves.insert(from);
                out.arg_moves.push(ArgMove {
                    location: format!("config.{field}[{index}]"),
                    from,
                    to,
                    before: args[index].clone(),
                    after: new[index].clone(),
                });
            }
            if new != args {
                *slot = Some(new);
            }
        }
        commands
    }

    /// The script the command runs: its listen ports move too, in a copy in the new layer.
    fn script_ports(&mut self, ports: &[u16], out: &mut PortChanges) {
        let Some(script) = super::scripts::command_script(self.view, self.config, ports, |p| {
            self.opts.ports.map(p)
        }) else {
            return;
        };
        let moved: Vec<_> = script.moves.iter().filter(|m| m.from != m.to).collect();
        if moved.is_empty() {
            return;
        }
        for m in &moved {
            out.moves.insert(m.from, m.to);
            out.listen_moves.insert(m.from);
            out.arg_moves.push(ArgMove {
                location: format!("{}:{}", script.path, m.line),
                from: m.from,
                to: m.to,
                before: m.before.clone(),
                after: m.after.clone(),
            });
        }
        let edits = moved
            .iter()
            .map(|m| format!("line {}: {} -> {}", m.line, m.from, m.to))
            .collect();
        self.changes.insert(
            script.path.clone(),
            text_change(
                script.text,
                self.view.get(&script.path).map(|n| n.meta.clone()),
                Some(&script.original),
                self.opts.mtime,
                Reason::PortsMoved { edits },
            ),
        );
    }

    /// A privilege drop in front of the command fails as a non-root user: it goes.
    fn strip_drops(&mut self, commands: [Option<Vec<String>>; 2]) -> [Option<Vec<String>>; 2] {
        let mut commands = commands;
        for (slot, (field, args)) in commands.iter_mut().zip([
            ("Entrypoint", self.config.entrypoint()),
            ("Cmd", self.config.cmd()),
        ]) {
            let current = slot.clone().unwrap_or(args);
            if let Some((rest, removed)) = users::strip_drop(&current) {
                self.notes.push(format!(
                    "`{removed}` removed from `{field}`: switching users needs root, and the image now starts as its user"
                ));
                *slot = Some(rest);
            }
            for (option, recipe) in &self.opts.recipe_user_options {
                let current = slot.clone().unwrap_or_else(|| match field {
                    "Entrypoint" => self.config.entrypoint(),
                    _ => self.config.cmd(),
                });
                if let Some((rest, removed)) = users::strip_option(&current, option) {
                    self.notes.push(format!(
                        "`{removed}` removed from `{field}` ({recipe} recipe): switching users needs root, and the image now starts as its user"
                    ));
                    *slot = Some(rest);
                }
            }
        }
        commands
    }
}

/// Homes that are system directories (Debian's `daemon` lives in /usr/sbin, `bin` in /bin):
/// never made writable.
fn is_system_dir(home: &str) -> bool {
    let home = home.trim_end_matches('/');
    matches!(
        home,
        "" | "/nonexistent"
            | "/root"
            | "/dev/null"
            | "/bin"
            | "/sbin"
            | "/lib"
            | "/etc"
            | "/usr"
            | "/usr/bin"
            | "/usr/sbin"
            | "/usr/lib"
            | "/usr/local"
            | "/usr/local/bin"
            | "/usr/local/sbin"
            | "/var"
            | "/var/spool/lpd"
            | "/var/mail"
            | "/var/backups"
            | "/var/cache/man"
            | "/dev"
            | "/proc"
            | "/sys"
            | "/tmp"
    ) || home.starts_with("/proc/")
        || home.starts_with("/sys/")
        || home.starts_with("/dev/")
}

/// The metadata of a file made root's and not writable by group or others.
fn root_owned(meta: &Meta) -> Meta {
    let mut new = meta.clone();
    new.uid = 0;
    new.gid = 0;
    new.mode &= !0o022;
    new
}

fn port_of(key: &str) -> Result<u16, std::num::ParseIntError> {
    key.split('/').next().unwrap_or_default().parse()
}

fn text_change(
    text: Vec<u8>,
    before: Option<Meta>,
    original: Option<&Vec<u8>>,
    mtime: u64,
    reason: Reason,
) -> FileChange {
    let mut meta = before.clone().unwrap_or(Meta {
        kind: Kind::File,
        mode: 0o644,
        uid: 0,
        gid: 0,
        size: 0,
        mtime,
        link: None,
        device: (0, 0),
        xattrs: BTreeMap::new(),
    });
    meta.kind = Kind::File;
    meta.size = text.len() as u64;
    meta.mtime = mtime;
    FileChange {
        meta,
        body: Body::Bytes(std::sync::Arc::new(text)),
        reason,
        before,
        original: Some(std::sync::Arc::new(original.cloned().unwrap_or_default())),
    }
}

fn make_writable(
    changes: &mut BTreeMap<ImagePath, FileChange>,
    path: &ImagePath,
    meta: &Meta,
    uid: u64,
) {
    let mut new = meta.clone();
    new.uid = uid;
    new.gid = 0;
    new.mode |= 0o770;
    if new == *meta {
        return;
    }
    changes.insert(
        path.clone(),
        FileChange {
            meta: new,
            body: Body::Empty,
            reason: Reason::Writable,
            before: Some(meta.clone()),
            original: None,
        },
    );
}

fn new_dir(uid: u64, mtime: u64) -> FileChange {
    FileChange {
        meta: Meta {
            kind: Kind::Dir,
            mode: 0o775,
            uid,
            gid: 0,
            size: 0,
            mtime,
            link: None,
            device: (0, 0),
            xattrs: BTreeMap::new(),
        },
        body: Body::Empty,
        reason: Reason::CreatedDir,
        before: None,
        original: None,
    }
}
