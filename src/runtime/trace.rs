//! Watching a container run: every process it starts, from its first instruction, and the
//! system calls that tie a service to root (what it executes, the ids it switches to, the
//! ports and sockets it binds, the files it reads and writes, what it creates, renames,
//! removes, re-owns and re-modes), each with its result.
//!
//! How: the container's seccomp filter (see [`seccomp`]; the OCI runtime installs it right
//! before it executes the process) stops only the calls of [`watched`], as
//! `SECCOMP_RET_TRACE`; the tracer seizes the runtime's init process with ptrace before
//! the container is started, follows every fork, clone and exec, reads each watched call's
//! arguments at its seccomp stop and its result at the syscall-exit stop. Every other call
//! runs at full speed.
//!
//! Invariant: a tracee is never left stopped: every stop is resumed (signals re-injected),
//! and `PTRACE_O_EXITKILL` kills the tracees if the tracer goes away.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

pub use crate::model::trace::{
    Address, Call, Errno, Process, Trace, Traced, Transport, MAX_EVENTS,
};

/// Why a run could not be traced.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// `ptrace` refused (no `CAP_SYS_PTRACE`, or a Yama policy).
    #[error("cannot trace process {pid}: {source} (tracing needs root on the host)")]
    Attach {
        /// The process.
        pid: u32,
        /// What the kernel said.
        #[source]
        source: std::io::Error,
    },
    /// The tracer's thread went away.
    #[error("the tracer stopped: {0}")]
    Lost(String),
}

/// The calls the tracer watches, by name, as the OCI runtime's seccomp section names them.
pub fn watched() -> Vec<&'static str> {
    SYSCALLS.iter().map(|(name, _, _)| *name).collect()
}

/// The seccomp section of an OCI runtime config that stops the watched calls for the
/// tracer (every other call is allowed). `openat` with exactly `O_WRONLY|O_CLOEXEC` is
/// not watched: the runtime itself opens its start FIFO that way after the filter is in
/// place and before the tracer can be there.
pub fn seccomp() -> serde_json::Value {
    let fifo_flags = (libc::O_WRONLY | libc::O_CLOEXEC) as u64;
    let mut plain: Vec<&str> = Vec::new();
    for (name, _, _) in SYSCALLS {
        if *name != "openat" {
            plain.push(name);
        }
    }
    serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ARCHITECTURES,
        "syscalls": [
            {"names": plain, "action": "SCMP_ACT_TRACE"},
            {"names": ["openat"], "action": "SCMP_ACT_TRACE",
             "args": [{"index": 2, "value": fifo_flags, "op": "SCMP_CMP_NE"}]}
        ]
    })
}

#[cfg(target_arch = "x86_64")]
const ARCHITECTURES: &[&str] = &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"];
#[cfg(target_arch = "aarch64")]
const ARCHITECTURES: &[&str] = &["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const ARCHITECTURES: &[&str] = &[];

/// How a watched call's arguments are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// `execve(path, argv, envp)`.
    Execve,
    /// `execveat(dirfd, path, argv, envp, flags)`.
    Execveat,
    /// `open(path, flags, mode)`.
    Open,
    /// `creat(path, mode)`.
    Creat,
    /// `openat(dirfd, path, flags, mode)`.
    Openat,
    /// `openat2(dirfd, path, how, size)`.
    Openat2,
    /// `mkdir(path, mode)`.
    Mkdir,
    /// `mkdirat(dirfd, path, mode)`.
    Mkdirat,
    /// `rename(old, new)`.
    Rename,
    /// `renameat(olddirfd, old, newdirfd, new[, flags])`.
    Renameat,
    /// `unlink(path)`, `rmdir(path)`.
    Unlink,
    /// `unlinkat(dirfd, path, flags)`.
    Unlinkat,
    /// `symlink(target, path)`, `link(old, new)`.
    Link,
    /// `symlinkat(target, dirfd, path)`.
    Symlinkat,
    /// `linkat(olddirfd, old, newdirfd, new, flags)`.
    Linkat,
    /// `chown(path, uid, gid)`, `lchown`.
    Chown,
    /// `fchown(fd, uid, gid)`.
    Fchown,
    /// `fchownat(dirfd, path, uid, gid, flags)`.
    Fchownat,
    /// `chmod(path, mode)`.
    Chmod,
    /// `fchmod(fd, mode)`.
    Fchmod,
    /// `fchmodat(dirfd, path, mode)`.
    Fchmodat,
    /// `setuid(uid)`.
    Setuid,
    /// `setreuid(r, e)`.
    Setreuid,
    /// `setresuid(r, e, s)`.
    Setresuid,
    /// `setgid(gid)`.
    Setgid,
    /// `setregid(r, e)`.
    Setregid,
    /// `setresgid(r, e, s)`.
    Setresgid,
    /// `setgroups(size, list)`.
    Setgroups,
    /// `capset(header, data)`.
    Capset,
    /// `socket(domain, type, protocol)`.
    Socket,
    /// `bind(fd, addr, len)`.
    Bind,
    /// `chroot(path)`.
    Chroot,
    /// A call that sets the clock.
    Clock,
}

