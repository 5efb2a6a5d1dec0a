//! Learning: what a traced run of the image showed, turned into changes a recipe can say,
//! each with its evidence (the process, the call, its result, the file and line).
//!
//! A run as root (the original, the way Docker runs it) shows what the service needs: the
//! account it switches to, the ports it binds and where each is set (a whole-word number in
//! a file it read before the `bind`, next to a key that names a port or an address; or its
//! arguments), the files it reads that only root may, the directories it writes. A run of
//! the converted image as its user shows what is still refused: each `EACCES`, `EPERM` or
//! `EROFS` is a fact for the next round. What no change can fix (a capability a user
//! namespace cannot give, a chown to another user) is kept as a problem, with the evidence.
//!
//! The changes become a recipe ([`Knowledge::draft`]); the plan applies it as it applies
//! any recipe, so learning adds facts and never a second way to plan.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::layer::accounts::{parse_group, parse_passwd, GroupEntry, PasswdEntry};
use crate::layer::{ImagePath, Kind, MergedView};
use crate::model::trace::{Address, Call, Errno, Trace, Traced, Transport};
use crate::recipe::draft::{
    Draft, DraftPort, DraftReadable, DraftRemove, DraftReplace, DraftWritable, Noted,
};

/// One traced run, and what it ran.
pub struct Run<'a> {
    /// What the tracer saw.
    pub trace: &'a Trace,
    /// The original image's files (their metadata).
    pub view: &'a MergedView,
    /// A file of the run's root filesystem, as the container saw it (at most 1 MiB).
    pub read: &'a dyn Fn(&ImagePath) -> Option<Vec<u8>>,
    /// Whether this is the original run as root (its successes are facts); else a run
    /// of the converted image (its refusals are).
    pub as_root: bool,
    /// How the run is named in evidence (`round 0, as root`).
    pub label: String,
    /// The runtime user of the converted image, when known.
    pub runtime_uid: Option<u64>,
}

/// A change learned from a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// Run as the account the service switches to.
    User {
        /// Its name.
        name: String,
        /// Its uid.
        uid: u64,
    },
    /// A port the service listens on (exposed; moved where its arguments name it).
    Listen {
        /// The port.
        port: u16,
        /// TCP or UDP.
        transport: Transport,
    },
    /// Where a privileged port is set: a line of a file, moved by the port map.
    PortSetting {
        /// The file.
        file: String,
        /// The line number (from 1).
        line: usize,
        /// The line.
        text: String,
        /// The key that names it.
        directive: String,
        /// The regex that finds it (and lines like it), with a `port` group.
        pattern: String,
        /// The port.
        port: u16,
    },
    /// A directory the service writes: `UID:0`, group-writable, mounted writable.
    Writable {
        /// The directory.
        dir: String,
    },
    /// A file the service reads that only root (or its group) may.
    Readable {
        /// The path.
        path: String,
    },
    /// An option of the command line that makes the service switch users, which needs
    /// root: removed with its value.
    UserOption {
        /// The option (`--user`).
        option: String,
        /// The argument vector it was in.
        argv: String,
    },
    /// A line that makes the service switch users whose commenting out did not stop it (a
    /// compiled-in default applies): its value set empty.
    Blank {
        /// The file.
        file: String,
        /// The line number.
        line: usize,
        /// The line.
        text: String,
        /// The regex of the line (group 1: its indentation).
        pattern: String,
        /// What it becomes.
        with: String,
    },
    /// A line that makes the service switch users, which needs root: commented out.
    Remove {
        /// The file.
        file: String,
        /// The line number.
        line: usize,
        /// The line.
        text: String,
        /// The regex of the line.
        pattern: String,
    },
}

impl Change {
    /// What it does, in a phrase.
    pub fn describe(&self) -> String {
        match self {
            Change::User { name, uid } => format!("run as `{name}` (uid {uid})"),
            Change::Listen { port, transport } => {
                format!("listens on {port}/{}: exposed and moved", transport.name())
            }
            Change::PortSetting {
                file, line, port, ..
            } => format!("move port {port} where `{file}` sets it (line {line})"),
            Change::Writable { dir } => format!("make `{dir}` writable (UID:0, g+w, a mount)"),
            Change::Readable { path } => format!("make `{path}` readable by the runtime user"),
            Change::Remove {
                file, line, text, ..
            } => {
                format!("comment out `{}` ({file}:{line})", text.trim())
            }
            Change::UserOption { option, .. } => {
                format!("remove `{option}` and its value from the command line")
            }
            Change::Blank {
                file, line, text, ..
            } => format!("set `{}` empty ({file}:{line})", text.trim()),
        }
    }

    /// What makes two changes the same.
    fn key(&self) -> String {
        match self {
            Change::User { .. } => "user".into(),
            Change::Listen { port, transport } => format!("listen {port}/{}", transport.name()),
            Change::PortSetting { file, pattern, .. } => format!("port {file} {pattern}"),
            Change::Writable { dir } => format!("writable {dir}"),
            Change::Readable { path } => format!("readable {path}"),
            Change::Remove { file, pattern, .. } => format!("remove {file} {pattern}"),
            Change::UserOption { option, .. } => format!("user option {option}"),
            Change::Blank { file, line, .. } => format!("blank {file}:{line}"),
        }
    }
}

