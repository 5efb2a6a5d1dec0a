//! Config files no recipe knows: small text files under `/etc` (and those the command
//! names) whose directives set a privileged port, or a pid file, socket or log in a place
//! the runtime user cannot write (lighttpd's `server.port = 80`, `server.pid-file =
//! "/run/lighttpd.pid"`). unroot does not change them: they are reported, with file and
//! line, as what remains; whether the service reads the file, only its user knows.

use std::sync::LazyLock;

use regex::Regex;

use super::{writable_by, Analyzer, Facts, Finding, Fixer, Location, Rule, Severity};
use crate::layer::{Content, ImagePath, Kind, Meta};
use crate::model::ports::UNPRIVILEGED_START;

/// The rules of this analyzer.
pub static RULES: [Rule; 2] = [
    Rule {
        id: "UR207",
        name: "privileged-port-in-config",
        severity: Severity::Warning,
        summary: "A config file no recipe knows sets a port below 1024",
        help: "If the service reads this file, it binds the port and fails as a non-root user; unroot moves `ExposedPorts`, variables and arguments, but edits config files only through a recipe.",
        fix: "if the service reads it, set the port the port map gives there, or add a recipe (`unroot recipes`)",
        fixer: Fixer::User,
        refs: &[],
    },
    Rule {
        id: "UR208",
        name: "root-path-in-config",
        severity: Severity::Warning,
        summary: "A config file no recipe knows puts a pid file, socket or log where the runtime user cannot write",
        help: "If the service reads this file, it fails at start as a non-root user (and on a read-only root filesystem).",
        fix: "if the service reads it, point the directive at /tmp (or stdout/stderr for logs), or add a recipe",
        fixer: Fixer::User,
        refs: &[],
    },
];

/// The largest config file looked at.
pub const CONFIG_CAP: u64 = 64 * 1024;

/// The most bytes of such files a scan keeps in memory per layer: per layer, so what a
/// layer's scan keeps depends on that layer alone (and can be cached for the next image).
pub const CONFIG_BUDGET: u64 = 16 << 20;

/// Files and directories under `/etc` that hold no service's directives: the system's
/// own, the package manager's, and boot-time scripts.
const NOT_SERVICE_CONFIG: &[&str] = &[
    "/etc/apt",
    "/etc/dpkg",
    "/etc/init.d",
    "/etc/rc0.d",
    "/etc/rc1.d",
    "/etc/rc2.d",
    "/etc/rc3.d",
    "/etc/rc4.d",
    "/etc/rc5.d",
    "/etc/rc6.d",
    "/etc/rcS.d",
    "/etc/logrotate.d",
    "/etc/systemd",
    "/etc/pam.d",
    "/etc/security",
    "/etc/sgml",
    "/etc/xml",
    "/etc/fonts",
    "/etc/X11",
    "/etc/ld.so.conf.d",
    "/etc/sysctl.d",
    "/etc/modprobe.d",
    "/etc/udev",
    "/etc/services",
    "/etc/protocols",
    "/etc/passwd",
    "/etc/group",
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/mime.types",
    "/etc/ssh/ssh_config",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/alternatives",
    "/etc/ld.so.cache",
];

/// Whether a file is one this analyzer reads (so the scan keeps its text).
pub fn is_candidate(path: &ImagePath, meta: &Meta) -> bool {
    let etc = ImagePath::new("/etc");
    meta.kind == Kind::File
        && meta.size <= CONFIG_CAP
        && path.is_below(&etc)
        && !NOT_SERVICE_CONFIG.iter().any(|n| {
            let n = ImagePath::new(n);
            *path == n || path.is_below(&n)
        })
}

/// A directive found in a config file.
pub struct Directive {
    /// The file.
    pub path: ImagePath,
    /// Its layer.
    pub layer: usize,
    /// The line (1-based).
    pub line: usize,
    /// The line as written, trimmed.
    pub text: String,
    /// What it sets.
    pub value: Value,
}

/// What a directive sets.
pub enum Value {
    /// A listen port.
    Port(u16),
    /// A pid file, socket or log file.
    Path(ImagePath),
}

/// `key = value`, `key: value` or `key value`, with the value a port or `HOST:PORT`.
static PORT_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"^\s*(?P<key>[A-Za-z_][\w.\-]*)\s*(?:=|:|\s)\s*["']?(?:(?:[0-9.]+|\[[0-9A-Fa-f:]*\]|\*|localhost)?:)?(?P<port>\d{1,5})["']?\s*;?\s*$"#,
    )
    .expect("a valid regex")
});

/// `key = "/absolute/path"` and the like.
static PATH_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"^\s*(?P<key>[A-Za-z_][\w.\-]*)\s*(?:=|:|\s)\s*["']?(?P<path>/[^"'\s;]+)["']?\s*;?\s*$"#,
    )
    .expect("a valid regex")
});