/// The watched calls: name, number, shape.
const SYSCALLS: &[(&str, libc::c_long, Shape)] = &[
    ("execve", libc::SYS_execve, Shape::Execve),
    ("execveat", libc::SYS_execveat, Shape::Execveat),
    ("openat", libc::SYS_openat, Shape::Openat),
    ("openat2", libc::SYS_openat2, Shape::Openat2),
    ("mkdirat", libc::SYS_mkdirat, Shape::Mkdirat),
    ("renameat", libc::SYS_renameat, Shape::Renameat),
    ("renameat2", libc::SYS_renameat2, Shape::Renameat),
    ("unlinkat", libc::SYS_unlinkat, Shape::Unlinkat),
    ("symlinkat", libc::SYS_symlinkat, Shape::Symlinkat),
    ("linkat", libc::SYS_linkat, Shape::Linkat),
    ("fchown", libc::SYS_fchown, Shape::Fchown),
    ("fchownat", libc::SYS_fchownat, Shape::Fchownat),
    ("fchmod", libc::SYS_fchmod, Shape::Fchmod),
    ("fchmodat", libc::SYS_fchmodat, Shape::Fchmodat),
    ("setuid", libc::SYS_setuid, Shape::Setuid),
    ("setreuid", libc::SYS_setreuid, Shape::Setreuid),
    ("setresuid", libc::SYS_setresuid, Shape::Setresuid),
    ("setgid", libc::SYS_setgid, Shape::Setgid),
    ("setregid", libc::SYS_setregid, Shape::Setregid),
    ("setresgid", libc::SYS_setresgid, Shape::Setresgid),
    ("setgroups", libc::SYS_setgroups, Shape::Setgroups),
    ("capset", libc::SYS_capset, Shape::Capset),
    ("socket", libc::SYS_socket, Shape::Socket),
    ("bind", libc::SYS_bind, Shape::Bind),
    ("chroot", libc::SYS_chroot, Shape::Chroot),
    ("settimeofday", libc::SYS_settimeofday, Shape::Clock),
    ("clock_settime", libc::SYS_clock_settime, Shape::Clock),
    ("adjtimex", libc::SYS_adjtimex, Shape::Clock),
    ("clock_adjtime", libc::SYS_clock_adjtime, Shape::Clock),
    #[cfg(target_arch = "x86_64")]
    ("open", libc::SYS_open, Shape::Open),
    #[cfg(target_arch = "x86_64")]
    ("creat", libc::SYS_creat, Shape::Creat),
    #[cfg(target_arch = "x86_64")]
    ("mkdir", libc::SYS_mkdir, Shape::Mkdir),
    #[cfg(target_arch = "x86_64")]
    ("rename", libc::SYS_rename, Shape::Rename),
    #[cfg(target_arch = "x86_64")]
    ("unlink", libc::SYS_unlink, Shape::Unlink),
    #[cfg(target_arch = "x86_64")]
    ("rmdir", libc::SYS_rmdir, Shape::Unlink),
    #[cfg(target_arch = "x86_64")]
    ("symlink", libc::SYS_symlink, Shape::Link),
    #[cfg(target_arch = "x86_64")]
    ("link", libc::SYS_link, Shape::Link),
    #[cfg(target_arch = "x86_64")]
    ("chown", libc::SYS_chown, Shape::Chown),
    #[cfg(target_arch = "x86_64")]
    ("lchown", libc::SYS_lchown, Shape::Chown),
    #[cfg(target_arch = "x86_64")]
    ("chmod", libc::SYS_chmod, Shape::Chmod),
];

#[cfg(target_arch = "x86_64")]
const NATIVE_ARCH: u32 = 0xC000_003E; // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const NATIVE_ARCH: u32 = 0xC000_00B7; // AUDIT_ARCH_AARCH64
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const NATIVE_ARCH: u32 = 0;

/// A running tracer: its thread owns every tracee.
pub struct Tracer {
    thread: std::thread::JoinHandle<Trace>,
    root_exit: Arc<AtomicI32>,
}

/// Not exited yet, in [`Tracer::root_exit`].
const RUNNING: i32 = i32::MIN;

