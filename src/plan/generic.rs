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

/// Builds the generic plan.
pub fn plan(scan: &Scan, config: &ImageConfig, opts: &Options) -> Result<Plan, PlanError> {
    if opts.uid == Some(0) {
        return Err(PlanError::Root);
    }
    let view = &scan.view;
    let accounts = accounts::Accounts::read(&scan.view)?;
    let user_before = config.user().map(String::from);
    let image_user =
        accounts::resolve_user(user_before.as_deref(), &accounts.passwd, &accounts.groups);
    let mut notes = Vec::new();

    // The service user the image had: named in `User`; else the one its command switches
    // to, the recipe's, or the obvious owner of files.
    let former: Option<(u64, Option<u64>, String)> = match image_user.uid {
        Some(0) => {
            let switched = users::command_user(config, &accounts.passwd);
            let preferred = opts.preferred_users.iter().find_map(|(name, recipe)| {
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
                obvious_service_user(view, &accounts.passwd).map(|p| {
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
            format!(
                "the image's `User` {}",
                user_before.as_deref().unwrap_or_default()
            ),
        )),
        None => {
            notes.push(format!(
                "the image's `User` `{}` has no entry in `/etc/passwd`; the image could not start as it was",
                user_before.as_deref().unwrap_or_default()
            ));
            None
        }
    };

    let (uid, why) = match (opts.uid, &former) {
        (Some(u), _) => (u, "given with `--uid`".to_string()),
        (None, Some((u, _, why))) => (*u, why.clone()),
        (None, None) => (
            DEFAULT_UID,
            format!("no non-root user in the image, so the default {DEFAULT_UID}"),
        ),
    };
    let existing = accounts.passwd.iter().find(|p| p.uid == uid);
    // The group: as given; else the one the image's user ran with (a numeric `User` without
    // a passwd entry runs with group 0); else the account's primary group; else the UID.
    let kept_user = opts.uid.is_none() && former.is_some();
    let gid = opts
        .gid
        .or(former.as_ref().filter(|f| f.0 == uid).and_then(|f| f.1))
        .or(existing.map(|p| p.gid))
        .unwrap_or(if kept_user { 0 } else { uid });
    if uid > MAX_MAPPED_ID || gid > MAX_MAPPED_ID {
        notes.push(format!(
            "uid {uid} / gid {gid} is above {MAX_MAPPED_ID}: rootless runtimes with the default subordinate id range cannot run it"
        ));
    }

    let mut changes: BTreeMap<ImagePath, FileChange> = BTreeMap::new();
    let name = match existing {
        Some(p) => p.name.clone(),
        None => {
            let name = users::free_name(&accounts.passwd, &accounts.groups, uid);
            let home = format!("/home/{name}");
            let line = format!("{name}:x:{uid}:{gid}:{name}:{home}:/sbin/nologin");
            let (text, before) = match &accounts.passwd_text {
                Some(t) => (
                    users::append_line(t, &line),
                    view.get(&accounts.passwd_path).map(|n| n.meta.clone()),
                ),
                None => (
                    users::append_line(b"root:x:0:0:root:/root:/sbin/nologin\n", &line),
                    None,
                ),
            };
            changes.insert(
                accounts.passwd_path.clone(),
                text_change(
                    text,
                    before,
                    accounts.passwd_text.as_ref(),
                    opts.mtime,
                    Reason::PasswdEntry,
                ),
            );
            name
        }
    };
    if !accounts.groups.iter().any(|g| g.gid == gid) {
        let line = format!("{name}:x:{gid}:");
        let (text, before) = match &accounts.group_text {
            Some(t) => (
                users::append_line(t, &line),
                view.get(&accounts.group_path).map(|n| n.meta.clone()),
            ),
            None => (users::append_line(b"root:x:0:\n", &line), None),
        };
        changes.insert(
            accounts.group_path.clone(),
            text_change(
                text,
                before,
                accounts.group_text.as_ref(),
                opts.mtime,
                Reason::GroupEntry,
            ),
        );
    }
    let home = accounts
        .passwd
        .iter()
        .find(|p| p.uid == uid)
        .map(|p| p.home.clone())
        .unwrap_or_else(|| format!("/home/{name}"));

    // Code owned by non-root users goes back to root.
    for (path, node) in view.iter() {
        let meta = &node.meta;
        if meta.uid == 0 {
            continue;
        }
        let (source_meta, content) = match meta.kind {
            Kind::File => (meta, node.content.as_ref()),
            Kind::Hardlink => {
                // Same inode as its target: when the target is re-owned by its own entry,
                // this name becomes a hard link to it in the new layer.
                let Some(target_path) = meta.hardlink_target() else {
                    continue;
                };
                let Some(target) = view.get(&target_path) else {
                    continue;
                };
                let reowned = target.meta.kind == Kind::File
                    && target.meta.uid != 0
                    && is_code(&target_path, &target.meta)
                    && matches!(target.content, Some(Content::Spooled { .. }));
                if reowned {
                    let mut new = root_owned(&target.meta);
                    new.kind = Kind::Hardlink;
                    new.link = Some(target_path.as_bytes().to_vec());
                    new.xattrs.clear();
                    new.size = 0;
                    changes.insert(
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
                continue;
            }
            _ => continue,
        };
        if !is_code(&path, source_meta) {
            continue;
        }
        let Some(Content::Spooled { offset }) = content else {
            continue;
        };
        let mut new = root_owned(source_meta);
        new.kind = Kind::File;
        new.link = None;
        changes.insert(
            path.clone(),
            FileChange {
                meta: new,
                body: Body::Spooled {
                    offset: *offset,
                    len: source_meta.size,
                },
                reason: Reason::Reowned { uid: meta.uid },
                before: Some(meta.clone()),
                original: None,
            },
        );
    }

    // Directories the service writes.
    let mut writable: BTreeSet<ImagePath> = BTreeSet::new();
    let mut writable_roots: Vec<(ImagePath, String)> = Vec::new();
    // A directory that holds code (anywhere below it) is not one the service must write:
    // were it writable, the user could swap the root-owned binaries in it.
    let mut holds_code: BTreeSet<ImagePath> = BTreeSet::new();
    for (path, node) in view.iter() {
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
    if let Some((former_uid, _, _)) = &former {
        for (path, node) in view.iter() {
            if node.meta.kind != Kind::Dir || node.meta.uid != *former_uid {
                continue;
            }
            if holds_code.contains(&path) {
                changes.insert(
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
                writable_roots.push((path.clone(), "owned by the service user".to_string()));
            }
        }
    }
    for v in config.volumes() {
        writable_roots.push((view.resolve(&ImagePath::new(&v))?, "a volume".to_string()));
    }
    if !is_system_dir(&home) {
        let home = view.resolve(&ImagePath::new(&home))?;
        if holds_code.contains(&home) {
            notes.push(format!(
                "the user's home `{home}` holds executables, so it is not made writable"
            ));
        } else if view
            .below(&home)
            .any(|(_, n)| n.meta.kind != Kind::Dir && n.meta.uid != uid)
        {
            // A service account's "home" is often its content (www-data: /var/www).
            notes.push(format!(
                "the user's home `{home}` holds files it does not own, so it is not made writable"
            ));
        } else {
            writable_roots.push((home, "the user's home".to_string()));
        }
    }
    for (dir, recipe) in &opts.recipe_writable {
        writable_roots.push((dir.clone(), format!("written by the {recipe} service")));
    }
    // A directory the service must own is not made group-writable (the service refuses
    // it then); its parent is, and is what gets mounted.
    let mut owned: Vec<&OwnedDir> = Vec::new();
    for o in &opts.recipe_owned {
        let Some(parent) = o.path.parent().filter(|p| !p.is_root()) else {
            continue;
        };
        writable_roots.push((
            parent,
            format!("where the {} service creates its {}", o.recipe, o.what),
        ));
        owned.push(o);
    }
    let is_owned = |p: &ImagePath| owned.iter().any(|o| *p == o.path || p.is_below(&o.path));
    writable_roots.retain(|(root, _)| !is_owned(root));
    for (root, what) in writable_roots {
        if root.is_root() {
            notes.push(format!(
                "`/` is {what}; unroot does not make the whole filesystem writable"
            ));
            continue;
        }
        match view.get(&root) {
            Some(node) if node.meta.kind != Kind::Dir => {
                notes.push(format!(
                    "`{root}` is {what} but is a {}, not a directory; left as it is",
                    node.meta.kind.name()
                ));
                continue;
            }
            Some(node) => {
                make_writable(&mut changes, &root, &node.meta, uid);
                for (p, n) in view.below(&root) {
                    if n.meta.kind == Kind::Dir && !is_owned(&p) {
                        make_writable(&mut changes, &p, &n.meta, uid);
                    }
                }
            }
            None if view.exists(&root) => {
                // Only implied by deeper entries: give it an entry of its own.
                changes.insert(root.clone(), new_dir(uid, opts.mtime));
            }
            None => {
                changes.insert(root.clone(), new_dir(uid, opts.mtime));
            }
        }
        writable.insert(root);
    }
    for o in &owned {
        let before = view.get(&o.path).map(|n| n.meta.clone());
        let mut change = match &before {
            Some(meta) if meta.kind != Kind::Dir => {
                notes.push(format!(
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
                let mut created = new_dir(uid, opts.mtime);
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
            changes.insert(o.path.clone(), change);
        } else {
            changes.remove(&o.path);
        }
    }
    // A volume at a directory the service must own moves to its parent: a fresh volume
    // takes the parent's owner and mode, so any UID in group 0 can create the directory.
    let before_volumes = config.volumes();
    let mut new_volumes: Vec<String> = Vec::new();
    for v in &before_volumes {
        let resolved = view.resolve(&ImagePath::new(v))?;
        let v = match owned.iter().find(|o| o.path == resolved) {
            Some(o) => o.path.parent().map_or(v.clone(), |p| p.display()),
            None => v.clone(),
        };
        if !new_volumes.contains(&v) {
            new_volumes.push(v);
        }
    }
    let volumes = (new_volumes != before_volumes).then_some(new_volumes);
    // The runtime contract mounts a tmpfs on /tmp and services are pointed there: an image
    // without it (scratch) gets one, world-writable with the sticky bit as usual.
    let tmp = ImagePath::new("/tmp");
    if !view.exists(&tmp) {
        let mut dir = new_dir(0, opts.mtime);
        dir.meta.gid = 0;
        dir.meta.mode = 0o1777;
        changes.insert(tmp, dir);
    }
    // Keep only the top-most writable directories in the list shown to users.
    let mut tops: Vec<ImagePath> = Vec::new();
    for w in writable {
        if !tops.iter().any(|t| w.is_below(t)) {
            tops.push(w);
        }
    }

    // Ports.
    let mut moves: BTreeMap<u16, u16> = BTreeMap::new();
    let exposed = config.exposed_ports();
    let mut new_exposed: Vec<String> = Vec::new();
    for key in &exposed {
        let moved = opts.ports.map_exposed(key);
        if let Some(to) = &moved {
            if let (Ok(f), Ok(t)) = (port_of(key), port_of(to)) {
                moves.insert(f, t);
            }
        }
        let k = moved.unwrap_or_else(|| key.clone());
        if !new_exposed.contains(&k) {
            new_exposed.push(k);
        }
    }
    let env = config.env();
    let mut new_env = Vec::with_capacity(env.len());
    let mut listen_moves = BTreeSet::new();
    for var in &env {
        match var.split_once('=') {
            Some((k, v)) if is_port_variable(k) => match v
                .trim()
                .parse::<u16>()
                .ok()
                .and_then(|p| opts.ports.map(p).map(|t| (p, t)))
            {
                Some((from, to)) => {
                    moves.insert(from, to);
                    listen_moves.insert(from);
                    new_env.push(format!("{k}={to}"));
                }
                None => new_env.push(var.clone()),
            },
            _ => new_env.push(var.clone()),
        }
    }

    // Ports on the command line.
    let exposed_ports: Vec<u16> = exposed.iter().filter_map(|k| port_of(k).ok()).collect();
    let mut commands: [Option<Vec<String>>; 2] = [None, None];
    let mut arg_moves = Vec::new();
    for (slot, (field, args)) in commands
        .iter_mut()
        .zip([("Entrypoint", config.entrypoint()), ("Cmd", config.cmd())])
    {
        let found = port_args(&args, &exposed_ports);
        let (new, moved) = rewrite(&args, &found, |p| opts.ports.map(p));
        for (index, from, to) in moved {
            moves.insert(from, to);
            listen_moves.insert(from);
            arg_moves.push(ArgMove {
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
    // The script the command runs: its listen ports move too, in a copy in the new layer.
    if let Some(script) =
        super::scripts::command_script(view, config, &exposed_ports, |p| opts.ports.map(p))
    {
        let moved: Vec<_> = script.moves.iter().filter(|m| m.from != m.to).collect();
        if !moved.is_empty() {
            for m in &moved {
                moves.insert(m.from, m.to);
                listen_moves.insert(m.from);
                arg_moves.push(ArgMove {
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
            changes.insert(
                script.path.clone(),
                text_change(
                    script.text,
                    view.get(&script.path).map(|n| n.meta.clone()),
                    Some(&script.original),
                    opts.mtime,
                    Reason::PortsMoved { edits },
                ),
            );
        }
    }

    // A privilege drop in front of the command fails as a non-root user: it goes.
    for (slot, (field, args)) in commands
        .iter_mut()
        .zip([("Entrypoint", config.entrypoint()), ("Cmd", config.cmd())])
    {
        let current = slot.clone().unwrap_or(args);
        if let Some((rest, removed)) = users::strip_drop(&current) {
            notes.push(format!(
                "`{removed}` removed from `{field}`: switching users needs root, and the image now starts as its user"
            ));
            *slot = Some(rest);
        }
    }
    let [entrypoint, cmd] = commands;

    for (what, id) in [("uid", uid), ("gid", gid)] {
        if id > MAX_MAPPED_ID {
            notes.push(format!(
                "{what} {id} is above 65535: rootless runtimes with the default subordinate id range (65536 ids from /etc/subuid) cannot map it; pick an id below 65536 unless every runtime it goes to maps more"
            ));
        }
    }
    Ok(Plan {
        identity: Identity {
            uid,
            gid,
            name,
            why,
        },
        user_before,
        changes,
        exposed_ports: (new_exposed != exposed).then_some(new_exposed),
        env: (new_env != env).then_some(new_env),
        volumes,
        port_moves: moves.into_iter().collect(),
        listen_moves,
        entrypoint,
        cmd,
        arg_moves,
        writable: tops,
        owned: owned.into_iter().cloned().collect(),
        notes,
        recipes: Vec::new(),
        recipe_problems: Vec::new(),
    })
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