/// A learned change and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Learned {
    /// The change.
    pub change: Change,
    /// What showed it (one line each).
    pub evidence: Vec<String>,
    /// The round that learned it (0: the original run).
    pub round: usize,
}

/// Something a run showed that no change of the image can fix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// What it is.
    pub problem: String,
    /// What showed it.
    pub evidence: Vec<String>,
    /// A capability the service needs, which no unprivileged container has: learning
    /// cannot go on.
    pub capability: bool,
}

/// Everything learned so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Knowledge {
    /// The changes, in the order they were learned.
    pub learned: Vec<Learned>,
    /// What cannot be learned.
    pub problems: Vec<Problem>,
}

/// Paths the tracer sees that are not the image's files.
const NOT_FILES: &[&str] = &["/proc", "/sys", "/dev"];

/// Directories that are never made writable: the system's own.
const SYSTEM_DIRS: &[&str] = &[
    "/", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/usr", "/etc", "/var", "/boot",
    "/opt", "/srv", "/home", "/root", "/mnt", "/media",
];

/// Files whose reading says nothing of where a port is set, and which are never made
/// readable (the shadow files).
const NOT_CONFIG: &[&str] = &[
    "/etc/passwd",
    "/etc/group",
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/nsswitch.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/resolv.conf",
    "/etc/services",
    "/etc/protocols",
    "/etc/localtime",
    "/etc/ld.so.cache",
    "/etc/gai.conf",
];

/// Words in a key that say it names a port or an address.
const PORT_KEYS: &[&str] = &[
    "port",
    "listen",
    "bind",
    "addr",
    "interface",
    "socket",
    "server",
    "inet",
    "accept",
    "host",
];

/// Words in a key that say it names the user a service switches to.
const USER_KEYS: &[&str] = &[
    "user", "group", "uid", "gid", "runas", "owner", "setuid", "setgid", "chuser",
];

fn under(path: &str, dirs: &[&str]) -> bool {
    dirs.iter()
        .any(|d| path == *d || path.starts_with(&format!("{d}/")))
}

impl Knowledge {
    /// Learns from one run; returns how many changes are new.
    pub fn observe(&mut self, run: &Run<'_>, round: usize) -> usize {
        let mut obs = Observer::new(run, self);
        for ev in &run.trace.events {
            obs.event(ev);
        }
        let Observer {
            changes, problems, ..
        } = obs;
        let mut new = 0;
        for (change, evidence) in changes {
            if let Change::Blank { file, line, .. } = &change {
                // The line is edited once: set empty, no longer commented out.
                self.learned.retain(|l| {
                    !matches!(&l.change, Change::Remove { file: f, line: n, .. } if f == file && n == line)
                });
            }
            match self
                .learned
                .iter_mut()
                .find(|l| l.change.key() == change.key())
            {
                Some(l) => {
                    if !l.evidence.contains(&evidence) && l.evidence.len() < 5 {
                        l.evidence.push(evidence);
                    }
                }
                None => {
                    new += 1;
                    self.learned.push(Learned {
                        change,
                        evidence: vec![evidence],
                        round,
                    });
                }
            }
        }
        for p in problems {
            if !self.problems.iter().any(|q| q.problem == p.problem) {
                self.problems.push(p);
            }
        }
        new
    }

    /// A new round of proving: the problems of the last one are seen again, or are gone
    /// (a capability the service needs stays).
    pub fn begin_round(&mut self) {
        self.problems.retain(|p| p.capability);
    }

    /// A problem the runs showed that no call explains (the program's own message).
    pub fn add_problem(&mut self, problem: String, evidence: Vec<String>) {
        if !self.problems.iter().any(|p| p.problem == problem) {
            self.problems.push(Problem {
                problem,
                evidence,
                capability: false,
            });
        }
    }

    /// Whether the service needs a capability no unprivileged container has.
    pub fn needs_capability(&self) -> bool {
        self.problems.iter().any(|p| p.capability)
    }

    /// The learned account's name.
    pub fn user(&self) -> Option<&str> {
        self.learned.iter().find_map(|l| match &l.change {
            Change::User { name, .. } => Some(name.as_str()),
            _ => None,
        })
    }