impl Tracer {
    /// Seizes process `pid` (every thread of it) and follows it and everything it starts,
    /// on a thread of its own, until they have all ended.
    pub fn attach(pid: u32) -> Result<Tracer, TraceError> {
        let (ready, attached) = mpsc::channel();
        let root_exit = Arc::new(AtomicI32::new(RUNNING));
        let exit = root_exit.clone();
        let thread = std::thread::Builder::new()
            .name(format!("trace-{pid}"))
            .spawn(move || {
                let mut state = State::new(pid, exit);
                match state.seize_all(pid) {
                    Ok(()) => {
                        let _ = ready.send(Ok(()));
                        state.run();
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                    }
                }
                state.trace
            })
            .map_err(|e| TraceError::Lost(e.to_string()))?;
        match attached.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(Tracer { thread, root_exit }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(e) => Err(TraceError::Lost(e.to_string())),
        }
    }

    /// How the first process ended (its exit code, or 128 + signal), once it has.
    pub fn root_exit(&self) -> Option<i32> {
        match self.root_exit.load(Ordering::SeqCst) {
            RUNNING => None,
            code => Some(code),
        }
    }

    /// Waits until every tracee has ended (kill the container first), and returns what
    /// was seen.
    pub fn finish(self) -> Result<Trace, TraceError> {
        self.thread
            .join()
            .map_err(|_| TraceError::Lost("the tracer panicked".into()))
    }
}

/// A watched call between its seccomp stop and its exit stop.
struct Pending {
    call: Call,
}

/// The tracer's bookkeeping, on its own thread.
struct State {
    root: u32,
    root_exit: Arc<AtomicI32>,
    /// Live tracees (thread ids) and their thread group.
    tasks: HashMap<u32, u32>,
    /// Calls waiting for their exit stop, by thread.
    pending: HashMap<u32, Pending>,
    /// New tasks stopped before their parent's fork was seen, with that first stop.
    early: HashMap<u32, i32>,
    /// Thread groups that have not executed anything yet (the runtime's own init): their
    /// calls are the runtime's, not the image's.
    before_exec: HashSet<u32>,
    seq: u64,
    trace: Trace,
}

impl State {
    fn new(root: u32, root_exit: Arc<AtomicI32>) -> State {
        State {
            root,
            root_exit,
            tasks: HashMap::new(),
            pending: HashMap::new(),
            early: HashMap::new(),
            before_exec: HashSet::from([root]),
            seq: 0,
            trace: Trace::default(),
        }
    }

    fn seize_all(&mut self, pid: u32) -> Result<(), TraceError> {
        self.trace.processes.insert(
            pid,
            Process {
                pid,
                ..Process::default()
            },
        );
        let options = libc::PTRACE_O_TRACESECCOMP
            | libc::PTRACE_O_TRACEFORK
            | libc::PTRACE_O_TRACEVFORK
            | libc::PTRACE_O_TRACECLONE
            | libc::PTRACE_O_TRACEEXEC
            | libc::PTRACE_O_TRACESYSGOOD
            | libc::PTRACE_O_EXITKILL;
        // Threads may start while we seize: list until no new one shows.
        loop {
            let mut new = 0;
            let dir = std::fs::read_dir(format!("/proc/{pid}/task"))
                .map_err(|e| TraceError::Attach { pid, source: e })?;
            for entry in dir.flatten() {
                let Some(tid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|s| s.parse::<u32>().ok())
                else {
                    continue;
                };
                if self.tasks.contains_key(&tid) {
                    continue;
                }
                sys::seize(tid, options).map_err(|source| TraceError::Attach { pid, source })?;
                self.tasks.insert(tid, pid);
                new += 1;
            }
            if new == 0 {
                return Ok(());
            }
        }
    }

