//! What a traced run did: its processes and the system calls that tie a service to root,
//! each with its result (see `runtime::trace` for how they are seen). Pure data.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;

/// The most events one trace keeps (the first ones; later ones are counted).
pub const MAX_EVENTS: usize = 20_000;

/// What a traced call was asked to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Call {
    /// `execve`: the program and its arguments.
    Exec {
        /// The path executed.
        path: String,
        /// Its argument vector.
        argv: Vec<String>,
    },
    /// `open`, `openat`, `creat`.
    Open {
        /// The path (absolute, as the process sees it).
        path: String,
        /// For writing (or creating, truncating, appending).
        write: bool,
        /// Creates the file when missing.
        create: bool,
    },
    /// `mkdir`, `mkdirat`.
    Mkdir {
        /// The directory.
        path: String,
    },
    /// `rename`, `renameat`, `renameat2`.
    Rename {
        /// The old name.
        from: String,
        /// The new name.
        to: String,
    },
    /// `unlink`, `unlinkat`, `rmdir`.
    Remove {
        /// The path.
        path: String,
    },
    /// `symlink`, `link` and their `at` forms: the new name.
    Link {
        /// The new name.
        path: String,
    },
    /// `chown`, `lchown`, `fchown`, `fchownat`.
    Chown {
        /// The path (a descriptor's path for `fchown`).
        path: String,
        /// The new owner, when it changes.
        uid: Option<u32>,
        /// The new group, when it changes.
        gid: Option<u32>,
    },
    /// `chmod`, `fchmod`, `fchmodat`.
    Chmod {
        /// The path.
        path: String,
        /// The new mode.
        mode: u32,
    },
    /// `setuid`, `setreuid`, `setresuid`: the user ids asked for.
    SetUid {
        /// Each id that changes (real, effective, saved).
        ids: Vec<u32>,
    },
    /// `setgid`, `setregid`, `setresgid`.
    SetGid {
        /// Each id that changes.
        ids: Vec<u32>,
    },
    /// `setgroups`.
    SetGroups {
        /// The supplementary groups.
        groups: Vec<u32>,
    },
    /// `capset`: the sets asked for.
    Capset {
        /// Effective capabilities (bit n: capability n).
        effective: u64,
        /// Permitted capabilities.
        permitted: u64,
    },
    /// `socket`.
    Socket {
        /// `AF_INET`, `AF_INET6`, `AF_UNIX`, `AF_PACKET`, ...
        domain: i32,
        /// `SOCK_STREAM`, `SOCK_DGRAM`, `SOCK_RAW` (flags removed).
        kind: i32,
    },
    /// `bind`.
    Bind {
        /// The address.
        address: Address,
    },
    /// `chroot`.
    Chroot {
        /// The new root.
        path: String,
    },
    /// `settimeofday`, `clock_settime`, `adjtimex`, `clock_adjtime`: setting the clock.
    SetClock {
        /// The call.
        name: String,
    },
}

/// A transport protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// A stream socket.
    Tcp,
    /// A datagram socket.
    Udp,
    /// Anything else (raw, SCTP, unknown).
    Other,
}

impl Transport {
    /// `tcp`, `udp`, `other`.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
            Transport::Other => "other",
        }
    }
}

/// A socket address given to `bind`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "family", rename_all = "lowercase")]
pub enum Address {
    /// IPv4 or IPv6.
    Inet {
        /// The address.
        ip: IpAddr,
        /// The port.
        port: u16,
        /// TCP or UDP.
        transport: Transport,
    },
    /// A Unix socket with a path (an abstract one has an `@` first).
    Unix {
        /// The path.
        path: String,
    },
    /// Another family (netlink, packet, ...).
    Other {
        /// Its number.
        number: i32,
    },
}

/// One traced call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Traced {
    /// Its order in the trace (over all processes).
    pub seq: u64,
    /// The process (its pid in the host's namespace).
    pub pid: u32,
    /// What was asked.
    #[serde(flatten)]
    pub call: Call,
    /// The result: the call's value, or the error number.
    pub result: Result<i64, Errno>,
}

/// An error number a call returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Errno(pub i32);

impl Errno {
    /// The symbolic name (`EACCES`), or the number.
    pub fn name(self) -> String {
        let name = match self.0 {
            libc::EPERM => "EPERM",
            libc::ENOENT => "ENOENT",
            libc::EACCES => "EACCES",
            libc::EROFS => "EROFS",
            libc::EEXIST => "EEXIST",
            libc::ENOTDIR => "ENOTDIR",
            libc::EISDIR => "EISDIR",
            libc::EINVAL => "EINVAL",
            libc::EADDRINUSE => "EADDRINUSE",
            libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
            libc::ENOSYS => "ENOSYS",
            libc::EAGAIN => "EAGAIN",
            libc::EBADF => "EBADF",
            libc::ENXIO => "ENXIO",
            libc::ELOOP => "ELOOP",
            libc::ENOTEMPTY => "ENOTEMPTY",
            libc::EXDEV => "EXDEV",
            libc::EAFNOSUPPORT => "EAFNOSUPPORT",
            libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
            _ => return format!("errno {}", self.0),
        };
        name.to_string()
    }

    /// Whether it says the caller lacked a right (`EACCES`, `EPERM`, `EROFS`).
    pub fn is_denial(self) -> bool {
        matches!(self.0, libc::EACCES | libc::EPERM | libc::EROFS)
    }
}

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// A process of the trace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Process {
    /// Its pid (host namespace).
    pub pid: u32,
    /// The process that started it, when traced too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<u32>,
    /// What it executed last (its argument vector), empty before its first exec.
    pub argv: Vec<String>,
    /// How it ended: its exit code, or 128 + the signal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit: Option<i32>,
}

impl Process {
    /// Its program's name, for messages: `nsd` (or `pid 12` before an exec).
    pub fn name(&self) -> String {
        match self.argv.first() {
            Some(a) => a.clone(),
            None => format!("pid {}", self.pid),
        }
    }
}

/// Everything a run did that the tracer saw.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Trace {
    /// The processes, by pid.
    pub processes: BTreeMap<u32, Process>,
    /// The traced calls, in order (at most [`MAX_EVENTS`]).
    pub events: Vec<Traced>,
    /// Calls seen beyond [`MAX_EVENTS`] (not kept).
    pub dropped: u64,
}

impl Trace {
    /// The process of an event.
    pub fn process(&self, pid: u32) -> Option<&Process> {
        self.processes.get(&pid)
    }

    /// The pid and its ancestors that were traced, nearest first.
    pub fn lineage(&self, pid: u32) -> Vec<u32> {
        let mut out = vec![pid];
        let mut at = pid;
        while let Some(parent) = self.processes.get(&at).and_then(|p| p.parent) {
            if out.contains(&parent) {
                break;
            }
            out.push(parent);
            at = parent;
        }
        out
    }

    /// The events that failed with a denial (`EACCES`, `EPERM`, `EROFS`).
    pub fn denials(&self) -> impl Iterator<Item = &Traced> {
        self.events
            .iter()
            .filter(|e| matches!(e.result, Err(errno) if errno.is_denial()))
    }
}