    /// The learned changes as a recipe named `name`; `program` is the service's binary
    /// (what the recipe matches when it edits no file).
    pub fn draft(&self, name: &str, summary: &str, program: &str, header: Vec<String>) -> Draft {
        let mut d = Draft {
            header,
            name: name.to_string(),
            summary: summary.to_string(),
            ..Draft::default()
        };
        let mut files: Vec<String> = Vec::new();
        for l in &self.learned {
            let why = l.evidence.clone();
            match &l.change {
                Change::User { name, .. } => d.users.push(Noted {
                    entry: name.clone(),
                    why,
                }),
                Change::Listen { port, transport } => d.ports.push(Noted {
                    entry: format!("{port}/{}", transport.name()),
                    why,
                }),
                Change::PortSetting {
                    file,
                    directive,
                    pattern,
                    ..
                } => {
                    files.push(file.clone());
                    d.port_patterns.push(Noted {
                        entry: DraftPort {
                            directive: directive.clone(),
                            files: vec![file.clone()],
                            pattern: pattern.clone(),
                        },
                        why,
                    });
                }
                Change::Writable { dir } => d.writable.push(Noted {
                    entry: DraftWritable {
                        what: "written at run time".into(),
                        path: dir.clone(),
                        create: false,
                    },
                    why,
                }),
                Change::Readable { path } => d.readable.push(Noted {
                    entry: DraftReadable {
                        what: "read at start".into(),
                        path: path.clone(),
                    },
                    why,
                }),
                Change::Blank {
                    file,
                    pattern,
                    with,
                    ..
                } => {
                    files.push(file.clone());
                    d.replaces.push(Noted {
                        entry: DraftReplace {
                            name: "do not switch users (needs root)".into(),
                            files: vec![file.clone()],
                            pattern: pattern.clone(),
                            with: with.clone(),
                        },
                        why,
                    });
                }
                Change::UserOption { option, .. } => d.user_options.push(Noted {
                    entry: option.clone(),
                    why,
                }),
                Change::Remove { file, pattern, .. } => {
                    files.push(file.clone());
                    d.removes.push(Noted {
                        entry: DraftRemove {
                            name: "do not switch users (needs root)".into(),
                            files: vec![file.clone()],
                            pattern: pattern.clone(),
                        },
                        why,
                    });
                }
            }
        }
        files.dedup();
        d.matches = if files.is_empty() {
            vec![program.to_string()]
        } else {
            let mut sorted = files;
            sorted.sort();
            sorted.dedup();
            sorted
        };
        d
    }
}

/// Reads one run's events.
struct Observer<'a, 'k> {
    run: &'a Run<'a>,
    known: &'k Knowledge,
    passwd: Vec<PasswdEntry>,
    groups: Vec<GroupEntry>,
    changes: Vec<(Change, String)>,
    problems: Vec<Problem>,
    writable: BTreeSet<ImagePath>,
}

impl<'a, 'k> Observer<'a, 'k> {
    fn new(run: &'a Run<'a>, known: &'k Knowledge) -> Observer<'a, 'k> {
        let text = |p: &str| (run.read)(&ImagePath::new(p)).unwrap_or_default();
        let mut writable: BTreeSet<ImagePath> = ["/tmp", "/dev/shm"]
            .iter()
            .map(|p| ImagePath::new(p))
            .collect();
        for l in &known.learned {
            if let Change::Writable { dir } = &l.change {
                writable.insert(ImagePath::new(dir));
            }
        }
        Observer {
            run,
            known,
            passwd: parse_passwd(&text("/etc/passwd")),
            groups: parse_group(&text("/etc/group")),
            changes: Vec::new(),
            problems: Vec::new(),
            writable,
        }
    }

    /// `round 0, as root: nsd: bind udp 0.0.0.0:53 -> 0` (no pid: a recipe that quotes
    /// it is the same from one run to the next).
    fn evidence(&self, ev: &Traced) -> String {
        let who = self
            .run
            .trace
            .process(ev.pid)
            .map_or(format!("pid {}", ev.pid), |p| p.name());
        let result = match ev.result {
            Ok(v) => v.to_string(),
            Err(e) => e.name(),
        };
        format!(
            "{}: {who}: {} -> {result}",
            self.run.label,
            call_text(&ev.call)
        )
    }

    fn problem(&mut self, problem: String, ev: &Traced, capability: bool) {
        let evidence = vec![self.evidence(ev)];
        if !self.problems.iter().any(|p| p.problem == problem) {
            self.problems.push(Problem {
                problem,
                evidence,
                capability,
            });
        }
    }

    fn learn(&mut self, change: Change, evidence: String) {
        self.changes.push((change, evidence));
    }

    /// Whether the event is a fact of this run: a success of the original, a refusal of
    /// a converted image.
    fn counts(&self, result: Result<i64, Errno>) -> bool {
        match result {
            Ok(_) => self.run.as_root,
            Err(e) => !self.run.as_root && e.is_denial(),
        }
    }

    fn event(&mut self, ev: &Traced) {
        let denied = |e: i32| ev.result == Err(Errno(e));
        match &ev.call {
            Call::SetUid { ids } if self.run.as_root && ev.result.is_ok() => {
                self.switched_user(ids, ev);
            }
            Call::SetUid { .. } | Call::SetGid { .. } | Call::SetGroups { .. }
                if !self.run.as_root && denied(libc::EPERM) =>
            {
                self.drop_refused(ev);
            }
            Call::Bind { address } if self.counts(ev.result) => self.bound(address, ev),
            Call::Open { path, write, .. } if *write && self.counts(ev.result) => {
                self.wrote(path, ev);
            }
            Call::Mkdir { path } | Call::Remove { path } | Call::Link { path }
                if self.counts(ev.result) =>
            {
                self.wrote(path, ev);
            }
            Call::Rename { from, to } if self.counts(ev.result) => {
                self.wrote(from, ev);
                self.wrote(to, ev);
            }
            Call::Open { path, write, .. } if !*write => self.read(path, ev),
            Call::SetClock { name } if denied(libc::EPERM) => self.problem(
                format!("it sets the system clock (`{name}`), which needs CAP_SYS_TIME: no container user namespace can give it, so it cannot run unprivileged (run it with a clock it does not set, e.g. chronyd -x)"),
                ev,
                true,
            ),
            Call::Socket { domain, kind }
                if self.run.as_root
                    && ev.result.is_ok()
                    && (*domain == libc::AF_PACKET
                        || (*kind == libc::SOCK_RAW
                            && matches!(*domain, libc::AF_INET | libc::AF_INET6))) =>
            {
                self.problem(
                    "it opens a raw socket, which needs CAP_NET_RAW: an unprivileged user cannot have it".into(),
                    ev,
                    true,
                )
            }
            Call::Chown { path, uid, .. } if !self.run.as_root && denied(libc::EPERM) => {
                let to = uid.map_or("its group".to_string(), |u| format!("uid {u}"));
                self.problem(
                    format!("it changes the owner of `{path}` to {to}, which needs root; set the option that names that owner to the runtime user, or give it a directory it owns"),
                    ev,
                    false,
                );
            }
            Call::Chroot { path } if !self.run.as_root && denied(libc::EPERM) => self.problem(
                format!("it changes its root to `{path}` (chroot), which needs CAP_SYS_CHROOT; turn that option off"),
                ev,
                false,
            ),
            _ => {}
        }
    }