    fn run(&mut self) {
        while !self.tasks.is_empty() || !self.early.is_empty() {
            if self.tasks.is_empty() {
                // Their parents ended without their fork being seen: theirs now.
                self.adopt_early();
                continue;
            }
            let Some((tid, status)) = sys::wait_any() else {
                break;
            };
            if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                let code = if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else {
                    128 + libc::WTERMSIG(status)
                };
                self.ended(tid, code);
                continue;
            }
            if !libc::WIFSTOPPED(status) {
                continue;
            }
            if !self.tasks.contains_key(&tid) {
                // A new task whose parent's fork (vfork, clone) stop is not seen yet: the
                // kernel may report the child's first stop before it. It stays stopped
                // until the parent's is seen, so nothing it does (an exec, an exit) is
                // seen before the trace knows whose it is.
                self.early.insert(tid, status);
                continue;
            }
            self.stopped(tid, status);
        }
    }

    /// The tasks stopped before their parent's fork was seen, whose parents will not be:
    /// traced from here, their parent read from `/proc`.
    fn adopt_early(&mut self) {
        let early: Vec<(u32, i32)> = self.early.drain().collect();
        for (tid, status) in early {
            let parent = sys::parent(tid).unwrap_or(self.root);
            self.started(parent, tid, true);
            self.stopped(tid, status);
        }
    }

    /// A known task's stop: what it says, then the task resumed.
    fn stopped(&mut self, tid: u32, status: i32) {
        let sig = libc::WSTOPSIG(status);
        let event = (status >> 16) & 0xff;
        match event {
            libc::PTRACE_EVENT_SECCOMP => {
                self.entered(tid);
                sys::resume(tid, libc::PTRACE_SYSCALL, 0);
            }
            libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK | libc::PTRACE_EVENT_CLONE => {
                let child = sys::event_msg(tid).and_then(|m| u32::try_from(m).ok());
                if let Some(child) = child {
                    self.started(tid, child, event == libc::PTRACE_EVENT_CLONE);
                }
                self.resume(tid, 0);
                // The child's first stop, if it came first, is taken now.
                if let Some((child, first)) =
                    child.and_then(|c| self.early.remove(&c).map(|first| (c, first)))
                {
                    self.stopped(child, first);
                }
            }
            libc::PTRACE_EVENT_EXEC => {
                let former = sys::event_msg(tid).and_then(|m| u32::try_from(m).ok());
                if let Some(former) = former.filter(|f| *f != tid) {
                    // A thread other than the leader executed: it is the leader now.
                    self.tasks.remove(&former);
                    if let Some(p) = self.pending.remove(&former) {
                        self.pending.insert(tid, p);
                    }
                }
                self.resume(tid, 0);
            }
            libc::PTRACE_EVENT_STOP => {
                if matches!(
                    sig,
                    libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
                ) {
                    // A group stop: stay stopped until a SIGCONT, but keep reporting.
                    sys::resume(tid, libc::PTRACE_LISTEN, 0);
                } else {
                    self.resume(tid, 0);
                }
            }
            0 if sig == (libc::SIGTRAP | 0x80) => {
                self.exited_call(tid);
                self.resume(tid, 0);
            }
            0 => {
                // A signal for the tracee: deliver it.
                let deliver = if sig == libc::SIGTRAP { 0 } else { sig };
                self.resume(tid, deliver);
            }
            _ => self.resume(tid, 0),
        }
    }

    /// Resumes a tracee: to its exit stop when a call of it is pending, else freely.
    fn resume(&self, tid: u32, sig: i32) {
        let request = if self.pending.contains_key(&tid) {
            libc::PTRACE_SYSCALL
        } else {
            libc::PTRACE_CONT
        };
        sys::resume(tid, request, sig);
    }

    fn ended(&mut self, tid: u32, code: i32) {
        let group = self.tasks.remove(&tid).unwrap_or(tid);
        self.pending.remove(&tid);
        if tid == group {
            if let Some(p) = self.trace.processes.get_mut(&group) {
                p.exit = Some(code);
            }
            if group == self.root {
                self.root_exit.store(code, Ordering::SeqCst);
            }
        }
    }

    fn started(&mut self, parent_tid: u32, child: u32, maybe_thread: bool) {
        let parent = *self.tasks.get(&parent_tid).unwrap_or(&parent_tid);
        let group = if maybe_thread {
            sys::tgid(child).unwrap_or(child)
        } else {
            child
        };
        self.tasks.insert(child, group);
        if group == child {
            let argv = self
                .trace
                .processes
                .get(&parent)
                .map(|p| p.argv.clone())
                .unwrap_or_default();
            self.trace.processes.insert(
                child,
                Process {
                    pid: child,
                    parent: Some(parent),
                    argv,
                    exit: None,
                },
            );
            if self.before_exec.contains(&parent) {
                self.before_exec.insert(child);
            }
        }
    }

    /// A watched call's seccomp stop: read its arguments.
    fn entered(&mut self, tid: u32) {
        let Some(info) = sys::syscall_info(tid) else {
            return;
        };
        if info.arch != NATIVE_ARCH {
            return;
        }
        let Some((_, _, shape)) = SYSCALLS.iter().find(|(_, nr, _)| *nr as u64 == info.nr) else {
            return;
        };
        let a = info.args;
        let m = Memory(tid);
        let call = match shape {
            Shape::Execve => Call::Exec {
                path: m.path(tid, libc::AT_FDCWD, a[0]),
                argv: m.strings(a[1]),
            },
            Shape::Execveat => Call::Exec {
                path: m.path(tid, a[0] as i32, a[1]),
                argv: m.strings(a[2]),
            },
            Shape::Open => open_call(m.path(tid, libc::AT_FDCWD, a[0]), a[1] as i32),
            Shape::Creat => open_call(
                m.path(tid, libc::AT_FDCWD, a[0]),
                libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC,
            ),
            Shape::Openat => open_call(m.path(tid, a[0] as i32, a[1]), a[2] as i32),
            Shape::Openat2 => {
                // `struct open_how` starts with the flags (u64).
                let flags = m.bytes(a[2], 8).map_or(0, |b| {
                    u64::from_ne_bytes(b.try_into().unwrap_or([0; 8])) as i32
                });
                open_call(m.path(tid, a[0] as i32, a[1]), flags)
            }
            Shape::Mkdir => Call::Mkdir {
                path: m.path(tid, libc::AT_FDCWD, a[0]),
            },
            Shape::Mkdirat => Call::Mkdir {
                path: m.path(tid, a[0] as i32, a[1]),
            },
            Shape::Rename => Call::Rename {
                from: m.path(tid, libc::AT_FDCWD, a[0]),
                to: m.path(tid, libc::AT_FDCWD, a[1]),
            },
            Shape::Renameat => Call::Rename {
                from: m.path(tid, a[0] as i32, a[1]),
                to: m.path(tid, a[2] as i32, a[3]),
            },
            Shape::Unlink => Call::Remove {
                path: m.path(tid, libc::AT_FDCWD, a[0]),
            },
            Shape::Unlinkat => Call::Remove {
                path: m.path(tid, a[0] as i32, a[1]),
            },
            Shape::Link => Call::Link {
                path: m.path(tid, libc::AT_FDCWD, a[1]),
            },
            Shape::Symlinkat => Call::Link {
                path: m.path(tid, a[1] as i32, a[2]),
            },
            Shape::Linkat => Call::Link {
                path: m.path(tid, a[2] as i32, a[3]),
            },
            Shape::Chown => Call::Chown {
                path: m.path(tid, libc::AT_FDCWD, a[0]),
                uid: id(a[1]),
                gid: id(a[2]),
            },
            Shape::Fchown => Call::Chown {
                path: fd_path(tid, a[0] as i32),
                uid: id(a[1]),
                gid: id(a[2]),
            },
            Shape::Fchownat => Call::Chown {
                path: if a[4] as i32 & libc::AT_EMPTY_PATH != 0 {
                    fd_path(tid, a[0] as i32)
                } else {
                    m.path(tid, a[0] as i32, a[1])
                },
                uid: id(a[2]),
                gid: id(a[3]),
            },
            Shape::Chmod => Call::Chmod {
                path: m.path(tid, libc::AT_FDCWD, a[0]),
                mode: a[1] as u32 & 0o7777,
            },
            Shape::Fchmod => Call::Chmod {
                path: fd_path(tid, a[0] as i32),
                mode: a[1] as u32 & 0o7777,
            },
            Shape::Fchmodat => Call::Chmod {
                path: m.path(tid, a[0] as i32, a[1]),
                mode: a[2] as u32 & 0o7777,
            },
            Shape::Setuid => Call::SetUid { ids: ids(&a[..1]) },
            Shape::Setreuid => Call::SetUid { ids: ids(&a[..2]) },
            Shape::Setresuid => Call::SetUid { ids: ids(&a[..3]) },
            Shape::Setgid => Call::SetGid { ids: ids(&a[..1]) },
            Shape::Setregid => Call::SetGid { ids: ids(&a[..2]) },
            Shape::Setresgid => Call::SetGid { ids: ids(&a[..3]) },
            Shape::Setgroups => {
                let n = (a[0] as usize).min(256);
                let groups = m
                    .bytes(a[1], n * 4)
                    .map(|b| {
                        b.chunks_exact(4)
                            .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                            .collect()
                    })
                    .unwrap_or_default();
                Call::SetGroups { groups }
            }
            Shape::Capset => {
                // `struct __user_cap_data_struct[2]`: effective, permitted, inheritable (u32
                // each), low then high words.
                let data = m.bytes(a[1], 24).unwrap_or_default();
                let word = |i: usize| -> u64 {
                    data.get(i * 4..i * 4 + 4)
                        .map_or(0, |c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) as u64)
                };
                Call::Capset {
                    effective: word(0) | word(3) << 32,
                    permitted: word(1) | word(4) << 32,
                }
            }
            Shape::Socket => Call::Socket {
                domain: a[0] as i32,
                kind: a[1] as i32 & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC),
            },
            Shape::Bind => Call::Bind {
                address: m.sockaddr(a[1], a[2] as usize, || socket_transport(tid, a[0] as i32)),
            },
            Shape::Chroot => Call::Chroot {
                path: m.path(tid, libc::AT_FDCWD, a[0]),
            },
            Shape::Clock => Call::SetClock {
                name: SYSCALLS
                    .iter()
                    .find(|(_, nr, _)| *nr as u64 == info.nr)
                    .map_or("clock", |(n, _, _)| n)
                    .to_string(),
            },
        };
        self.pending.insert(tid, Pending { call });
    }

    /// A watched call's exit stop: its result.
    fn exited_call(&mut self, tid: u32) {
        let Some(pending) = self.pending.remove(&tid) else {
            return;
        };
        let Some(info) = sys::syscall_info(tid) else {
            return;
        };
        let result = if info.op == libc::PTRACE_SYSCALL_INFO_EXIT && info.is_error != 0 {
            Err(Errno(-(info.rval as i32)))
        } else {
            Ok(info.rval)
        };
        let group = *self.tasks.get(&tid).unwrap_or(&tid);
        if let (Call::Exec { argv, .. }, Ok(_)) = (&pending.call, &result) {
            self.before_exec.remove(&group);
            if let Some(p) = self.trace.processes.get_mut(&group) {
                p.argv = argv.clone();
            }
        }
        if self.before_exec.contains(&group) {
            return;
        }
        self.seq += 1;
        if self.trace.events.len() >= MAX_EVENTS {
            self.trace.dropped += 1;
            return;
        }
        self.trace.events.push(Traced {
            seq: self.seq,
            pid: group,
            call: pending.call,
            result,
        });
    }
}

