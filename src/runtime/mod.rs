//! Running an image the way a restrictive runtime would, with a real OCI runtime (runc or
//! crun): an unpacked root filesystem, read-only, with tmpfs only where the contract says;
//! a user namespace; no capabilities; `no_new_privs`; its own network namespace with
//! `net.ipv4.ip_unprivileged_port_start` at 1024. The process passes when it stays up and
//! listens on the ports it should, read from its namespace's `/proc/net/tcp*`.

pub mod trace;
pub mod unpack;

use crate::control::Locked;
use std::collections::{BTreeSet, VecDeque};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::control::Cancel;
use unpack::IdMap;

/// How the process is started.
#[derive(Clone, Debug)]
pub struct RunSpec {
    /// `Entrypoint` + `Cmd`.
    pub args: Vec<String>,
    /// `KEY=value`.
    pub env: Vec<String>,
    /// The working directory.
    pub cwd: String,
    /// The user and group inside the namespace.
    pub uid: u32,
    /// The group.
    pub gid: u32,
    /// Directories mounted as tmpfs (the root filesystem is read-only), each with the
    /// owner its tmpfs gets (`uid=`, `gid=`; none: the namespace's root).
    pub writable: Vec<(String, Option<(u64, u64)>)>,
    /// The namespace's id range.
    pub ids: IdMap,
    /// How much the process is allowed.
    pub profile: Profile,
    /// Whether the run is traced (the config gets the tracer's seccomp section).
    pub trace: bool,
}

/// What a run allows the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// As a restrictive runtime runs an unprivileged image: no capabilities, a read-only
    /// root filesystem with tmpfs only at the writable directories.
    Restricted,
    /// As `docker run` runs an image by default (in a user namespace): Docker's default
    /// capabilities, a writable root filesystem; a memory and a process limit.
    Docker,
}

/// The capabilities `docker run` gives a container by default.
pub const DOCKER_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The memory a [`Profile::Docker`] run may use.
pub const MEMORY_LIMIT: u64 = 1 << 30;
/// The processes and threads a [`Profile::Docker`] run may have.
pub const PIDS_LIMIT: u64 = 1024;

/// What the process did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// The TCP ports it listened on (in its network namespace).
    pub listening: BTreeSet<u16>,
    /// How it ended before it was stopped: its exit code (or 128 + signal).
    pub exited: Option<i32>,
    /// The last lines it wrote (stdout and stderr).
    pub log: Vec<String>,
    /// Lines that say the process was denied something (a path, a port, an id change).
    pub denied: Vec<String>,
    /// With a probe: each port and the status line it answered (or why it did not).
    pub probes: Vec<(u16, Result<String, String>)>,
    /// What the tracer saw, when traced.
    pub trace: Option<trace::Trace>,
}

/// The lines of output kept.
const LOG_LINES: usize = 20;

/// The OCI runtime config for `spec`.
pub fn config(spec: &RunSpec) -> serde_json::Value {
    let caps = match spec.profile {
        Profile::Restricted => {
            json!({"bounding": [], "effective": [], "inheritable": [], "permitted": [], "ambient": []})
        }
        Profile::Docker => json!({
            "bounding": DOCKER_CAPABILITIES, "effective": DOCKER_CAPABILITIES,
            "inheritable": [], "permitted": DOCKER_CAPABILITIES, "ambient": []
        }),
    };
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
    ];
    for (w, owner) in &spec.writable {
        let mut options = vec!["nosuid".to_string(), "nodev".into(), "mode=1777".into()];
        if let Some((uid, gid)) = owner {
            options.extend([format!("uid={uid}"), format!("gid={gid}")]);
        }
        mounts.push(json!({"destination": w, "type": "tmpfs", "source": "tmpfs",
                           "options": options}));
    }
    let map = json!([{"containerID": 0, "hostID": spec.ids.base, "size": spec.ids.size}]);
    let mut linux = json!({
        "uidMappings": map,
        "gidMappings": map,
        "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                       {"type": "uts"}, {"type": "mount"}, {"type": "user"}],
        "sysctl": {"net.ipv4.ip_unprivileged_port_start": "1024"},
        "maskedPaths": ["/proc/kcore", "/proc/latency_stats", "/proc/timer_list",
                        "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
        "readonlyPaths": ["/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq",
                          "/proc/sys", "/proc/sysrq-trigger"]
    });
    if spec.profile == Profile::Docker {
        linux["resources"] = json!({
            "memory": {"limit": MEMORY_LIMIT},
            "pids": {"limit": PIDS_LIMIT}
        });
    }
    if spec.trace {
        linux["seccomp"] = trace::seccomp();
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": spec.uid, "gid": spec.gid},
            "args": spec.args,
            "env": spec.env,
            "cwd": spec.cwd,
            "capabilities": caps,
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            // Also where `docker run` would not set it: the tracer's seccomp filter is
            // installed after the process's ids are set only with it.
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": spec.profile == Profile::Restricted},
        "hostname": "unroot-verify",
        "mounts": mounts,
        "linux": linux
    })
}