    fn switched_user(&mut self, ids: &[u32], ev: &Traced) {
        let Some(uid) = ids.iter().copied().find(|&u| u != 0) else {
            return;
        };
        let evidence = self.evidence(ev);
        match self.passwd.iter().find(|p| p.uid == uid as u64) {
            Some(p) => {
                let change = Change::User {
                    name: p.name.clone(),
                    uid: p.uid,
                };
                self.learn(change, evidence);
            }
            None => self.problem(
                format!("it switches to uid {uid}, which has no account in /etc/passwd; give `--uid {uid}`"),
                ev,
                false,
            ),
        }
    }

    fn bound(&mut self, address: &Address, ev: &Traced) {
        match address {
            Address::Inet {
                ip,
                port,
                transport,
            } => {
                let evidence = self.evidence(ev);
                if !ip.is_loopback() && *transport != Transport::Other && *port != 0 {
                    self.learn(
                        Change::Listen {
                            port: *port,
                            transport: *transport,
                        },
                        evidence.clone(),
                    );
                }
                if *port > 0 && *port < 1024 {
                    self.privileged_port(*port, ev, evidence);
                }
            }
            Address::Unix { path } if !path.starts_with('@') => self.wrote(path, ev),
            _ => {}
        }
    }

    /// Where the privileged port `port` that `ev` bound is set.
    fn privileged_port(&mut self, port: u16, ev: &Traced, evidence: String) {
        let trace = self.run.trace;
        for file in self.files_read_before(ev) {
            let Some(text) = (self.run.read)(&file) else {
                continue;
            };
            if let Some(found) = find_port_setting(&text, port) {
                let change = Change::PortSetting {
                    file: file.display(),
                    line: found.line,
                    text: found.text.clone(),
                    directive: found.key,
                    pattern: found.pattern,
                    port,
                };
                let evidence = format!(
                    "{evidence}, after reading {file} (line {}: `{}`)",
                    found.line,
                    found.text.trim()
                );
                self.learn(change, evidence);
                return;
            }
        }
        let word = port.to_string();
        let in_argv = trace.lineage(ev.pid).into_iter().find_map(|pid| {
            let argv = &trace.process(pid)?.argv;
            argv.iter()
                .any(|a| has_word(a, &word))
                .then(|| argv.join(" "))
        });
        match in_argv {
            // The command line: the generic conversion moves a port it knows the service
            // listens on (the `Listen` change says so).
            Some(_) if self.run.as_root => {}
            Some(argv) => self.problem(
                format!("port {port} is set in its arguments (`{argv}`) in a way unroot does not rewrite; pass the moved port ({}) yourself", port as u32 + 8000),
                ev,
                false,
            ),
            None => self.problem(
                format!("port {port} is set in no file it read before binding it, nor in its arguments (a compiled-in default?); set it to a port above 1023 in its configuration"),
                ev,
                false,
            ),
        }
    }

    /// The image's files that the process of `ev` (or one it descends from) read before
    /// `ev`, the most recent first.
    fn files_read_before(&self, ev: &Traced) -> Vec<ImagePath> {
        let trace = self.run.trace;
        let lineage = trace.lineage(ev.pid);
        let execs: BTreeSet<&str> = trace
            .events
            .iter()
            .filter_map(|e| match &e.call {
                Call::Exec { path, .. } => Some(path.as_str()),
                _ => None,
            })
            .collect();
        let mut out: Vec<ImagePath> = Vec::new();
        for e in trace.events.iter().rev() {
            if e.seq >= ev.seq || !lineage.contains(&e.pid) || e.result.is_err() {
                continue;
            }
            let Call::Open {
                path, write: false, ..
            } = &e.call
            else {
                continue;
            };
            if under(path, NOT_FILES)
                || NOT_CONFIG.contains(&path.as_str())
                || execs.contains(path.as_str())
                || is_library(path)
            {
                continue;
            }
            let Ok(resolved) = self.run.view.resolve(&ImagePath::new(path)) else {
                continue;
            };
            if self
                .run
                .view
                .get(&resolved)
                .is_some_and(|n| n.meta.kind == Kind::File)
                && !out.contains(&resolved)
            {
                out.push(resolved);
            }
        }
        out
    }