fn open_call(path: String, flags: i32) -> Call {
    let access = flags & libc::O_ACCMODE;
    let write = access == libc::O_WRONLY
        || access == libc::O_RDWR
        || flags & (libc::O_CREAT | libc::O_TRUNC | libc::O_APPEND) != 0;
    Call::Open {
        path,
        write,
        create: flags & libc::O_CREAT != 0,
    }
}

/// An id argument: `-1` (unchanged) is none.
fn id(arg: u64) -> Option<u32> {
    match arg as u32 {
        u32::MAX => None,
        v => Some(v),
    }
}

fn ids(args: &[u64]) -> Vec<u32> {
    args.iter().filter_map(|a| id(*a)).collect()
}

/// The path a descriptor of `tid` refers to.
fn fd_path(tid: u32, fd: i32) -> String {
    std::fs::read_link(format!("/proc/{tid}/fd/{fd}"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| format!("fd {fd}"))
}

/// The transport of a socket of `tid`, read from a duplicate of its descriptor.
fn socket_transport(tid: u32, fd: i32) -> Transport {
    let tgid = sys::tgid(tid).unwrap_or(tid);
    match sys::socket_type(tgid, fd) {
        Some(libc::SOCK_STREAM) => Transport::Tcp,
        Some(libc::SOCK_DGRAM) => Transport::Udp,
        _ => Transport::Other,
    }
}

/// Reading a stopped tracee's memory.
struct Memory(u32);

impl Memory {
    fn bytes(&self, addr: u64, len: usize) -> Option<Vec<u8>> {
        if addr == 0 {
            return None;
        }
        sys::read_memory(self.0, addr, len)
    }

    /// A NUL-terminated string (at most 4096 bytes).
    fn string(&self, addr: u64) -> Option<String> {
        if addr == 0 {
            return None;
        }
        let mut out = Vec::new();
        let mut at = addr;
        while out.len() < 4096 {
            // Up to the end of the page, so that a read never crosses into an unmapped one.
            let chunk = (4096 - (at % 4096)) as usize;
            let bytes = sys::read_memory(self.0, at, chunk)?;
            if let Some(end) = bytes.iter().position(|&b| b == 0) {
                out.extend_from_slice(&bytes[..end]);
                return Some(String::from_utf8_lossy(&out).into_owned());
            }
            out.extend_from_slice(&bytes);
            at += chunk as u64;
        }
        Some(String::from_utf8_lossy(&out).into_owned())
    }

    /// A NULL-terminated array of strings (at most 256).
    fn strings(&self, addr: u64) -> Vec<String> {
        let mut out = Vec::new();
        for i in 0..256u64 {
            let Some(ptr) = self.bytes(addr + i * 8, 8) else {
                break;
            };
            let ptr = u64::from_ne_bytes(ptr.try_into().unwrap_or([0; 8]));
            if ptr == 0 {
                break;
            }
            out.push(self.string(ptr).unwrap_or_default());
        }
        out
    }

    /// A path argument, made absolute against `dirfd` (or the working directory) and
    /// normalized.
    fn path(&self, tid: u32, dirfd: i32, addr: u64) -> String {
        let raw = self.string(addr).unwrap_or_default();
        if raw.starts_with('/') {
            return normalize(&raw);
        }
        let base = if dirfd == libc::AT_FDCWD {
            std::fs::read_link(format!("/proc/{tid}/cwd"))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "/".into())
        } else {
            fd_path(tid, dirfd)
        };
        if raw.is_empty() {
            return normalize(&base);
        }
        normalize(&format!("{base}/{raw}"))
    }

    fn sockaddr(&self, addr: u64, len: usize, transport: impl Fn() -> Transport) -> Address {
        let Some(b) = self.bytes(addr, len.min(128)) else {
            return Address::Other { number: -1 };
        };
        let family = b
            .get(..2)
            .map_or(-1, |f| u16::from_ne_bytes([f[0], f[1]]) as i32);
        match family {
            libc::AF_INET if b.len() >= 8 => Address::Inet {
                ip: IpAddr::from([b[4], b[5], b[6], b[7]]),
                port: u16::from_be_bytes([b[2], b[3]]),
                transport: transport(),
            },
            libc::AF_INET6 if b.len() >= 24 => {
                let mut ip = [0u8; 16];
                ip.copy_from_slice(&b[8..24]);
                Address::Inet {
                    ip: IpAddr::from(ip),
                    port: u16::from_be_bytes([b[2], b[3]]),
                    transport: transport(),
                }
            }
            libc::AF_UNIX => {
                let path = &b[2.min(b.len())..];
                let path = if path.first() == Some(&0) {
                    let name = &path[1..];
                    format!("@{}", String::from_utf8_lossy(name).trim_end_matches('\0'))
                } else {
                    let end = path.iter().position(|&c| c == 0).unwrap_or(path.len());
                    String::from_utf8_lossy(&path[..end]).into_owned()
                };
                Address::Unix { path }
            }
            number => Address::Other { number },
        }
    }
}