/// What a run waits for.
#[derive(Clone, Copy, Debug)]
pub struct Watch<'a> {
    /// The TCP ports the process must listen on.
    pub ports: &'a BTreeSet<u16>,
    /// How long it has to.
    pub timeout: Duration,
    /// With no ports: how long it must stay up; with ports, how long it is watched once
    /// they listen when the run is traced.
    pub settle: Duration,
    /// An HTTP path to GET on each port once they all listen.
    pub probe: Option<&'a str>,
    /// Trace the run (the bundle's config must have the tracer's seccomp section).
    pub trace: bool,
}

/// Why the runtime could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The runtime binary is missing.
    #[error("the OCI runtime `{0}` is not installed (Debian: `apt-get install runc`, or `crun`), or not on PATH")]
    Missing(String),
    /// It failed to start the container.
    #[error("`{runtime} run` failed: {message}")]
    Start {
        /// The runtime.
        runtime: String,
        /// Its last output lines.
        message: String,
    },
    /// Reading or writing the bundle failed.
    #[error("the bundle at `{path}`: {source}")]
    Io {
        /// The path.
        path: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The container could not be traced.
    #[error(transparent)]
    Trace(#[from] trace::TraceError),
}

/// The output lines of a container, kept as they come (the last 200).
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<VecDeque<String>>>);

impl Lines {
    /// Reads `pipes` on threads of their own until they close.
    fn read(&self, pipes: Vec<Box<dyn std::io::Read + Send>>) -> Vec<std::thread::JoinHandle<()>> {
        pipes
            .into_iter()
            .map(|pipe| {
                let lines = self.0.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                        let mut l = lines.locked();
                        l.push_back(line);
                        if l.len() > 200 {
                            l.pop_front();
                        }
                    }
                })
            })
            .collect()
    }

    fn all(&self) -> Vec<String> {
        self.0.locked().iter().cloned().collect()
    }
}

/// A container being run: by `runtime run` in the foreground, or created, seized by the
/// tracer and then started.
enum Launched {
    Plain(std::process::Child),
    Traced { pid: u32, tracer: trace::Tracer },
}