    /// The process wrote `path` (or was refused): its directory must be writable.
    fn wrote(&mut self, path: &str, ev: &Traced) {
        if under(path, NOT_FILES) && !path.starts_with("/dev/shm") {
            return;
        }
        let view = self.run.view;
        let Some(parent) = ImagePath::new(path).parent() else {
            return;
        };
        let Ok(mut dir) = view.resolve(&parent) else {
            return;
        };
        if self.writable.iter().any(|w| dir == *w || dir.is_below(w)) {
            return;
        }
        // A directory made at run time (mkdir -p): the nearest one the image has.
        while !view.exists(&dir) {
            match dir.parent() {
                Some(p) => dir = p,
                None => break,
            }
        }
        let shown = dir.display();
        if under(&shown, &["/root"]) && self.run.as_root {
            // Root's home: the converted image has its user's.
            return;
        }
        if SYSTEM_DIRS.contains(&shown.as_str()) || holds_code(view, &dir) {
            let what = if SYSTEM_DIRS.contains(&shown.as_str()) {
                "a system directory"
            } else {
                "a directory that holds programs"
            };
            self.problem(
                format!("it writes `{path}`, and `{shown}` is {what}, which unroot does not make writable; point the service at a path under /tmp or a directory of its own"),
                ev,
                false,
            );
            return;
        }
        self.writable.insert(dir.clone());
        let evidence = self.evidence(ev);
        self.learn(Change::Writable { dir: shown }, evidence);
    }

    /// The process read `path` (or was refused): the runtime user must be able to.
    fn read(&mut self, path: &str, ev: &Traced) {
        if under(path, NOT_FILES) || NOT_CONFIG.contains(&path) {
            return;
        }
        let refused = ev.result == Err(Errno(libc::EACCES));
        let fact = if self.run.as_root {
            ev.result.is_ok()
        } else {
            refused
        };
        if !fact {
            return;
        }
        let view = self.run.view;
        let Ok(resolved) = view.resolve(&ImagePath::new(path)) else {
            return;
        };
        let Some(node) = view.get(&resolved) else {
            return;
        };
        if !matches!(node.meta.kind, Kind::File | Kind::Dir)
            || under(&resolved.display(), &["/tmp"])
        {
            return;
        }
        let uid = self.run.runtime_uid;
        // Both the runtime user and any UID in group 0 must get there and read it: the
        // directories on the way (outermost first), and the file.
        let mut targets: Vec<(ImagePath, &crate::layer::Meta)> = Vec::new();
        let mut dir = resolved.parent();
        while let Some(d) = dir.filter(|d| !d.is_root()) {
            if let Some(n) = view.get(&d).filter(|n| n.meta.kind == Kind::Dir) {
                if !open_to_all(&n.meta, uid, 0o001) {
                    targets.insert(0, (d.clone(), &n.meta));
                }
            }
            dir = d.parent();
        }
        let bits = if node.meta.kind == Kind::Dir {
            0o005
        } else {
            0o004
        };
        if !open_to_all(&node.meta, uid, bits) || (targets.is_empty() && !self.run.as_root) {
            targets.push((resolved.clone(), &node.meta));
        }
        for (path, meta) in targets {
            let evidence = format!(
                "{} (the image has `{path}` {}:{} {:04o})",
                self.evidence(ev),
                meta.uid,
                meta.gid,
                meta.mode & 0o7777
            );
            self.learn(
                Change::Readable {
                    path: path.display(),
                },
                evidence,
            );
        }
    }

    /// A refused `setuid`, `setgid` or `setgroups`: the option that makes the service
    /// switch users, in a file it read, is commented out.
    fn drop_refused(&mut self, ev: &Traced) {
        let mut names: Vec<String> = Vec::new();
        match &ev.call {
            Call::SetUid { ids } => names.extend(ids.iter().filter_map(|u| {
                self.passwd
                    .iter()
                    .find(|p| p.uid == *u as u64)
                    .map(|p| p.name.clone())
            })),
            Call::SetGid { ids } => names.extend(ids.iter().filter_map(|g| {
                self.groups
                    .iter()
                    .find(|e| e.gid == *g as u64)
                    .map(|e| e.name.clone())
            })),
            _ => {}
        }
        if let Some(user) = self.known.user() {
            names.push(user.to_string());
            let primary = self.passwd.iter().find(|p| p.name == user).map(|p| p.gid);
            names.extend(
                self.groups
                    .iter()
                    .filter(|g| Some(g.gid) == primary)
                    .map(|g| g.name.clone()),
            );
        }
        names.sort();
        names.dedup();
        if self.user_options(&names, ev) {
            return;
        }
        let read = self.files_read_before(ev);
        // A line commented out in an earlier round that did not stop it: the program's
        // default applies; its value is set empty instead.
        let removed = self.known.learned.iter().find_map(|l| match &l.change {
            Change::Remove {
                file, line, text, ..
            } if read.iter().any(|r| r.display() == *file) => {
                Some((file.clone(), *line, text.clone()))
            }
            _ => None,
        });
        if let Some((file, line, text)) = removed {
            if let Some((pattern, with)) = names.iter().find_map(|n| blank_setting(&text, n)) {
                let evidence = format!(
                    "{}, with `{}` ({file}:{line}) commented out",
                    self.evidence(ev),
                    text.trim()
                );
                self.learn(
                    Change::Blank {
                        file,
                        line,
                        text,
                        pattern,
                        with,
                    },
                    evidence,
                );
                return;
            }
        }
        for file in read {
            let Some(text) = (self.run.read)(&file) else {
                continue;
            };
            if let Some(found) = names.iter().find_map(|n| find_user_setting(&text, n)) {
                let evidence = format!(
                    "{}, after reading {file} (line {}: `{}`)",
                    self.evidence(ev),
                    found.line,
                    found.text.trim()
                );
                self.learn(
                    Change::Remove {
                        file: file.display(),
                        line: found.line,
                        text: found.text,
                        pattern: found.pattern,
                    },
                    evidence,
                );
                return;
            }
        }
        self.problem(
            format!("it switches users ({}), which needs root, and no option of a file it read asks for it; find the option that turns this off", call_text(&ev.call)),
            ev,
            false,
        );
    }
}

