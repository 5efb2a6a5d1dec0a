//! The tracer, on a tiny program built here (C, linked statically): it binds TCP and UDP
//! ports, reads a file only root may read, writes a log, makes a directory, forks a child
//! that executes itself, and drops to uid 101. Run as root the way Docker would (in a user
//! namespace), every call succeeds and is seen with its arguments; run as an unprivileged
//! user with a read-only root, each one is seen failing with the error the kernel gave.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use unroot::control::Cancel;
use unroot::runtime::trace::{Address, Call, Errno, Trace, Transport};
use unroot::runtime::unpack::IdMap;
use unroot::runtime::{self, Profile, RunSpec, Watch};

use crate::support::{tool, Scratch};

const IDS: IdMap = IdMap {
    base: 100_000,
    size: 65536,
};

/// The test program: each step prints what failed (`perror`); it waits for its child (so
/// "ready" means the child has run, however loaded the machine), then for a signal.
const PROGRAM: &str = r#"
#define _GNU_SOURCE
#include <stdio.h>
#include <unistd.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
int main(int argc, char **argv) {
  if (argc > 1) { mkdir("/run/probe", 0755); return 0; }
  int t = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {0}; a.sin_family = AF_INET; a.sin_port = htons(80);
  if (bind(t, (struct sockaddr *)&a, sizeof a) == 0) listen(t, 8); else perror("bind tcp 80");
  int u = socket(AF_INET6, SOCK_DGRAM, 0);
  struct sockaddr_in6 b = {0}; b.sin6_family = AF_INET6; b.sin6_port = htons(53);
  if (bind(u, (struct sockaddr *)&b, sizeof b) != 0) perror("bind udp 53");
  char buf[64];
  int fd = open("/etc/secret", O_RDONLY);
  if (fd < 0) perror("/etc/secret"); else { read(fd, buf, sizeof buf); close(fd); }
  chdir("/var/log");
  fd = open("probe/out.log", O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd < 0) perror("/var/log/probe/out.log"); else { write(fd, "x\n", 2); close(fd); }
  pid_t child = fork();
  if (child == 0) { execl("/probe", "probe-child", "child", (char *)0); _exit(1); }
  waitpid(child, NULL, 0);
  if (setgroups(0, NULL) != 0) perror("setgroups");
  if (setgid(101) != 0) perror("setgid");
  if (setuid(101) != 0) perror("setuid");
  printf("ready\n"); fflush(stdout);
  pause();
  return 0;
}
"#;

/// A bundle whose root holds the program, `/etc/secret` (root, 0600) and the directories
/// it uses, owned by the namespace's root.
fn bundle(s: &Scratch) -> PathBuf {
    let dir = s.path("bundle");
    let root = dir.join("rootfs");
    for d in ["etc", "var/log/probe", "run", "tmp", "proc", "dev", "sys"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let source = s.path("probe.c");
    std::fs::write(&source, PROGRAM).unwrap();
    let binary = root.join("probe");
    tool(
        "gcc",
        &[
            "-static",
            "-O1",
            "-o",
            binary.to_str().unwrap(),
            source.to_str().unwrap(),
        ],
    )
    .success();
    std::fs::write(root.join("etc/secret"), "only root\n").unwrap();
    std::fs::set_permissions(root.join("etc/secret"), PermissionsExt::from_mode(0o600)).unwrap();
    // Writable by anyone, so only the read-only root refuses the unprivileged run's log.
    std::fs::set_permissions(root.join("var/log/probe"), PermissionsExt::from_mode(0o777)).unwrap();
    for p in [s.dir.path(), &dir] {
        std::fs::set_permissions(p, PermissionsExt::from_mode(0o755)).unwrap();
    }
    tool("chown", &["-R", "100000:100000", root.to_str().unwrap()]).success();
    dir
}

fn traced_run(bundle: &Path, profile: Profile, uid: u32, id: &str) -> runtime::Observed {
    let spec = RunSpec {
        args: vec!["/probe".into()],
        env: vec!["PATH=/".into()],
        cwd: "/".into(),
        uid,
        gid: uid,
        writable: vec![("/tmp".into(), None)],
        ids: IDS,
        profile,
        trace: true,
    };
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec_pretty(&runtime::config(&spec)).unwrap(),
    )
    .unwrap();
    let ports = BTreeSet::new();
    runtime::run(
        "runc",
        bundle,
        id,
        &Watch {
            ports: &ports,
            timeout: Duration::from_secs(20),
            settle: Duration::from_secs(2),
            probe: None,
            trace: true,
        },
        &Cancel::new(),
    )
    .expect("the traced run")
}

/// The result of the first event matching `call`.
fn result_of(trace: &Trace, what: &str, call: impl Fn(&Call) -> bool) -> Result<i64, Errno> {
    trace
        .events
        .iter()
        .find(|e| call(&e.call))
        .unwrap_or_else(|| panic!("no {what} in the trace: {:#?}", trace.events))
        .result
}