/// `a/./b//../c` -> `/a/c`, lexically.
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The few system interfaces the tracer needs, each wrapped once.
mod sys {
    use std::io;

    /// `PTRACE_SEIZE` with `options`.
    pub fn seize(tid: u32, options: i32) -> io::Result<()> {
        // SAFETY: PTRACE_SEIZE takes no pointers; `options` is passed as the data word.
        let r = unsafe {
            libc::ptrace(
                libc::PTRACE_SEIZE,
                tid as libc::pid_t,
                std::ptr::null_mut::<libc::c_void>(),
                options as libc::c_ulong as *mut libc::c_void,
            )
        };
        if r == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Resumes a stopped tracee (`PTRACE_CONT`, `PTRACE_SYSCALL`, `PTRACE_LISTEN`),
    /// delivering `sig`. A tracee that died meanwhile is reported by `wait_any`.
    pub fn resume(tid: u32, request: libc::c_uint, sig: i32) {
        // SAFETY: these requests take no pointers; the signal is passed as the data word.
        unsafe {
            libc::ptrace(
                request,
                tid as libc::pid_t,
                std::ptr::null_mut::<libc::c_void>(),
                sig as libc::c_ulong as *mut libc::c_void,
            );
        }
    }

    /// `PTRACE_GETEVENTMSG`.
    pub fn event_msg(tid: u32) -> Option<u64> {
        let mut msg: libc::c_ulong = 0;
        // SAFETY: the kernel writes one `unsigned long` to `msg`, which lives for the call.
        let r = unsafe {
            libc::ptrace(
                libc::PTRACE_GETEVENTMSG,
                tid as libc::pid_t,
                std::ptr::null_mut::<libc::c_void>(),
                &mut msg as *mut libc::c_ulong as *mut libc::c_void,
            )
        };
        (r != -1).then_some(msg as u64)
    }

    /// What `PTRACE_GET_SYSCALL_INFO` says of a stopped tracee.
    pub struct SyscallInfo {
        pub op: u8,
        pub arch: u32,
        pub nr: u64,
        pub args: [u64; 6],
        pub rval: i64,
        pub is_error: u8,
    }

    pub fn syscall_info(tid: u32) -> Option<SyscallInfo> {
        // SAFETY: an all-zero `ptrace_syscall_info` is a valid value of the plain-data
        // struct; the kernel fills at most `size_of` bytes of it.
        let mut info: libc::ptrace_syscall_info = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::ptrace_syscall_info>();
        // SAFETY: `info` is valid for `size` bytes for the duration of the call.
        let r = unsafe {
            libc::ptrace(
                libc::PTRACE_GET_SYSCALL_INFO,
                tid as libc::pid_t,
                size as *mut libc::c_void,
                &mut info as *mut libc::ptrace_syscall_info as *mut libc::c_void,
            )
        };
        if r <= 0 {
            return None;
        }
        let mut out = SyscallInfo {
            op: info.op,
            arch: info.arch,
            nr: 0,
            args: [0; 6],
            rval: 0,
            is_error: 0,
        };
        // SAFETY: the union member read is the one `op` says the kernel filled.
        unsafe {
            match info.op {
                libc::PTRACE_SYSCALL_INFO_SECCOMP => {
                    out.nr = info.u.seccomp.nr;
                    out.args = info.u.seccomp.args;
                }
                libc::PTRACE_SYSCALL_INFO_ENTRY => {
                    out.nr = info.u.entry.nr;
                    out.args = info.u.entry.args;
                }
                libc::PTRACE_SYSCALL_INFO_EXIT => {
                    out.rval = info.u.exit.sval;
                    out.is_error = info.u.exit.is_error;
                }
                _ => {}
            }
        }
        Some(out)
    }

    /// The next stop or end of a tracee of this thread: `(tid, status)`; `None` when this
    /// thread has none left.
    pub fn wait_any() -> Option<(u32, i32)> {
        loop {
            let mut status = 0;
            // SAFETY: `status` is valid for the call. `__WNOTHREAD`: only this thread's
            // tracees (and children), never a child another thread waits for.
            let r = unsafe { libc::waitpid(-1, &mut status, libc::__WALL | libc::__WNOTHREAD) };
            if r > 0 {
                return Some((r as u32, status));
            }
            if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                return None;
            }
        }
    }

