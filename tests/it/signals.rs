//! Interrupted runs: SIGINT and SIGTERM sent to a real `unroot` process in each phase stop
//! it with 130 or 143, leave nothing behind (work directory, staging directory, temporary
//! blobs and archives) and move no tag; what a killed run left is removed by the next.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::faults::{largest_layer, spec_with_large_layer, Fault, FaultProxy, Rule};
use crate::support::{files_below, Registry, Scratch, TINY};

/// Starts `unroot` as the tests do (private HOME and TMPDIR), with stderr piped.
fn start(s: &Scratch, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_unroot"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", s.dir.path())
        .env("TMPDIR", s.tmp())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unroot runs")
}

fn signal(child: &Child, number: i32) {
    // SAFETY: kill sends a signal to the child we started.
    let r = unsafe { libc::kill(child.id() as i32, number) };
    assert_eq!(r, 0, "kill failed");
}

/// Waits until `ready` holds (polling), or gives up after a while.
fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < end, "never saw {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Sends `number` the moment `ready` holds: the child is stopped first (SIGSTOP) so it
/// cannot finish meanwhile, then signalled and let go. Returns its exit code and stderr.
fn interrupt(
    mut child: Child,
    number: i32,
    what: &str,
    ready: impl FnMut() -> bool,
) -> (i32, String) {
    let stderr = child.stderr.take().unwrap();
    let lines = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
            .join("\n")
    });
    wait_for(what, ready);
    signal(&child, libc::SIGSTOP);
    signal(&child, number);
    signal(&child, libc::SIGCONT);
    let status = child.wait().unwrap();
    let stderr = lines.join().unwrap();
    (status.code().unwrap_or(-1), stderr)
}

/// The names below `dir` that are unroot's temporary ones.
fn leftovers(dir: &Path) -> Vec<String> {
    files_below(dir)
        .into_iter()
        .filter(|p| p.contains(".unroot-") || p.contains(".tmp"))
        .collect()
}

fn exists_below(dir: &Path, marker: &str) -> bool {
    files_below(dir).iter().any(|p| p.contains(marker))
}

#[test]
fn sigint_while_reading_a_layer_from_a_silent_registry() {
    let s = Scratch::new();
    let registry = Registry::start();
    let src = s.build("img", "v1", &spec_with_large_layer());
    registry.push(&src, "team/big:v1", None);
    let layer = largest_layer(&registry.image("team/big:v1"));
    let proxy = FaultProxy::start(&registry.addr);
    proxy.add(Rule::new("GET", &format!("/blobs/{layer}"), Fault::StallAfter(50_000)).always());
    let out = s.path("out");
    let child = start(
        &s,
        &[
            "convert",
            &proxy.image("team/big:v1"),
            "--to",
            &format!("oci:{}:v1", out.display()),
        ],
    );
    let (code, stderr) = interrupt(child, libc::SIGINT, "the stalled layer", || {
        proxy.log().iter().any(|l| l.faulted)
    });
    assert_eq!(code, 130, "{stderr}");
    assert!(
        stderr.contains("error: stopped by SIGINT: nothing was written"),
        "{stderr}"
    );
    assert!(!out.exists());
    assert_eq!(
        files_below(&s.tmp()),
        Vec::<String>::new(),
        "work files left"
    );
    assert_eq!(leftovers(s.dir.path()), Vec::<String>::new());
}