impl Observer<'_, '_> {
    /// The options of the command line of `ev`'s process (or one it descends from) whose
    /// value is one of `names`: learned, each; whether there was one.
    fn user_options(&mut self, names: &[String], ev: &Traced) -> bool {
        let trace = self.run.trace;
        let mut found = Vec::new();
        for pid in trace.lineage(ev.pid) {
            let Some(p) = trace.process(pid) else {
                continue;
            };
            let argv = &p.argv;
            for (k, a) in argv.iter().enumerate().skip(1) {
                if !a.starts_with('-') {
                    continue;
                }
                let named = |v: &str| names.iter().any(|n| n == v.split(':').next().unwrap_or(v));
                let option = match a.split_once('=') {
                    Some((o, v)) if named(v) => Some(o.to_string()),
                    Some(_) => None,
                    None if argv.get(k + 1).is_some_and(|v| named(v)) => Some(a.clone()),
                    None if a.len() > 2 && !a.starts_with("--") && named(&a[2..]) => {
                        Some(a[..2].to_string())
                    }
                    None => None,
                };
                if let Some(o) = option.filter(|o| !found.iter().any(|(f, _)| f == o)) {
                    found.push((o, argv.join(" ")));
                }
            }
            if !found.is_empty() {
                break;
            }
        }
        let evidence = self.evidence(ev);
        let any = !found.is_empty();
        for (option, argv) in found {
            self.learn(
                Change::UserOption {
                    option,
                    argv: argv.clone(),
                },
                format!("{evidence}, started as `{argv}`"),
            );
        }
        any
    }
}

/// Whether what `bits` allow others (read `0o004`, enter `0o001`, both `0o005`) the
/// runtime user and every UID in group 0 have: for others, or for group 0 when the runtime
/// user owns it with the same rights.
fn open_to_all(meta: &crate::layer::Meta, runtime_uid: Option<u64>, bits: u32) -> bool {
    if meta.mode & bits == bits {
        return true;
    }
    let group = bits << 3;
    let owner = bits << 6;
    runtime_uid == Some(meta.uid)
        && meta.gid == 0
        && meta.mode & group == group
        && meta.mode & owner == owner
}

/// Whether a directory of the image holds programs or libraries below it.
fn holds_code(view: &MergedView, dir: &ImagePath) -> bool {
    view.below(dir).any(|(p, n)| {
        matches!(n.meta.kind, Kind::File | Kind::Hardlink) && super::generic::is_code(&p, &n.meta)
    })
}

fn is_library(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.ends_with(".so")
        || name.contains(".so.")
        || path.starts_with("/usr/lib/locale")
        || path.starts_with("/usr/share/locale")
        || path.starts_with("/usr/share/zoneinfo")
        || path.starts_with("/usr/lib/x86_64-linux-gnu/gconv")
}

/// A call, as evidence shows it: `bind udp 0.0.0.0:53`.
pub fn call_text(call: &Call) -> String {
    match call {
        Call::Exec { path, .. } => format!("execve {path}"),
        Call::Open {
            path,
            write,
            create,
        } => format!(
            "open {path} for {}",
            match (write, create) {
                (false, _) => "reading",
                (true, false) => "writing",
                (true, true) => "writing (create)",
            }
        ),
        Call::Mkdir { path } => format!("mkdir {path}"),
        Call::Rename { from, to } => format!("rename {from} -> {to}"),
        Call::Remove { path } => format!("unlink {path}"),
        Call::Link { path } => format!("link {path}"),
        Call::Chown { path, uid, gid } => format!(
            "chown {path} {}:{}",
            uid.map_or("-".into(), |u| u.to_string()),
            gid.map_or("-".into(), |g| g.to_string())
        ),
        Call::Chmod { path, mode } => format!("chmod {path} {mode:04o}"),
        Call::SetUid { ids } => format!("setuid {ids:?}"),
        Call::SetGid { ids } => format!("setgid {ids:?}"),
        Call::SetGroups { groups } => format!("setgroups {groups:?}"),
        Call::Capset { effective, .. } => format!("capset {effective:#x}"),
        Call::Socket { domain, kind } => format!("socket domain {domain} type {kind}"),
        Call::Bind { address } => match address {
            Address::Inet {
                ip,
                port,
                transport,
            } => match ip {
                std::net::IpAddr::V6(v6) => format!("bind {} [{v6}]:{port}", transport.name()),
                v4 => format!("bind {} {v4}:{port}", transport.name()),
            },
            Address::Unix { path } => format!("bind unix {path}"),
            Address::Other { number } => format!("bind family {number}"),
        },
        Call::Chroot { path } => format!("chroot {path}"),
        Call::SetClock { name } => name.clone(),
    }
}

/// A setting found in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Found {
    line: usize,
    text: String,
    key: String,
    pattern: String,
}

