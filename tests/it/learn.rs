//! Learned conversion, end to end, on images of Debian daemons that no recipe covers,
//! assembled from this machine's packages: each original fails to run unprivileged;
//! `convert --learn` watches it run as root, learns what it needs, and writes an image that
//! passes `verify` as its user and as an arbitrary UID in group 0; that image answers with
//! the service's own protocol on its moved port under runc (read-only root, the contract's
//! mounts); the recipe it wrote gives the same image with no tracing; and under a real
//! Docker engine the `--emit docker` lines of that recipe's conversion run as printed.

use std::time::{Duration, Instant};

use crate::hostimage::HostImage;
use crate::runtime::{unique, Bundle, Container};
use crate::support::Scratch;

/// How to ask a daemon whether it works, with its own protocol, from inside the
/// container's network namespace.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Probe {
    /// An HTTP proxy: a request for a URL through it answers with the proxy's own page
    /// containing the text.
    HttpProxy(&'static str),
    /// DNS over UDP: `dig` gets an answer for the name.
    Dns(&'static str),
    /// SSH: `ssh-keyscan` gets the host key.
    Ssh,
    /// HTTP: `GET /` answers and the body contains the text.
    Http(&'static str),
}

impl Probe {
    /// The command that asks on `port` of 127.0.0.1, and what its answer must contain.
    fn command(self, port: u16) -> (Vec<String>, &'static str) {
        let p = port.to_string();
        let (args, want): (Vec<&str>, &'static str) = match self {
            Probe::HttpProxy(want) => {
                let proxy = format!("http://127.0.0.1:{p}");
                // With its headers: a proxy names itself in `Server` even on a page
                // that refuses the client (a published port's client is the bridge).
                let args = vec!["curl", "-sS", "-i", "--max-time", "3", "-x"];
                return (
                    args.into_iter()
                        .map(String::from)
                        .chain([proxy, "http://unroot.invalid/".to_string()])
                        .collect(),
                    want,
                );
            }
            Probe::Dns(name) => (
                vec![
                    "dig",
                    "+time=2",
                    "+tries=1",
                    "+short",
                    "-p",
                    &p,
                    "@127.0.0.1",
                    name,
                ],
                ".",
            ),
            Probe::Ssh => (
                vec!["ssh-keyscan", "-T", "3", "-p", &p, "127.0.0.1"],
                "ssh-",
            ),
            Probe::Http(want) => {
                let url = format!("http://127.0.0.1:{p}/");
                return (
                    ["curl", "-sS", "--max-time", "3"]
                        .into_iter()
                        .map(String::from)
                        .chain([url])
                        .collect(),
                    want,
                );
            }
        };
        (args.into_iter().map(String::from).collect(), want)
    }

    /// Whether an answer is the service's own (its name in any case).
    fn check(out: &crate::support::Output, want: &str) -> Result<(), String> {
        let text = out.stdout.to_lowercase();
        if out.code == 0 && text.contains(&want.to_lowercase()) && !text.trim().is_empty() {
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

    /// Asks once, from inside the container's network namespace.
    fn ask(self, c: &Container, port: u16) -> Result<(), String> {
        if !c.alive() {
            return Err("the container is not running".into());
        }
        let (args, want) = self.command(port);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Probe::check(&c.in_netns(&args), want)
    }

    /// Asks once, from the host (a port a container engine published).
    fn ask_host(self, port: u16) -> Result<(), String> {
        let (args, want) = self.command(port);
        let rest: Vec<&str> = args[1..].iter().map(String::as_str).collect();
        Probe::check(&crate::support::tool(&args[0], &rest), want)
    }

    pub(crate) fn answers(self, c: &Container, port: u16) -> Result<(), String> {
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

/// Learns and proves one daemon: see the module documentation. `port` is where the
/// converted image must answer.
fn learn_and_prove(name: &str, image: HostImage, probe: Probe, port: u16) {
    let s = Scratch::new();
    let layout = s.path("img");
    let src = format!("oci:{}:original", layout.display());
    crate::support::build(&image.spec(), &src);

    // The original does not run unprivileged.
    let (code, verified) = crate::runtime::verify(&s, &src);
    assert_eq!(code, 5, "{name}: the original passes verify: {verified:#}");

    // Learned, converted, proven.
    let started = Instant::now();
    let learned = format!("oci:{}:learned", layout.display());
    let recipe = s.path(&format!("{name}.toml"));
    let out = s.unroot(&[
        "convert",
        "-q",
        "--no-recipes",
        "--learn",
        "--write-recipe",
        recipe.to_str().unwrap(),
        "--format",
        "json",
        &src,
        "--to",
        &learned,
    ]);
    let learning_took = started.elapsed();
    let text = std::fs::read_to_string(&recipe).unwrap_or_default();
    assert_eq!(
        out.code, 0,
        "{name}: convert --learn:\n{}\n{}\nrecipe:\n{text}",
        out.stdout, out.stderr
    );
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let learning = &report["destination"]["learned"];
    let left: Vec<&serde_json::Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .collect();
    assert!(left.is_empty(), "{name}: errors remain: {left:#?}");
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
    answers_both_ways(name, &s, "learned", &report, probe, port);

    // The recipe gives the same image, with no tracing.
    let replayed = format!("oci:{}:replayed", layout.display());
    s.unroot(&[
        "convert",
        "-q",
        "--no-recipes",
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
    // Under a real Docker, as the `--emit docker` lines of the recipe's conversion to a
    // docker archive say.
    let archive = s.path("learned.tar");
    let emitted = s
        .unroot(&[
            "convert",
            "-q",
            "--no-recipes",
            "--recipe",
            recipe.to_str().unwrap(),
            "--emit",
            "docker",
            &src,
            "--to",
            &format!(
                "docker-archive:{}:unroot-test/{name}:learned",
                archive.display()
            ),
        ])
        .success()
        .stdout;
    let user = format!(
        "{}:{}",
        report["contract"]["uid"], report["contract"]["gid"]
    );
    under_docker(name, &emitted, probe, port, &user);

    if std::env::var_os("UNROOT_LEARN_BENCH").is_some() {
        bench(name, &s, &src, &recipe, learning_took);
    }
    let rounds = learning["rounds"].as_u64().unwrap() as usize;
    let seconds = learning["seconds"].as_f64().unwrap();
    let changes = learning["changes"].as_array().unwrap().len();
    // The figures the closing note and README quote.
    eprintln!(
        "learned {name}: {rounds} rounds, {seconds:.1} s, {changes} changes, verdict: serves\n{text}"
    );
}

/// Runs the image tagged `tag` in the scratch's layout as its user and as an arbitrary UID
/// in group 0, read-only root plus the writable mounts of the conversion's `report`: the
/// service must answer with its own protocol on `port` both ways.
pub(crate) fn answers_both_ways(
    name: &str,
    s: &Scratch,
    tag: &str,
    report: &serde_json::Value,
    probe: Probe,
    port: u16,
) {
    let layout = s.path("img");
    let writable: Vec<String> = report["contract"]["writable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect();
    let uid = report["contract"]["uid"].as_u64().unwrap() as u32;
    for (who, user) in [("user", None), ("any", Some((54321, 0)))] {
        let b = Bundle::new(s, &layout, tag, who, user);
        b.mount_writable(&writable, uid);
        let c = b.start(&unique(who, s));
        if let Err(e) = probe.answers(&c, port) {
            drop(c);
            let out = b.run_to_exit(&unique("diag", s));
            panic!(
                "{name}: the image as {who} does not answer on {port}: {e}\n{}\n{}",
                out.stdout, out.stderr
            );
        }
    }
}

/// For `benches/learn.sh`: what learning cost beside what proving the written recipe
/// costs (`convert --recipe --verify`: one conversion, two runs) and a plain conversion
/// with it, on the same image, printed as one `bench` line (no duration is asserted).
fn bench(name: &str, s: &Scratch, src: &str, recipe: &std::path::Path, learning: Duration) {
    let layout = s.path("img");
    let timed = |tag: &str, extra: &[&str]| {
        let dest = format!("oci:{}:{tag}", layout.display());
        let mut args = vec![
            "convert",
            "-q",
            "--no-recipes",
            "--recipe",
            recipe.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[src, "--to", &dest]);
        let started = Instant::now();
        s.unroot(&args).success();
        started.elapsed().as_secs_f64()
    };
    let proven = timed("bench-verified", &["--verify"]);
    let plain = timed("bench-plain", &[]);
    eprintln!(
        "bench {name} learn={:.2} verify={proven:.2} convert={plain:.2}",
        learning.as_secs_f64()
    );
}

/// tinyproxy as Debian packages it, listening on port 80 (`Port 80`, the config's own
/// syntax), `User`/`Group tinyproxy`, a log file in root's /var/log/tinyproxy and a pid file
/// in /run/tinyproxy.
pub(crate) fn tinyproxy() -> HostImage {
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

/// A host file's text, with the package that ships it named when it is missing.
fn host_text(path: &str, package: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!("{path}: {e} (is {package} installed? ./scripts/test installs it)")
    })
}

fn host_gid(group: &str) -> u32 {
    std::fs::read_to_string("/etc/group")
        .unwrap()
        .lines()
        .find(|l| l.starts_with(&format!("{group}:")))
        .and_then(|l| l.split(':').nth(2)?.parse().ok())
        .unwrap_or_else(|| panic!("no group `{group}` on this machine"))
}

/// dropbear (SSH), its port an argument (`-p 22`) and no `ExposedPorts`, its host key
/// readable by root only (0600), its pid file in /run.
pub(crate) fn dropbear(s: &Scratch) -> HostImage {
    let mut i = HostImage::new(
        r#"[config]
Env = ["PATH=/usr/bin:/usr/sbin"]
Cmd = ["/usr/sbin/dropbear", "-F", "-E", "-p", "22", "-r", "/etc/dropbear/dropbear_ed25519_host_key"]
"#,
    );
    i.base();
    i.binary("/usr/sbin/dropbear");
    i.accounts(&["root"], &["root"]);
    let key = s.path("dropbear_ed25519_host_key");
    crate::support::tool(
        "dropbearkey",
        &["-t", "ed25519", "-f", key.to_str().unwrap()],
    )
    .success();
    i.dir("/etc/dropbear", 0o755, 0, 0);
    i.copy(
        key.to_str().unwrap(),
        "/etc/dropbear/dropbear_ed25519_host_key",
        0o600,
    );
    i
}

/// The config of [`nsd`].
pub(crate) const NSD_CONF: &str = r#"server:
  port: 53
  username: nsd
  pidfile: "/run/nsd/nsd.pid"
  zonesdir: "/etc/nsd"
  verbosity: 1
remote-control:
  control-enable: yes
  control-interface: 127.0.0.1
  control-port: 8952
zone:
  name: unroot.test
  zonefile: "unroot.test.zone"
"#;

/// nsd (authoritative DNS) with `port: 53` in its YAML-like config, `username: nsd`,
/// remote control on (its keys root 0600), a pid file in /run/nsd, answering for a zone;
/// UDP and TCP, neither exposed.
fn nsd() -> HostImage {
    nsd_with(NSD_CONF)
}

/// nsd as [`nsd`] makes it, with another config.
pub(crate) fn nsd_with(conf: &str) -> HostImage {
    let mut i = HostImage::new(
        r#"[config]
Env = ["PATH=/usr/sbin:/usr/bin"]
Cmd = ["/usr/sbin/nsd", "-d", "-c", "/etc/nsd/nsd.conf"]
"#,
    );
    i.base();
    i.binary("/usr/sbin/nsd");
    i.accounts(&["root", "nsd"], &["root", "nsd"]);
    let n = crate::services::host_uid("nsd");
    i.dir("/etc/nsd", 0o755, 0, 0);
    for key in [
        "nsd_server.key",
        "nsd_server.pem",
        "nsd_control.key",
        "nsd_control.pem",
    ] {
        let path = format!("/etc/nsd/{key}");
        assert!(
            std::path::Path::new(&path).exists(),
            "{path}: is nsd installed? ./scripts/test installs it"
        );
        i.copy(&path, &path, 0o600);
    }
    i.text("/etc/nsd/nsd.conf", conf, 0o644, 0, 0);
    i.text(
        "/etc/nsd/unroot.test.zone",
        "$ORIGIN unroot.test.\n$TTL 300\n@ IN SOA ns hostmaster 1 3600 600 86400 300\n@ IN NS ns\nns IN A 192.0.2.53\nwww IN A 192.0.2.1\n",
        0o644,
        0,
        0,
    );
    i.dir("/var/lib/nsd", 0o755, n, n);
    i.dir("/run/nsd", 0o755, n, n);
    i
}

/// dnsmasq (DNS) with `port=53` and `user=dnsmasq` in its `key=value` config, answering
/// for a name from its config; UDP and TCP, neither exposed.
fn dnsmasq() -> HostImage {
    dnsmasq_with(DNSMASQ_CONF)
}

/// The config of [`dnsmasq`].
pub(crate) const DNSMASQ_CONF: &str = "# answers for unroot.test only\nport=53\nuser=dnsmasq\nno-resolv\nno-hosts\naddress=/unroot.test/192.0.2.1\npid-file=/run/dnsmasq/dnsmasq.pid\n";

/// dnsmasq as [`dnsmasq`] makes it, with another config.
pub(crate) fn dnsmasq_with(conf: &str) -> HostImage {
    let mut i = HostImage::new(
        r#"[config]
Env = ["PATH=/usr/sbin:/usr/bin"]
Cmd = ["/usr/sbin/dnsmasq", "--keep-in-foreground", "--log-facility=-", "--conf-file=/etc/dnsmasq.conf"]
"#,
    );
    i.base();
    i.binary("/usr/sbin/dnsmasq");
    i.accounts(&["root", "dnsmasq", "nobody"], &["root", "nogroup"]);
    i.text("/etc/dnsmasq.conf", conf, 0o644, 0, 0);
    i.dir("/run/dnsmasq", 0o755, 0, 0);
    i
}

/// privoxy (HTTP proxy) with `listen-address :80`, started `--user privoxy`, its log
/// directory privoxy:adm 0750.
fn privoxy() -> HostImage {
    let mut i = HostImage::new(
        r#"[config]
Env = ["PATH=/usr/sbin:/usr/bin"]
Cmd = ["/usr/sbin/privoxy", "--no-daemon", "--user", "privoxy", "/etc/privoxy/config"]
"#,
    );
    i.base();
    i.binary("/usr/sbin/privoxy");
    i.accounts(&["root", "privoxy"], &["root", "nogroup", "adm"]);
    i.tree("/etc/privoxy");
    let config = host_text("/etc/privoxy/config", "privoxy")
        .replace("\nlisten-address  127.0.0.1:8118", "\nlisten-address  :80")
        .replace("\nlisten-address  [::1]:8118", "\n");
    i.text("/etc/privoxy/config", &config, 0o644, 0, 0);
    let p = crate::services::host_uid("privoxy");
    i.dir("/var/log/privoxy", 0o750, p, host_gid("adm"));
    i
}

/// icecast2 (streaming) with `<port>80</port>` in its XML config, which is root:icecast
/// 0640, and a `<changeowner>` to icecast2 (icecast refuses to run as root).
fn icecast() -> HostImage {
    let mut i = HostImage::new(
        r#"[config]
Env = ["PATH=/usr/bin"]
Cmd = ["/usr/bin/icecast2", "-c", "/etc/icecast2/icecast.xml"]
"#,
    );
    i.base();
    i.binary("/usr/bin/icecast2");
    i.tree("/usr/share/icecast2");
    i.accounts(&["root", "icecast2"], &["root", "icecast", "adm"]);
    i.path("/etc/icecast2");
    i.tree("/etc/icecast2/web");
    i.tree("/etc/icecast2/admin");
    let xml = host_text("/etc/icecast2/icecast.xml", "icecast2")
        .replace("<port>8000</port>", "<port>80</port>")
        .replace(
            "<!--\n        <changeowner>\n            <user>nobody</user>\n            <group>nogroup</group>\n        </changeowner>\n        -->",
            "<changeowner>\n            <user>icecast2</user>\n            <group>icecast</group>\n        </changeowner>",
        );
    assert!(
        xml.contains("<user>icecast2</user>"),
        "the config has changeowner"
    );
    i.text(
        "/etc/icecast2/icecast.xml",
        &xml,
        0o640,
        0,
        host_gid("icecast"),
    );
    let ice = crate::services::host_uid("icecast2");
    i.dir("/var/log/icecast2", 0o755, ice, host_gid("adm"));
    i
}

/// mini_httpd with `port=80`, `user=nobody`, a log file directly in /var/log and a pid
/// file in /var/run.
fn mini_httpd() -> HostImage {
    let mut i = HostImage::new(
        r#"[config]
Env = ["PATH=/usr/sbin:/usr/bin"]
Cmd = ["/usr/sbin/mini_httpd", "-D", "-C", "/etc/mini-httpd.conf"]
"#,
    );
    i.base();
    i.binary("/usr/sbin/mini_httpd");
    i.accounts(&["root", "nobody"], &["root", "nogroup"]);
    let conf = host_text("/etc/mini-httpd.conf", "mini-httpd").replace("host=localhost\n", "");
    i.text("/etc/mini-httpd.conf", &conf, 0o644, 0, 0);
    i.dir("/var/www", 0o755, 0, 0);
    i.dir("/var/www/html", 0o755, 0, 0);
    i.text(
        "/var/www/html/index.html",
        "served by mini_httpd\n",
        0o644,
        0,
        0,
    );
    i
}

/// webfsd, its port and user arguments (`-p 80 -u www-data -g www-data`), no
/// `ExposedPorts`.
fn webfsd() -> HostImage {
    let mut i = HostImage::new(
        r#"[config]
Env = ["PATH=/usr/bin"]
Cmd = ["/usr/bin/webfsd", "-F", "-p", "80", "-r", "/var/www/html", "-u", "www-data", "-g", "www-data"]
"#,
    );
    i.base();
    i.binary("/usr/bin/webfsd");
    i.accounts(&["root", "www-data"], &["root", "www-data"]);
    i.path("/etc/mime.types");
    i.dir("/var/www", 0o755, 0, 0);
    i.dir("/var/www/html", 0o755, 0, 0);
    i.text(
        "/var/www/html/index.html",
        "served by webfsd\n",
        0o644,
        0,
        0,
    );
    i
}

#[test]
fn dropbear_port_argument_and_a_host_key_only_root_may_read() {
    let s = Scratch::new();
    learn_and_prove("dropbear", dropbear(&s), Probe::Ssh, 8022);
}

#[test]
fn nsd_yaml_port_udp_and_tcp_user_and_keys() {
    learn_and_prove("nsd", nsd(), Probe::Dns("www.unroot.test"), 8053);
}

#[test]
fn dnsmasq_key_value_port_and_user() {
    learn_and_prove("dnsmasq", dnsmasq(), Probe::Dns("www.unroot.test"), 8053);
}

#[test]
fn privoxy_listen_address_and_its_log_directory() {
    learn_and_prove("privoxy", privoxy(), Probe::HttpProxy("Privoxy"), 8080);
}

#[test]
fn icecast_xml_port_and_a_config_only_its_group_may_read() {
    learn_and_prove("icecast", icecast(), Probe::Http("Icecast"), 8080);
}

#[test]
fn mini_httpd_key_value_port_and_a_log_in_var_log() {
    learn_and_prove(
        "mini_httpd",
        mini_httpd(),
        Probe::Http("served by mini_httpd"),
        8080,
    );
}

/// webfsd looks its own uid up in /etc/passwd: as its user it runs once its port and user
/// options are learned, but as an arbitrary UID it stops with `user unknown`. Learning
/// says so, with the program's own words, and writes nothing.
#[test]
fn webfsd_arguments_learned_but_an_arbitrary_uid_it_refuses_is_reported() {
    let s = Scratch::new();
    let layout = s.path("img");
    let src = format!("oci:{}:original", layout.display());
    crate::support::build(&webfsd().spec(), &src);
    let dest = format!("oci:{}:learned", layout.display());
    let out = s.unroot(&[
        "convert",
        "-q",
        "--no-recipes",
        "--learn",
        "--format",
        "json",
        &src,
        "--to",
        &dest,
    ]);
    assert_eq!(out.code, 5, "{}\n{}", out.stdout, out.stderr);
    let error = out.error_line();
    assert!(error.contains("nothing was written"), "{error}");
    let learning: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(learning["proven"], false);
    let kinds: Vec<String> = learning["knowledge"]["learned"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| format!("{} {}", l["change"]["kind"], l["change"]["option"]))
        .collect();
    for want in [r#""user_option" "-u""#, r#""user_option" "-g""#] {
        assert!(kinds.iter().any(|k| k == want), "{want}: {kinds:?}");
    }
    let runs = learning["verification"]["runs"].as_array().unwrap();
    assert_eq!(runs[0]["passed"], true, "as its user: {:#}", runs[0]);
    assert_eq!(runs[1]["passed"], false, "{:#}", runs[1]);
    let problems = learning["knowledge"]["problems"].to_string();
    assert!(problems.contains("user unknown"), "{problems}");
    // Nothing at the destination: the layout holds the original only.
    let index = crate::support::read_json(&layout.join("index.json"));
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1, "{index:#}");
}

/// Knot DNS with `listen: 0.0.0.0@53` (its own address@port syntax), `user: knot:knot`,
/// its config directory and file readable by its group only (root:knot 0750 / 0640), a
/// run directory it creates its control socket in, its zone in root:knot 0770 storage.
fn knot() -> HostImage {
    knot_with(KNOT_CONF)
}

/// The config of [`knot`].
pub(crate) const KNOT_CONF: &str = r#"server:
    rundir: "/run/knot"
    user: knot:knot
    listen: 0.0.0.0@53
log:
  - target: stderr
    any: info
database:
    storage: "/var/lib/knot"
template:
  - id: default
    storage: "/var/lib/knot"
    file: "%s.zone"
zone:
  - domain: unroot.test
"#;

/// Knot as [`knot`] makes it, with another config.
pub(crate) fn knot_with(conf: &str) -> HostImage {
    let mut i = HostImage::new(
        r#"[config]
Env = ["PATH=/usr/sbin:/usr/bin"]
Cmd = ["/usr/sbin/knotd", "-c", "/etc/knot/knot.conf"]
"#,
    );
    i.base();
    i.binary("/usr/sbin/knotd");
    i.accounts(&["root", "knot"], &["root", "knot"]);
    let k = host_gid("knot");
    i.dir("/etc/knot", 0o750, 0, k);
    i.text("/etc/knot/knot.conf", conf, 0o640, 0, k);
    i.dir("/var/lib/knot", 0o770, 0, k);
    i.text(
        "/var/lib/knot/unroot.test.zone",
        "$ORIGIN unroot.test.\n$TTL 300\n@ IN SOA ns hostmaster 1 3600 600 86400 300\n@ IN NS ns\nns IN A 192.0.2.53\nwww IN A 192.0.2.1\n",
        0o640,
        0,
        k,
    );
    let ku = crate::services::host_uid("knot");
    i.dir("/run/knot", 0o755, ku, k);
    i
}

#[test]
fn knot_address_at_port_and_a_config_only_its_group_may_read() {
    learn_and_prove("knot", knot(), Probe::Dns("www.unroot.test"), 8053);
}

/// A real Docker engine (Debian's dockerd) on a socket and data root of its own, with the
/// vfs storage driver; stopped by its pid and removed when dropped.
struct Docker {
    dir: tempfile::TempDir,
    child: std::process::Child,
}

impl Docker {
    fn start() -> Docker {
        let dir = tempfile::Builder::new()
            .prefix("unroot-docker-")
            .tempdir()
            .unwrap();
        let path = |p: &str| dir.path().join(p).to_str().unwrap().to_string();
        let log = std::fs::File::create(dir.path().join("dockerd.log")).unwrap();
        let child = std::process::Command::new("dockerd")
            .args([
                "--data-root",
                &path("root"),
                "--exec-root",
                &path("exec"),
                "--pidfile",
                &path("dockerd.pid"),
                "--host",
                &format!("unix://{}", path("docker.sock")),
                "--storage-driver",
                "vfs",
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("dockerd runs (./scripts/test installs docker.io and iptables)");
        let docker = Docker { dir, child };
        let deadline = Instant::now() + Duration::from_secs(60);
        while docker
            .sh("docker version --format '{{.Server.Version}}'")
            .code
            != 0
        {
            assert!(
                Instant::now() < deadline,
                "dockerd did not start: {}",
                std::fs::read_to_string(docker.dir.path().join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        docker
    }

    /// A shell command with `DOCKER_HOST` set to this engine.
    fn sh(&self, command: &str) -> crate::support::Output {
        let sock = self.dir.path().join("docker.sock");
        crate::support::Output::of(
            std::process::Command::new("sh")
                .args(["-c", command])
                .env("DOCKER_HOST", format!("unix://{}", sock.display()))
                .output()
                .unwrap(),
        )
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        let _ = self.sh("docker rm -f $(docker ps -aq) 2>/dev/null");
        // SAFETY: kill only sends a signal to the engine this test started.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

/// One engine at a time: each makes the default bridge (docker0) and its iptables chains.
static DOCKER_ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs the `--emit docker` lines of a conversion as printed (a `docker load` and a
/// `docker run`), under a real Docker engine of this test's own (only `DOCKER_HOST` names
/// it): the service must answer with its own protocol on the published port, as `user`.
fn under_docker(name: &str, emitted: &str, probe: Probe, port: u16, user: &str) {
    let lines: Vec<&str> = emitted
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 2, "{name}: a load and a run: {emitted}");
    assert!(lines[0].starts_with("docker load -i "), "{}", lines[0]);
    assert!(
        lines[1].contains(&format!(" -p {port}:{port}")),
        "{name}: publishes {port}: {}",
        lines[1]
    );
    let _one = DOCKER_ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let docker = Docker::start();
    let load = docker.sh(lines[0]);
    assert_eq!(load.code, 0, "{}: {}{}", lines[0], load.stdout, load.stderr);
    // Detached, so the test can ask it; the line is otherwise as printed.
    let run = lines[1].replacen(
        "docker run --rm",
        "docker run -d --rm --name unroot-learned",
        1,
    );
    assert_ne!(run, lines[1], "the printed line starts `docker run --rm`");
    let started = docker.sh(&run);
    assert_eq!(
        started.code, 0,
        "{run}: {}{}",
        started.stdout, started.stderr
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Err(e) = probe.ask_host(port) {
        let logs = docker.sh("docker logs unroot-learned");
        assert!(
            Instant::now() < deadline,
            "{name}: no answer on the published {port}: {e}\n{}{}",
            logs.stdout,
            logs.stderr
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let runs_as = docker.sh("docker inspect --format '{{.Config.User}}' unroot-learned");
    assert_eq!(runs_as.stdout.trim(), user, "{name}");
}

/// `convert --learn` straight to a docker archive: its `--emit docker` lines run as
/// printed, and the learned tinyproxy answers as a proxy on the published port.
#[test]
fn a_learned_image_runs_under_docker_as_its_emit_docker_lines_say() {
    let s = Scratch::new();
    let layout = s.path("img");
    let src = format!("oci:{}:original", layout.display());
    crate::support::build(&tinyproxy().spec(), &src);
    let archive = s.path("tinyproxy.tar");
    let out = s
        .unroot(&[
            "convert",
            "-q",
            "--no-recipes",
            "--learn",
            "--emit",
            "docker",
            &src,
            "--to",
            &format!(
                "docker-archive:{}:unroot-test/tinyproxy:learned",
                archive.display()
            ),
        ])
        .success();
    let user = format!(
        "{}:{}",
        crate::services::host_uid("tinyproxy"),
        host_gid("tinyproxy")
    );
    under_docker(
        "tinyproxy",
        &out.stdout,
        Probe::HttpProxy("tinyproxy"),
        8080,
        &user,
    );
}

/// chronyd sets the system clock, which needs CAP_SYS_TIME: no user namespace gives it,
/// even to its root. Learning says so after watching the original once, and does not loop.
#[test]
fn chrony_needs_a_capability_no_container_has_and_learning_says_so() {
    let s = Scratch::new();
    let mut i = HostImage::new(
        r#"[config]
Env = ["PATH=/usr/sbin:/usr/bin"]
Cmd = ["/usr/sbin/chronyd", "-d", "-f", "/etc/chrony/chrony.conf"]
ExposedPorts = ["123/udp"]
"#,
    );
    i.base();
    i.binary("/usr/sbin/chronyd");
    i.accounts(&["root", "_chrony"], &["root", "_chrony"]);
    i.dir("/etc/chrony", 0o755, 0, 0);
    i.text(
        "/etc/chrony/chrony.conf",
        "server 192.0.2.123 iburst\nport 123\nallow\nmakestep 1 3\ndriftfile /var/lib/chrony/chrony.drift\nuser _chrony\n",
        0o644,
        0,
        0,
    );
    let c = crate::services::host_uid("_chrony");
    i.dir("/var/lib/chrony", 0o755, c, c);
    i.dir("/run/chrony", 0o750, c, c);
    let src = format!("oci:{}:original", s.path("img").display());
    crate::support::build(&i.spec(), &src);
    let recipe = s.path("chrony.toml");
    let out = s.unroot(&[
        "learn",
        "--no-recipes",
        "-q",
        "--format",
        "json",
        "--write-recipe",
        recipe.to_str().unwrap(),
        &src,
    ]);
    assert_eq!(out.code, 5, "{}\n{}", out.stdout, out.stderr);
    let learning: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(learning["stopped"], "capability", "{learning:#}");
    assert_eq!(learning["proven"], false);
    assert_eq!(
        learning["rounds"].as_array().unwrap().len(),
        1,
        "the original ran once, nothing was tried: {learning:#}"
    );
    let capability: Vec<&serde_json::Value> = learning["knowledge"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["capability"] == true)
        .collect();
    assert_eq!(capability.len(), 1, "{learning:#}");
    let problem = capability[0]["problem"].as_str().unwrap();
    assert!(problem.contains("CAP_SYS_TIME"), "{problem}");
    let evidence = capability[0]["evidence"][0].as_str().unwrap();
    assert!(
        evidence.contains("chronyd") && evidence.contains("EPERM"),
        "{evidence}"
    );
    // The recipe is written for review even so: what was learned before it stopped.
    let text = std::fs::read_to_string(&recipe).unwrap();
    assert!(text.contains("name = \"learned-chronyd\""), "{text}");
    unroot::recipe::Recipe::parse(&text, "chrony.toml").unwrap();

    // In text, the same, said once.
    let out = s.unroot(&["learn", "-q", &src]);
    assert_eq!(out.code, 5);
    assert!(
        out.stdout
            .contains("the service needs a capability that no unprivileged container has"),
        "{}",
        out.stdout
    );
}

/// Learning runs the image: without root on the host, or without the runtime, it says so
/// in one sentence and exits with 3, before it reads anything.
#[test]
fn learning_where_it_cannot_run_says_why_in_one_sentence() {
    let s = Scratch::new();
    let src = s.build("img", "original", &crate::support::sample_spec());
    let out = s.unroot(&["learn", "-q", "--runtime", "no-such-runtime", &src]);
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.error_line()
            .contains("`no-such-runtime` is not installed"),
        "{}",
        out.stderr
    );
    // As an unprivileged user of this machine (a scratch it may read).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = crate::support::tool(
        "setpriv",
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "env",
            &format!("HOME={}", s.tmp().display()),
            &format!("TMPDIR={}", s.tmp().display()),
            env!("CARGO_BIN_EXE_unroot"),
            "learn",
            "-q",
            &src,
        ],
    );
    assert_eq!(
        as_nobody.code, 3,
        "{}\n{}",
        as_nobody.stdout, as_nobody.stderr
    );
    let error = as_nobody.error_line();
    assert!(
        error.contains("needs root on this machine: run it as root"),
        "{error}"
    );
    assert_eq!(as_nobody.stdout, "");
}