#[test]
fn sigterm_while_writing_layouts_and_archives() {
    let s = Scratch::new();
    // A layer large enough that writing it takes a while.
    let spec =
        format!("{TINY}\n[[layer]]\n[[layer.entry]]\npath = \"/opt/data.bin\"\nsize = 8000000\n");
    let src = s.build("img", "v1", &spec);

    // A new layout: its staging directory goes, and the layout is never created.
    let new = s.path("new");
    let child = start(
        &s,
        &[
            "convert",
            &src,
            "--to",
            &format!("oci:{}:v1", new.display()),
        ],
    );
    let (code, stderr) = interrupt(child, libc::SIGTERM, "the staging directory", || {
        exists_below(s.dir.path(), ".unroot-staging-")
    });
    assert_eq!(code, 143, "{stderr}");
    assert!(stderr.contains("error: stopped by SIGTERM"), "{stderr}");
    assert!(!new.exists());
    assert_eq!(leftovers(s.dir.path()), Vec::<String>::new());
    assert_eq!(files_below(&s.tmp()), Vec::<String>::new());

    // An existing layout: its temporary blobs go, its index stays.
    let other = s.build("other", "v1", TINY);
    let index = std::fs::read(s.path("other/index.json")).unwrap();
    let into = other.replace(":v1", ":v2");
    let child = start(&s, &["convert", &src, "--to", &into]);
    let (code, stderr) = interrupt(child, libc::SIGTERM, "a temporary blob", || {
        exists_below(&s.path("other/blobs"), ".unroot-tmp-")
    });
    assert_eq!(code, 143, "{stderr}");
    assert_eq!(std::fs::read(s.path("other/index.json")).unwrap(), index);
    assert_eq!(leftovers(s.dir.path()), Vec::<String>::new());

    // An archive: the temporary file goes.
    let archive = s.path("out.tar");
    let child = start(
        &s,
        &[
            "convert",
            &src,
            "--to",
            &format!("oci-archive:{}", archive.display()),
        ],
    );
    let (code, stderr) = interrupt(child, libc::SIGTERM, "the temporary archive", || {
        exists_below(s.dir.path(), ".tar.tmp")
    });
    assert_eq!(code, 143, "{stderr}");
    assert!(!archive.exists());
    assert_eq!(leftovers(s.dir.path()), Vec::<String>::new());
    assert_eq!(files_below(&s.tmp()), Vec::<String>::new());
}

#[test]
fn sigterm_during_an_upload_abandons_it_and_moves_no_tag() {
    let s = Scratch::new();
    let registry = Registry::start();
    let src = s.build("img", "v1", TINY);
    registry.push(&src, "team/app:v1", None);
    let proxy = FaultProxy::start(&registry.addr);
    proxy.add(Rule::new("PUT", "/blobs/uploads/", Fault::Stall).always());
    let child = start(
        &s,
        &[
            "convert",
            &proxy.image("team/app:v1"),
            "--to",
            &proxy.image("dest/app:v1"),
        ],
    );
    let (code, stderr) = interrupt(child, libc::SIGTERM, "the stalled upload", || {
        proxy.log().iter().any(|l| l.faulted)
    });
    assert_eq!(code, 143, "{stderr}");
    let log = proxy.log();
    assert!(
        log.iter()
            .any(|l| l.method == "DELETE" && l.target.contains("/v2/dest/app/blobs/uploads/")),
        "the upload session was not abandoned: {log:?}"
    );
    assert!(!registry.has_tag("dest/app:v1", None));
    assert_eq!(files_below(&s.tmp()), Vec::<String>::new());
}

#[test]
fn what_a_killed_run_left_is_removed_by_the_next() {
    let s = Scratch::new();
    let src = s.build("img", "v1", TINY);
    let mut gone = Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let me = std::process::id();
    // What SIGKILL leaves: a work directory, a staging directory, a temporary blob and a
    // temporary archive, of a process that is gone; and one of a process that is alive.
    let stale = [
        s.tmp().join(format!(".unroot-work-{dead}-x")),
        s.path(&format!(".unroot-staging-{dead}-x")),
        s.path(&format!("img/blobs/sha256/.unroot-tmp-{dead}-x")),
        s.path(&format!(".unroot-archive-{dead}-x.tar.tmp")),
    ];
    for p in &stale {
        std::fs::write(p, b"left").unwrap();
    }
    let alive = s.path(&format!(".unroot-staging-{me}-x"));
    std::fs::write(&alive, b"in use").unwrap();
    s.unroot(&[
        "convert",
        "-q",
        &src,
        "--to",
        &format!("oci:{}:v1", s.path("new").display()),
    ])
    .success();
    s.unroot(&["convert", "-q", &src, "--to", &src.replace(":v1", ":v2")])
        .success();
    s.unroot(&[
        "convert",
        "-q",
        &src,
        "--to",
        &format!("oci-archive:{}", s.path("out.tar").display()),
    ])
    .success();
    for p in &stale {
        assert!(!p.exists(), "{} was left", p.display());
    }
    assert!(alive.exists(), "a live process's file was removed");
}
