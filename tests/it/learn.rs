//! Learned conversion, end to end, on images of Debian daemons that no recipe covers,
//! assembled from this machine's packages: each original fails to run unprivileged;
//! `convert --learn` watches it run as root, learns what it needs, and writes an image that
//! passes `verify` as its user and as an arbitrary UID in group 0; that image answers with
//! the service's own protocol on its moved port under runc (read-only root, the contract's
//! mounts); and the recipe it wrote gives the same image with no tracing.

use std::time::{Duration, Instant};

use crate::hostimage::HostImage;
use crate::runtime::{unique, Bundle, Container};
use crate::support::Scratch;

/// How to ask a daemon whether it works, with its own protocol, from inside the
/// container's network namespace.
#[derive(Clone, Copy, Debug)]
enum Probe {
    /// An HTTP proxy: a request for a URL through it answers with the proxy's own page
    /// containing the text.
    HttpProxy(&'static str),
    /// DNS over UDP: `dig` gets an answer for the name.
    Dns(&'static str),
    /// SSH: `ssh-keyscan` gets the host key.
    Ssh,
    /// HTTP: `GET /` answers and the body contains the text.
    Http(&'static str),
    /// FTP: the greeting.
    Ftp,
}

impl Probe {
    fn ask(self, c: &Container, port: u16) -> Result<(), String> {
        if !c.alive() {
            return Err("the container is not running".into());
        }
        let p = port.to_string();
        let (out, want) = match self {
            Probe::HttpProxy(want) => (
                c.in_netns(&[
                    "curl",
                    "-sS",
                    "--max-time",
                    "3",
                    "-x",
                    &format!("http://127.0.0.1:{p}"),
                    "http://unroot.invalid/",
                ]),
                want,
            ),
            Probe::Dns(name) => (
                c.in_netns(&[
                    "dig",
                    "+time=2",
                    "+tries=1",
                    "+short",
                    "-p",
                    &p,
                    "@127.0.0.1",
                    name,
                ]),
                ".",
            ),
            Probe::Ssh => (
                c.in_netns(&["ssh-keyscan", "-T", "3", "-p", &p, "127.0.0.1"]),
                "ssh-",
            ),
            Probe::Http(want) => (
                c.in_netns(&[
                    "curl",
                    "-sS",
                    "--max-time",
                    "3",
                    &format!("http://127.0.0.1:{p}/"),
                ]),
                want,
            ),
            Probe::Ftp => (
                c.in_netns(&[
                    "curl",
                    "-sS",
                    "--max-time",
                    "3",
                    &format!("ftp://127.0.0.1:{p}/"),
                    "-u",
                    "anonymous:x",
                ]),
                "",
            ),
        };
        if out.code == 0 && out.stdout.contains(want) && !out.stdout.trim().is_empty() {
            Ok(())
        } else {
            Err(format!(
                "exit {}: {}{}",
                out.code,
                out.stdout.chars().take(300).collect::<String>(),
                out.stderr
            ))
        }
    }

    fn answers(self, c: &Container, port: u16) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match self.ask(c, port) {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline || !c.alive() => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
}

/// What one daemon's learning showed, for the summary.
struct Learned {
    rounds: usize,
    seconds: f64,
    changes: usize,
}

/// Learns and proves one daemon: see the module documentation. `port` is where the
/// converted image must answer.
fn learn_and_prove(name: &str, image: HostImage, probe: Probe, port: u16) -> Learned {
    let s = Scratch::new();
    let layout = s.path("img");
    let src = format!("oci:{}:original", layout.display());
    crate::support::build(&image.spec(), &src);

    // The original does not run unprivileged.
    let (code, verified) = crate::runtime::verify(&s, &src);
    assert_eq!(code, 5, "{name}: the original passes verify: {verified:#}");

    // Learned, converted, proven.
    let learned = format!("oci:{}:learned", layout.display());
    let recipe = s.path(&format!("{name}.toml"));
    let out = s.unroot(&[
        "convert",
        "-q",
        "--learn",
        "--write-recipe",
        recipe.to_str().unwrap(),
        "--format",
        "json",
        &src,
        "--to",
        &learned,
    ]);
    let text = std::fs::read_to_string(&recipe).unwrap_or_default();
    assert_eq!(
        out.code, 0,
        "{name}: convert --learn:\n{}\n{}\nrecipe:\n{text}",
        out.stdout, out.stderr
    );
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let learning = &report["destination"]["learned"];
    let verified = report["destination"]["verified"].as_array().unwrap();
    assert_eq!(verified.len(), 2, "{name}: {report:#}");
    assert!(
        verified
            .iter()
            .all(|v| v.as_str().unwrap().contains("passed")),
        "{name}: {verified:?}"
    );

    // It answers with its own protocol, as its user and as an arbitrary UID in group 0,
    // read-only root plus the contract's writable mounts.
    let writable: Vec<String> = report["contract"]["writable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect();
    let uid = report["contract"]["uid"].as_u64().unwrap() as u32;
    for (who, user) in [("user", None), ("any", Some((54321, 0)))] {
        let b = Bundle::new(&s, &layout, "learned", who, user);
        b.mount_writable(&writable, uid);
        let c = b.start(&unique(who, &s));
        if let Err(e) = probe.answers(&c, port) {
            drop(c);
            let out = b.run_to_exit(&unique("diag", &s));
            panic!(
                "{name}: the learned image as {who} does not answer on {port}: {e}\n{}\n{}\nrecipe:\n{text}",
                out.stdout, out.stderr
            );
        }
    }

    // The recipe gives the same image, with no tracing.
    let replayed = format!("oci:{}:replayed", layout.display());
    s.unroot(&[
        "convert",
        "-q",
        "--recipe",
        recipe.to_str().unwrap(),
        &src,
        "--to",
        &replayed,
    ])
    .success();
    assert_eq!(
        crate::support::layout_manifest(&layout, Some("replayed")),
        crate::support::layout_manifest(&layout, Some("learned")),
        "{name}: the written recipe gives another image:\n{text}"
    );
    let rounds = learning["rounds"].as_u64().unwrap() as usize;
    let changes = learning["changes"].as_array().unwrap().len();
    eprintln!("{name}: learned {changes} changes in {rounds} rounds\n{text}");
    Learned {
        rounds,
        seconds: 0.0,
        changes,
    }
}

/// tinyproxy as Debian packages it, listening on port 80 (`Port 80`, the config's own
/// syntax), `User`/`Group tinyproxy`, a log file in root's /var/log/tinyproxy and a pid file
/// in /run/tinyproxy.
fn tinyproxy() -> HostImage {
    let mut i = HostImage::new(
        r#"[config]
Env = ["PATH=/usr/bin:/usr/sbin"]
Cmd = ["/usr/bin/tinyproxy", "-d"]
"#,
    );
    i.base();
    i.binary("/usr/bin/tinyproxy");
    i.tree("/usr/share/tinyproxy");
    i.accounts(&["root", "tinyproxy"], &["root", "tinyproxy"]);
    i.path("/etc/tinyproxy");
    let conf = std::fs::read_to_string("/etc/tinyproxy/tinyproxy.conf")
        .expect("tinyproxy is installed (./scripts/test installs it)")
        .replace("\nPort 8888", "\nPort 80");
    i.text("/etc/tinyproxy/tinyproxy.conf", &conf, 0o644, 0, 0);
    i.dir("/var/log/tinyproxy", 0o755, 0, 0);
    let t = crate::services::host_uid("tinyproxy");
    i.dir("/run/tinyproxy", 0o750, t, t);
    i
}

#[test]
fn tinyproxy_port_in_its_config_user_log_and_pid_directories() {
    learn_and_prove(
        "tinyproxy",
        tinyproxy(),
        Probe::HttpProxy("Tinyproxy"),
        8080,
    );
}