fn bind_of(port: u16, transport: Transport) -> impl Fn(&Call) -> bool {
    move |c| {
        matches!(c, Call::Bind { address: Address::Inet { port: p, transport: t, .. } }
            if *p == port && *t == transport)
    }
}

fn open_of(path: &'static str, write: bool) -> impl Fn(&Call) -> bool {
    move |c| matches!(c, Call::Open { path: p, write: w, .. } if p == path && *w == write)
}

#[test]
fn a_root_run_is_seen_whole_and_an_unprivileged_one_fails_where_the_kernel_says() {
    let s = Scratch::new();
    let dir = bundle(&s);

    // As root, the way Docker runs it (its capabilities, a writable root). Three runs,
    // each seen whole: the forked child's exec and exit are in every trace, even when
    // the kernel reports the child's first stop before its parent's fork.
    let mut runs = Vec::new();
    for attempt in 1..=3 {
        let id = format!("unroot-trace-{}-root{attempt}", std::process::id());
        let root = traced_run(&dir, Profile::Docker, 0, &id);
        let trace = root.trace.clone().expect("traced");
        let child = trace
            .processes
            .values()
            .find(|p| p.argv == ["probe-child", "child"])
            .unwrap_or_else(|| panic!("run {attempt}: the child's exec is missing: {trace:#?}"));
        assert!(
            child.exit.is_some(),
            "run {attempt}: the child's exit is missing: {child:?}"
        );
        assert!(child.parent.is_some(), "run {attempt}: {child:?}");
        // What the child made, so the next run's mkdir starts from the same root.
        let _ = std::fs::remove_dir(dir.join("rootfs/run/probe"));
        runs.push((root, trace));
    }
    let (root, trace) = runs.pop().unwrap();
    assert!(root.log.iter().any(|l| l == "ready"), "{:?}", root.log);
    assert_eq!(
        result_of(&trace, "bind tcp 80", bind_of(80, Transport::Tcp)),
        Ok(0)
    );
    assert_eq!(
        result_of(&trace, "bind udp 53", bind_of(53, Transport::Udp)),
        Ok(0)
    );
    assert!(result_of(&trace, "read of /etc/secret", open_of("/etc/secret", false)).is_ok());
    // Relative to the working directory it changed to.
    assert!(result_of(&trace, "the log", open_of("/var/log/probe/out.log", true)).is_ok());
    assert_eq!(
        result_of(
            &trace,
            "setuid",
            |c| matches!(c, Call::SetUid { ids } if ids == &[101])
        ),
        Ok(0)
    );
    assert_eq!(
        result_of(
            &trace,
            "setgroups",
            |c| matches!(c, Call::SetGroups { groups } if groups.is_empty())
        ),
        Ok(0)
    );
    // The child: forked, executed with its own argv, made its directory.
    let child = trace
        .processes
        .values()
        .find(|p| p.argv == ["probe-child", "child"])
        .unwrap_or_else(|| panic!("no child in {:#?}", trace.processes));
    let first = trace
        .processes
        .values()
        .find(|p| p.argv == ["/probe"])
        .unwrap();
    assert_eq!(child.parent, Some(first.pid));
    assert_eq!(child.exit, Some(0));
    let mkdir = trace
        .events
        .iter()
        .find(|e| matches!(&e.call, Call::Mkdir { path } if path == "/run/probe"))
        .expect("mkdir /run/probe");
    assert_eq!(mkdir.pid, child.pid);
    assert_eq!(mkdir.result, Ok(0));
    // The runtime's own calls before it executed the program are not the image's.
    assert!(
        !trace
            .events
            .iter()
            .any(|e| matches!(&e.call, Call::Open { path, .. } if path.contains("exec.fifo"))),
        "{:#?}",
        trace.events
    );
    assert!(matches!(trace.events[0].call, Call::Exec { ref path, .. } if path == "/probe"));

    // As an unprivileged user, read-only root, no capabilities: each step is refused (on
    // the root filesystem as the image has it).
    std::fs::remove_file(dir.join("rootfs/var/log/probe/out.log")).unwrap();
    let id = format!("unroot-trace-{}-user", std::process::id());
    let user = traced_run(&dir, Profile::Restricted, 1000, &id);
    let trace = user.trace.expect("traced");
    let eacces = Err(Errno(libc::EACCES));
    assert_eq!(
        result_of(&trace, "bind tcp 80", bind_of(80, Transport::Tcp)),
        eacces
    );
    assert_eq!(
        result_of(&trace, "bind udp 53", bind_of(53, Transport::Udp)),
        eacces
    );
    assert_eq!(
        result_of(&trace, "/etc/secret", open_of("/etc/secret", false)),
        eacces
    );
    assert_eq!(
        result_of(&trace, "the log", open_of("/var/log/probe/out.log", true)),
        Err(Errno(libc::EROFS))
    );
    assert_eq!(
        result_of(
            &trace,
            "setuid",
            |c| matches!(c, Call::SetUid { ids } if ids == &[101])
        ),
        Err(Errno(libc::EPERM))
    );
    assert!(trace.denials().count() >= 6, "{:#?}", trace.events);
}