/// The code of a line: before a `#`, `;` or `//` comment (one at the start, or after
/// white space).
fn code_of(line: &str) -> &str {
    let mut end = line.len();
    for marker in ["#", ";", "//"] {
        let mut from = 0;
        while let Some(i) = line[from..].find(marker) {
            let at = from + i;
            let before = line[..at].chars().last();
            if before.is_none_or(char::is_whitespace) {
                end = end.min(at);
                break;
            }
            from = at + marker.len();
        }
    }
    &line[..end]
}

/// Whether `word` occurs in `text` as a whole word (not inside a longer number or name).
fn has_word(text: &str, word: &str) -> bool {
    word_at(text, word, 0).is_some()
}

fn word_at(text: &str, word: &str, from: usize) -> Option<usize> {
    let mut start = from;
    while let Some(i) = text[start..].find(word) {
        let at = start + i;
        let before = text[..at].chars().last();
        let after = text[at + word.len()..].chars().next();
        let inner = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        if !inner(before) && !inner(after) {
            return Some(at);
        }
        start = at + word.len();
    }
    None
}

/// The key before position `at` of `code`: the last word with a letter in it, and where
/// it starts.
fn key_before(code: &str, at: usize) -> Option<(usize, &str)> {
    let prefix = &code[..at];
    let is_key = |c: char| c.is_alphanumeric() || "_-.".contains(c);
    let mut end = prefix.len();
    loop {
        let trimmed = prefix[..end].trim_end_matches(|c: char| !is_key(c));
        if trimmed.is_empty() {
            return None;
        }
        let start = trimmed
            .char_indices()
            .rev()
            .find(|(_, c)| !is_key(*c))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let word = &trimmed[start..];
        if word.chars().any(|c| c.is_alphabetic()) {
            return Some((start, word.trim_matches(|c| c == '.' || c == '-')));
        }
        end = start;
    }
}

/// A regex for `text`: its characters as they are, runs of white space as `\s+` (or `\s*`
/// around punctuation).
fn generalize(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    let mut prev: Option<char> = None;
    while let Some(c) = chars.next() {
        if c.is_whitespace() {
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            let next = chars.peek().copied();
            let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
            out.push_str(if word(prev) && word(next) {
                r"\s+"
            } else {
                r"\s*"
            });
        } else {
            out.push_str(&regex::escape(&c.to_string()));
        }
        prev = Some(c);
    }
    out
}

/// The line of `text` where `port` is set: a whole-word number in the code of a line, next
/// to a key that names a port or an address; with a regex for lines like it.
fn find_port_setting(text: &[u8], port: u16) -> Option<Found> {
    if text.iter().take(8192).any(|&b| b == 0) {
        return None;
    }
    let text = String::from_utf8_lossy(text);
    let word = port.to_string();
    for (n, line) in text.lines().enumerate() {
        let code = code_of(line);
        let mut from = 0;
        while let Some(at) = word_at(code, &word, from) {
            from = at + word.len();
            let Some((start, key)) = key_before(code, at) else {
                continue;
            };
            let lower = key.to_lowercase();
            if !PORT_KEYS.iter().any(|k| lower.contains(k)) {
                continue;
            }
            let lead = &code[..start];
            let anchor = if lead.trim().is_empty() {
                r"^\s*".to_string()
            } else {
                r"\b".to_string()
            };
            let key_at = start + code[start..].find(key).unwrap_or(0);
            let pattern = format!(r"{anchor}{}(?P<port>\d+)\b", generalize(&code[key_at..at]));
            return Some(Found {
                line: n + 1,
                text: line.to_string(),
                key: key.to_string(),
                pattern,
            });
        }
    }
    None
}

/// The line of `text` that names the account `name` after a key that names a user or a
/// group; with a regex for it.
fn find_user_setting(text: &[u8], name: &str) -> Option<Found> {
    let text = String::from_utf8_lossy(text);
    for (n, line) in text.lines().enumerate() {
        let code = code_of(line);
        let Some(at) = word_at(code, name, 0) else {
            continue;
        };
        let Some((start, key)) = key_before(code, at) else {
            continue;
        };
        let lower = key.to_lowercase();
        let lead = code[..start].trim();
        if !USER_KEYS.iter().any(|k| lower.contains(k)) || !(lead.is_empty() || lead == "<") {
            continue;
        }
        let end = at + name.len();
        let quote = code[end..]
            .chars()
            .next()
            .filter(|c| *c == '"' || *c == '\'');
        let body = generalize(code[..end].trim_start());
        let pattern = match quote {
            Some(q) => format!(r"^\s*{body}{}", regex::escape(&q.to_string())),
            None => format!(r"^\s*{body}\b"),
        };
        return Some(Found {
            line: n + 1,
            text: line.to_string(),
            key: key.to_string(),
            pattern,
        });
    }
    None
}