/// The directives of the config files the recipes do not cover.
pub fn directives(facts: &Facts<'_>) -> Vec<Directive> {
    let covered: Vec<&ImagePath> = facts
        .recipes
        .iter()
        .flat_map(|m| m.files.iter().flat_map(|f| [&f.path, &f.resolved]))
        .collect();
    let mut out = Vec::new();
    for (path, node) in facts.view.iter() {
        let Some(Content::Bytes(text)) = &node.content else {
            continue;
        };
        if !is_candidate(&path, &node.meta) || covered.contains(&&path) || text.contains(&0) {
            continue;
        }
        let Ok(text) = std::str::from_utf8(text) else {
            continue;
        };
        // A script sets variables for its commands, not a service's directives.
        if text.starts_with("#!") {
            continue;
        }
        for (n, line) in text.lines().enumerate() {
            let trimmed = line.trim();
            if trimmed.is_empty()
                || trimmed.starts_with(['#', ';', '!'])
                || trimmed.starts_with("//")
            {
                continue;
            }
            let value = if let Some(cap) = PORT_LINE.captures(line) {
                let key = cap["key"].to_ascii_lowercase();
                let port: Option<u16> = cap["port"].parse().ok();
                match port {
                    Some(p) if key.contains("port") || key == "listen" || key == "bind" => {
                        Some(Value::Port(p))
                    }
                    _ => None,
                }
            } else if let Some(cap) = PATH_LINE.captures(line) {
                (runtime_key(&cap["key"]) && !cap["path"].contains('$'))
                    .then(|| Value::Path(ImagePath::new(&cap["path"])))
            } else {
                None
            };
            if let Some(value) = value {
                out.push(Directive {
                    path: path.clone(),
                    layer: node.layer,
                    line: n + 1,
                    text: trimmed.to_string(),
                    value,
                });
            }
        }
    }
    out
}

/// Whether a directive's name says it is a pid file, a socket or a log file:
/// `pid`, `pidfile`, `server.pid-file`, `PIDFile`, `unixsocket`, `socket`, `log`,
/// `logfile`, `error_log`, `server.errorlog`, `accesslog` (not `catalog`).
fn runtime_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.split(['.', '_', '-']).any(|part| {
        part.contains("pid")
            || part.contains("sock")
            || matches!(part, "log" | "logs" | "logfile" | "logdir" | "logpath")
            || part.ends_with("errorlog")
            || part.ends_with("accesslog")
    })
}

/// Finds privileged ports and unwritable runtime paths in config files no recipe knows.
pub struct ServiceConfig;

impl Analyzer for ServiceConfig {
    fn name(&self) -> &'static str {
        "service_config"
    }

    fn rules(&self) -> &'static [Rule] {
        &RULES
    }

    fn run(&self, facts: &Facts<'_>, out: &mut Vec<Finding>) {
        let (uid, gid) = (facts.plan.identity.uid, facts.plan.identity.gid);
        let tmp = ImagePath::new("/tmp");
        for d in directives(facts) {
            let at = Location::file(&d.path, Some(d.layer), Some(d.line));
            match &d.value {
                Value::Port(p) if *p > 0 && *p < UNPRIVILEGED_START => {
                    out.push(Finding::new(
                        &RULES[0],
                        at,
                        format!("`{}` (port {p})", d.text),
                    ));
                }
                Value::Port(_) => {}
                Value::Path(target) => {
                    let stream = ["/dev", "/proc"]
                        .iter()
                        .any(|s| target.is_below(&ImagePath::new(s)));
                    let Some(dir) = target.parent() else {
                        continue;
                    };
                    let made_writable = facts
                        .plan
                        .writable
                        .iter()
                        .any(|w| dir == *w || dir.is_below(w));
                    if stream
                        || dir == tmp
                        || dir.is_below(&tmp)
                        || made_writable
                        || writable_by(facts.view, &dir, uid, gid)
                    {
                        continue;
                    }
                    out.push(Finding::new(
                        &RULES[1],
                        at,
                        format!("`{}`: uid {uid} cannot write in `{dir}`", d.text),
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Analyzed;

    /// lighttpd as Debian packages it (no recipe knows it), and files that look alike but
    /// are no service's.
    const LIGHTTPD: &str = r#"
[config]
ExposedPorts = ["80/tcp"]
Cmd = ["/usr/sbin/lighttpd", "-D", "-f", "/etc/lighttpd/lighttpd.conf"]

[[layer]]
[[layer.entry]]
path = "/etc/passwd"
text = "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n"
[[layer.entry]]
path = "/run"
type = "dir"
[[layer.entry]]
path = "/var/log/lighttpd"
type = "dir"
uid = 33
gid = 33
mode = 0o750
[[layer.entry]]
path = "/etc/lighttpd/lighttpd.conf"
text = """server.document-root        = "/var/www/html"
server.pid-file             = "/run/lighttpd.pid"
server.errorlog             = "/var/log/lighttpd/error.log"
server.username             = "www-data"
# server.port               = 81
server.port                 = 80
server.bind                 = "127.0.0.1"
mimetype.assign             = ( ".html" => "text/html" )
"""
[[layer.entry]]
path = "/etc/services"
text = "http            80/tcp          www\nport 22\n"
[[layer.entry]]
path = "/etc/app/settings.ini"
text = "[server]\nport = 8080\nlog_file = /tmp/app.log\n"
"#;

    #[test]
    fn findings_point_at_the_file_and_line() {
        let analyzed = Analyzed::from_spec(LIGHTTPD);
        assert_eq!(
            analyzed.run(&ServiceConfig),
            [
                "UR207 warning /etc/lighttpd/lighttpd.conf:6 (layer 1): `server.port                 = 80` (port 80)",
                // The log directory is www-data's, the service user; /run is root's.
                "UR208 warning /etc/lighttpd/lighttpd.conf:2 (layer 1): `server.pid-file             = \"/run/lighttpd.pid\"`: uid 33 cannot write in `/run`",
            ]
        );
        // The exposed port that moves is the one the file sets: the error says where.
        let ports = analyzed.run(&crate::analyze::ports::Ports);
        assert!(
            ports.iter().any(|l| l.starts_with("UR206 ")
                && l.ends_with(
                    "; set at `server.port                 = 80` at /etc/lighttpd/lighttpd.conf:6"
                )),
            "{ports:#?}"
        );
    }
}