impl Launched {
    fn start(
        runtime: &str,
        bundle: &Path,
        id: &str,
        trace: bool,
        lines: &Lines,
    ) -> Result<(Launched, Vec<std::thread::JoinHandle<()>>), RuntimeError> {
        let spawn_error = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::NotFound => RuntimeError::Missing(runtime.to_string()),
            _ => RuntimeError::Io {
                path: bundle.display().to_string(),
                source: e,
            },
        };
        let verb = if trace { "create" } else { "run" };
        let mut child = Command::new(runtime)
            .args([verb, "--bundle"])
            .arg(bundle)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_error)?;
        let pipes: Vec<Box<dyn std::io::Read + Send>> = [
            child
                .stdout
                .take()
                .map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|e| Box::new(e) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        .collect();
        let readers = lines.read(pipes);
        if !trace {
            return Ok((Launched::Plain(child), readers));
        }
        // `create` returns once the container's init waits to be started; the pipes stay
        // open in the container.
        let status = child.wait().map_err(spawn_error)?;
        let failed = |message: String| {
            let _ = Command::new(runtime)
                .args(["delete", "-f", id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            RuntimeError::Start {
                runtime: runtime.to_string(),
                message,
            }
        };
        if !status.success() {
            for r in readers {
                let _ = r.join();
            }
            return Err(failed(lines.all().join("\n")));
        }
        let Some(pid) = container_pid(runtime, id, "created") else {
            return Err(failed("the created container has no process".into()));
        };
        let tracer = match trace::Tracer::attach(pid) {
            Ok(t) => t,
            Err(e) => {
                let _ = failed(String::new());
                return Err(e.into());
            }
        };
        let started = Command::new(runtime)
            .args(["start", id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(spawn_error)?;
        if !started.status.success() {
            let message = String::from_utf8_lossy(&started.stderr).trim().to_string();
            let _ = failed(String::new());
            let _ = tracer.finish();
            return Err(failed(message));
        }
        Ok((Launched::Traced { pid, tracer }, readers))
    }

    /// How the process ended, once it has.
    fn exited(&mut self) -> Option<i32> {
        match self {
            Launched::Plain(child) => {
                use std::os::unix::process::ExitStatusExt;
                let status = child.try_wait().ok()??;
                Some(
                    status
                        .code()
                        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
                )
            }
            Launched::Traced { tracer, .. } => tracer.root_exit(),
        }
    }

    /// The host pid of the container's process, once it runs.
    fn pid(&self, runtime: &str, id: &str) -> Option<u32> {
        match self {
            Launched::Plain(_) => container_pid(runtime, id, "running"),
            Launched::Traced { pid, .. } => Some(*pid),
        }
    }

    /// Waits for the runtime (killed first) and the tracer.
    fn end(self) -> Result<Option<trace::Trace>, RuntimeError> {
        match self {
            Launched::Plain(mut child) => {
                let _ = child.wait();
                Ok(None)
            }
            Launched::Traced { tracer, .. } => Ok(Some(tracer.finish()?)),
        }
    }
}

/// Runs the bundle at `bundle` (its `config.json` and `rootfs`) as container `id` with
/// `runtime`, until every port of `watch.ports` listens (then probed, when asked; a traced
/// run is watched `watch.settle` longer), the process exits, `watch.timeout` passes, or
/// `cancel` fires; with no ports, it must stay up for `watch.settle`. The container is
/// removed whatever happens.
pub fn run(
    runtime: &str,
    bundle: &Path,
    id: &str,
    watch: &Watch<'_>,
    cancel: &Cancel,
) -> Result<Observed, RuntimeError> {
    let Watch {
        ports,
        timeout,
        settle,
        probe,
        trace,
    } = *watch;
    let lines = Lines::default();
    let started = Instant::now();
    let (mut launched, readers) = Launched::start(runtime, bundle, id, trace, &lines)?;
    let mut observed = Observed::default();
    let mut pid: Option<u32> = None;
    let mut up_since: Option<Instant> = None;
    let mut all_since: Option<Instant> = None;
    loop {
        if let Some(code) = launched.exited() {
            observed.exited = Some(code);
            break;
        }
        if pid.is_none() {
            pid = launched.pid(runtime, id);
        }
        if let Some(p) = pid {
            up_since.get_or_insert_with(Instant::now);
            observed.listening.extend(listening(p));
        }
        let all = !ports.is_empty() && ports.is_subset(&observed.listening);
        if all {
            all_since.get_or_insert_with(Instant::now);
        }
        // A traced run goes on a while once it serves: what it does next is seen too.
        let served = all && (!trace || all_since.is_some_and(|t| t.elapsed() >= settle));
        let settled = ports.is_empty() && up_since.is_some_and(|t| t.elapsed() >= settle);
        if served || settled || started.elapsed() >= timeout || cancel.is_cancelled() {
            if let (true, Some(path), Some(p)) = (all, probe, pid) {
                observed.probes = ports
                    .iter()
                    .map(|&port| (port, http_get(p, port, path)))
                    .collect();
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new(runtime)
        .args(["kill", id, "KILL"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let plain = matches!(launched, Launched::Plain(_));
    let traced = launched.end();
    let _ = Command::new(runtime)
        .args(["delete", "-f", id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    for r in readers {
        let _ = r.join();
    }
    observed.trace = traced?;
    let lines = lines.all();
    observed.log = lines
        .iter()
        .skip(lines.len().saturating_sub(LOG_LINES))
        .cloned()
        .collect();
    let mut denied = Vec::new();
    for l in lines.iter() {
        let denial = [
            "Permission denied",
            "Read-only file system",
            "Operation not permitted",
        ]
        .iter()
        .any(|d| l.contains(d));
        if denial && !denied.contains(l) && denied.len() < 10 {
            denied.push(l.clone());
        }
    }
    observed.denied = denied;
    // A container that never ran: the runtime's own failure.
    if plain
        && pid.is_none()
        && observed.exited.is_some_and(|c| c != 0)
        && observed.listening.is_empty()
    {
        let runtime_said = observed
            .log
            .iter()
            .any(|l| l.contains("runc") || l.contains("crun"));
        if runtime_said && started.elapsed() < Duration::from_secs(2) {
            return Err(RuntimeError::Start {
                runtime: runtime.to_string(),
                message: observed.log.join("\n"),
            });
        }
    }
    Ok(observed)
}

/// `GET path` on `port` of 127.0.0.1 in the network namespace of `pid`: the status line
/// of the answer.
fn http_get(pid: u32, port: u16, path: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).map_err(|e| e.to_string())?;
    // On a thread of its own: setns changes the calling thread's namespace only.
    std::thread::scope(|scope| {
        scope
            .spawn(|| -> Result<String, String> {
                // SAFETY: `ns` is an open namespace file for the duration of the call, and
                // only this short-lived thread enters the namespace.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(format!(
                        "cannot enter its network namespace: {}",
                        std::io::Error::last_os_error()
                    ));
                }
                let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                let mut stream =
                    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3))
                        .map_err(|e| e.to_string())?;
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .map_err(|e| e.to_string())?;
                write!(
                    stream,
                    "GET {path} HTTP/1.0\r\nHost: localhost\r\nUser-Agent: unroot-verify\r\n\r\n"
                )
                .map_err(|e| e.to_string())?;
                let mut head = [0u8; 512];
                let n = stream.read(&mut head).map_err(|e| e.to_string())?;
                let text = String::from_utf8_lossy(&head[..n]);
                Ok(text.lines().next().unwrap_or_default().trim().to_string())
            })
            .join()
            .unwrap_or_else(|_| Err("the probe failed".into()))
    })
}

/// Whether an HTTP status line says the request succeeded (2xx or 3xx).
pub fn status_ok(line: &str) -> bool {
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .is_some_and(|c| (200..400).contains(&c))
}

/// The host pid of the container's process, once the runtime says its status is `status`
/// (`created`, `running`).
fn container_pid(runtime: &str, id: &str, status: &str) -> Option<u32> {
    let out = Command::new(runtime)
        .args(["state", id])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    if state["status"] != status {
        return None;
    }
    state["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .filter(|p| *p > 0)
}

/// The TCP ports listening in the network namespace of `pid`.
pub fn listening(pid: u32) -> BTreeSet<u16> {
    let mut ports = BTreeSet::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        ports.extend(listen_ports(&text));
    }
    ports
}

/// The local ports of the sockets in state LISTEN (`0A`) of a `/proc/net/tcp` table.
fn listen_ports(table: &str) -> Vec<u16> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(3) != Some(&"0A") {
                return None;
            }
            let port = fields.get(1)?.rsplit(':').next()?;
            u16::from_str_radix(port, 16).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_sockets_are_read_from_proc_net_tcp() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 65532        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0050 0100007F:A1B2 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1
";
        assert_eq!(listen_ports(table), [8080]);
        assert!(status_ok("HTTP/1.0 200 OK"));
        assert!(status_ok("HTTP/1.1 302 Found"));
        assert!(!status_ok("HTTP/1.0 404 Not Found"));
        assert!(!status_ok("SSH-2.0-OpenSSH"));
    }

    #[test]
    fn the_config_is_strict() {
        let c = config(&RunSpec {
            args: vec!["/srv".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            uid: 65532,
            gid: 0,
            writable: vec![
                ("/tmp".into(), None),
                ("/var/cache/app".into(), Some((65532, 0))),
            ],
            ids: IdMap {
                base: 100_000,
                size: 65536,
            },
            profile: Profile::Restricted,
            trace: false,
        });
        assert_eq!(c["root"]["readonly"], true);
        assert_eq!(c["process"]["noNewPrivileges"], true);
        assert_eq!(c["process"]["capabilities"]["effective"], json!([]));
        assert_eq!(c["process"]["user"], json!({"uid": 65532, "gid": 0}));
        assert_eq!(
            c["linux"]["sysctl"]["net.ipv4.ip_unprivileged_port_start"],
            "1024"
        );
        let tmpfs: Vec<&str> = c["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["type"] == "tmpfs" && m["source"] == "tmpfs")
            .filter_map(|m| m["destination"].as_str())
            .collect();
        assert_eq!(tmpfs, ["/dev", "/tmp", "/var/cache/app"]);
        assert_eq!(
            c["mounts"][7]["options"],
            json!(["nosuid", "nodev", "mode=1777", "uid=65532", "gid=0"])
        );
        let ns: Vec<&str> = c["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|n| n["type"].as_str())
            .collect();
        assert!(ns.contains(&"user") && ns.contains(&"network"));
    }
}