/// For a line that names the account `name` (`username: nsd`, `user "x"`): a regex of it
/// (group 1: its indentation) and what it becomes with the value empty (`username: ""`).
fn blank_setting(line: &str, name: &str) -> Option<(String, String)> {
    let code = code_of(line);
    let at = word_at(code, name, 0)?;
    let indent = &code[..code.len() - code.trim_start().len()];
    let prefix = &code[indent.len()..at];
    let end = at + name.len();
    let quote = code[end..]
        .chars()
        .next()
        .filter(|c| *c == '"' || *c == '\'');
    let (tail, empty) = match quote {
        Some(q) => (regex::escape(&q.to_string()), q.to_string()),
        None => (r"\b".to_string(), "\"\"".to_string()),
    };
    let pattern = format!(r"^(\s*){}{}{tail}", generalize(prefix), regex::escape(name));
    let with = format!("${{1}}{}{empty}", prefix.replace('$', "$$"));
    Some((pattern, with))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_setting_is_set_empty_in_its_own_syntax() {
        for (line, name, after) in [
            ("  username: nsd", "nsd", "  username: \"\""),
            ("\tusername: \"unbound\"", "unbound", "\tusername: \"\""),
            ("user=dnsmasq", "dnsmasq", "user=\"\""),
        ] {
            let (pattern, with) = blank_setting(line, name).unwrap();
            let re = regex::Regex::new(&pattern).unwrap();
            assert!(re.is_match(line), "{pattern} on {line:?}");
            assert_eq!(
                re.replace(line, with.as_str()),
                after,
                "{pattern} -> {with}"
            );
        }
    }

    fn port_line(text: &str, port: u16) -> Option<(usize, String, String)> {
        find_port_setting(text.as_bytes(), port).map(|f| (f.line, f.key, f.pattern))
    }

    #[test]
    fn ports_are_found_in_any_syntax_next_to_a_key() {
        let cases: &[(&str, u16, &str, &str)] = &[
            ("server:\n  port: 53\n", 53, "port", "  port: 53"),
            ("# port=25 in a comment\nport=25\n", 25, "port", "port=25"),
            ("Port 443\nTimeout 600\n", 443, "Port", "Port 443"),
            (
                "service imap-login {\n  inet_listener imap {\n    port = \"110\"\n  }\n}\n",
                110,
                "port",
                "    port = \"110\"",
            ),
            (
                "<icecast>\n  <listen-socket>\n    <port>119</port>\n",
                119,
                "port",
                "    <port>119</port>",
            ),
            (
                "listen-address  127.0.0.1:80\n",
                80,
                "listen-address",
                "listen-address  127.0.0.1:80",
            ),
            (
                "server:\n    listen: 0.0.0.0@53\n",
                53,
                "listen",
                "    listen: 0.0.0.0@53",
            ),
        ];
        for (text, port, key, line) in cases {
            let found = find_port_setting(text.as_bytes(), *port)
                .unwrap_or_else(|| panic!("{port} in {text:?}"));
            assert_eq!(&found.key, key, "{text:?}");
            assert_eq!(&found.text, line, "{text:?}");
            let re = regex::bytes::RegexBuilder::new(&found.pattern)
                .multi_line(true)
                .build()
                .unwrap();
            let caps = re
                .captures(line.as_bytes())
                .unwrap_or_else(|| panic!("{} does not match {line:?}", found.pattern));
            assert_eq!(
                &caps["port"],
                port.to_string().as_bytes(),
                "{}",
                found.pattern
            );
            // Lines like it, with another port, match too; other keys do not.
            let other = line.replace(&port.to_string(), "8053");
            assert!(
                re.is_match(other.as_bytes()),
                "{} on {other}",
                found.pattern
            );
        }
    }

    #[test]
    fn numbers_that_are_not_ports_are_not_taken() {
        // In a longer number, next to a key that names no port, in a comment.
        assert_eq!(port_line("timeout 530\nport 5353\n", 53), None);
        assert_eq!(port_line("max-children 80\n", 80), None);
        assert_eq!(port_line("# listen 80\n", 80), None);
        assert_eq!(port_line("retries = 80 # port\n", 80), None);
        // A binary file.
        assert_eq!(find_port_setting(b"\0\x7fELF port 80", 80), None);
        // The first line that sets it.
        assert_eq!(
            port_line("user x\nlisten 80\nport 80\n", 80).map(|l| l.0),
            Some(2)
        );
    }

    #[test]
    fn user_options_are_found_with_their_line() {
        let f =
            find_user_setting(b"Port 80\nUser tinyproxy\nGroup tinyproxy\n", "tinyproxy").unwrap();
        assert_eq!(f.line, 2);
        let re = regex::Regex::new(&f.pattern).unwrap();
        assert!(re.is_match("User tinyproxy"));
        assert!(!re.is_match("Group tinyproxy"));
        let f = find_user_setting(b"server:\n  username: \"nsd\"\n", "nsd").unwrap();
        assert_eq!(f.line, 2);
        assert!(regex::Regex::new(&f.pattern)
            .unwrap()
            .is_match("  username: \"nsd\""));
        assert_eq!(
            find_user_setting(b"# user nsd\nlogfile nsd.log\n", "nsd"),
            None
        );
        assert!(find_user_setting(b"user=dnsmasq\n", "dnsmasq").is_some());
    }

    #[test]
    fn comments_are_cut_only_where_they_start() {
        assert_eq!(code_of("port 80 # the port"), "port 80 ");
        assert_eq!(code_of("url http://x#frag"), "url http://x#frag");
        assert_eq!(code_of("; all comment"), "");
    }

    #[test]
    fn whitespace_generalizes() {
        assert_eq!(generalize("port: "), r"port:\s*");
        assert_eq!(generalize("User  x"), r"User\s+x");
        assert_eq!(generalize("a.b"), r"a\.b");
    }
}