    /// `len` bytes of a tracee's memory at `addr`.
    pub fn read_memory(tid: u32, addr: u64, len: usize) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; len];
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr() as *mut libc::c_void,
            iov_len: len,
        };
        let remote = libc::iovec {
            iov_base: addr as *mut libc::c_void,
            iov_len: len,
        };
        // SAFETY: `local` points at `buf`, valid for `len` bytes; the remote address is
        // only read by the kernel, in the other process.
        let n = unsafe { libc::process_vm_readv(tid as libc::pid_t, &local, 1, &remote, 1, 0) };
        if n <= 0 {
            return None;
        }
        buf.truncate(n as usize);
        Some(buf)
    }

    /// The thread group of a thread, from `/proc`.
    pub fn parent(tid: u32) -> Option<u32> {
        status_field(tid, "PPid:")
    }

    pub fn tgid(tid: u32) -> Option<u32> {
        status_field(tid, "Tgid:")
    }

    /// A numeric field of `/proc/TID/status`.
    fn status_field(tid: u32, name: &str) -> Option<u32> {
        let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    }

    /// `SO_TYPE` of descriptor `fd` of process `pid`, through a duplicate of it.
    pub fn socket_type(pid: u32, fd: i32) -> Option<i32> {
        // SAFETY: plain system calls on integers; every descriptor opened here is closed.
        unsafe {
            let pidfd = libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) as i32;
            if pidfd < 0 {
                return None;
            }
            let local = libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd, 0) as i32;
            libc::close(pidfd);
            if local < 0 {
                return None;
            }
            let mut kind: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            let r = libc::getsockopt(
                local,
                libc::SOL_SOCKET,
                libc::SO_TYPE,
                &mut kind as *mut libc::c_int as *mut libc::c_void,
                &mut len,
            );
            libc::close(local);
            (r == 0).then_some(kind)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalized_lexically() {
        assert_eq!(normalize("/a/./b//../c"), "/a/c");
        assert_eq!(normalize("/../x"), "/x");
        assert_eq!(normalize("/"), "/");
    }

    #[test]
    fn open_flags_tell_reads_from_writes() {
        let r = open_call("/etc/x".into(), libc::O_RDONLY | libc::O_CLOEXEC);
        assert_eq!(
            r,
            Call::Open {
                path: "/etc/x".into(),
                write: false,
                create: false
            }
        );
        for flags in [
            libc::O_WRONLY,
            libc::O_RDWR,
            libc::O_RDONLY | libc::O_APPEND,
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
        ] {
            let Call::Open { write, create, .. } = open_call("/x".into(), flags) else {
                unreachable!()
            };
            assert!(write, "{flags:o}");
            assert_eq!(create, flags & libc::O_CREAT != 0);
        }
    }

    #[test]
    fn the_seccomp_section_traces_the_watched_calls_but_the_start_fifo() {
        let s = seccomp();
        assert_eq!(s["defaultAction"], "SCMP_ACT_ALLOW");
        let names: Vec<&str> = s["syscalls"][0]["names"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|n| n.as_str())
            .collect();
        for call in [
            "execve",
            "bind",
            "setuid",
            "setgroups",
            "mkdirat",
            "unlinkat",
        ] {
            assert!(names.contains(&call), "{call}");
        }
        assert!(!names.contains(&"openat"));
        assert_eq!(s["syscalls"][1]["names"][0], "openat");
        assert_eq!(s["syscalls"][1]["args"][0]["op"], "SCMP_CMP_NE");
        assert_eq!(
            s["syscalls"][1]["args"][0]["value"],
            (libc::O_WRONLY | libc::O_CLOEXEC) as u64
        );
    }

    #[test]
    fn ids_of_minus_one_are_unchanged() {
        assert_eq!(ids(&[u32::MAX as u64, 101, 0]), [101, 0]);
        assert_eq!(id(u64::MAX), None);
    }

    #[test]
    fn errno_names() {
        assert_eq!(Errno(libc::EACCES).name(), "EACCES");
        assert!(Errno(libc::EROFS).is_denial());
        assert!(!Errno(libc::ENOENT).is_denial());
        assert_eq!(Errno(9999).name(), "errno 9999");
    }
}
