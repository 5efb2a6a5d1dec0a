//! Paths a service writes at run time (pid files, temp, cache, run and lock directories,
//! logs), as its recipe and config say, and whether the runtime user can write them.

use super::{
    writable_by, Analyzer, Facts, Finding, Fixer, Location, MatchedRecipe, Rule, Severity,
};
use crate::layer::{ImagePath, Kind, MergedView};
use crate::recipe::Writable;
use crate::recipe::{config_lines, expand, is_stream, PathKind};

/// The rules of this analyzer.
pub static RULES: [Rule; 2] = [
    Rule {
        id: "UR301",
        name: "service-path-not-writable",
        severity: Severity::Error,
        summary: "The service writes a path its runtime user cannot write",
        help: "Pid files, temp and cache directories under root-owned places (`/var/run`, `/var/cache`) make the service fail at start as a non-root user. On a read-only root filesystem they also need a tmpfs or a volume.",
        fix: "`unroot convert` points it at /tmp or makes the directory `UID:0` and group-writable, as the service's recipe says; mount it writable",
        fixer: Fixer::Unroot,
        refs: &[],
    },
    Rule {
        id: "UR302",
        name: "log-file-on-root-filesystem",
        severity: Severity::Warning,
        summary: "The service logs to a file instead of stdout or stderr",
        help: "On a read-only root filesystem the service cannot write its log files, and logs in files are not collected by the container runtime. The official nginx image links its logs to /dev/stdout and /dev/stderr for this reason.",
        fix: "`unroot convert` points the directive at /dev/stdout or /dev/stderr, as the service's recipe says",
        fixer: Fixer::Unroot,
        refs: &[],
    },
];

/// Checks the runtime paths of the matched services.
pub struct RuntimePaths;

/// Every value a directive's group 1 takes in the service's config, in reading order.
pub fn directive_values(matched: &MatchedRecipe<'_>, regex: &regex::bytes::Regex) -> Vec<String> {
    let mut values = Vec::new();
    for file in &matched.files {
        if let Ok(text) = &file.text {
            for line in config_lines(text, matched.recipe.comment.as_deref()) {
                for cap in regex.captures_iter(line) {
                    values.push(expand(&String::from_utf8_lossy(&cap[1]), &matched.vars));
                }
            }
        }
    }
    values
}

/// The runtime-writable paths of a matched service, as its config (or the recipe's
/// default) names them: each with its recipe entry, the path, and the directory that must
/// be writable (the path itself, or the directory of a file).
pub fn service_paths<'r>(
    matched: &'r MatchedRecipe<'_>,
    view: &MergedView,
) -> Vec<(&'r Writable, ImagePath, ImagePath)> {
    let mut out = Vec::new();
    for w in &matched.recipe.writable {
        if w.when.as_ref().is_some_and(|p| !view.exists(p)) {
            continue;
        }
        let value = match (&w.path, &w.config) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(regex)) => directive_values(matched, regex)
                .into_iter()
                .next()
                .or_else(|| w.default.clone()),
            (None, None) => None,
        };
        let Some(value) = value.filter(|v| !v.is_empty() && !v.contains("${")) else {
            continue;
        };
        let path = image_path(matched, view, &value);
        if w.if_exists && !view.exists(&path) {
            continue;
        }
        let dir = match w.kind {
            PathKind::Dir => path.clone(),
            PathKind::File => path.parent().unwrap_or_default(),
        };
        out.push((w, path, dir));
    }
    out
}

/// An absolute path in the image for a config value (relative ones start at the base of
/// the config entry that exists).
fn image_path(matched: &MatchedRecipe<'_>, view: &MergedView, value: &str) -> ImagePath {
    if value.starts_with('/') {
        return ImagePath::new(value);
    }
    let base = matched
        .recipe
        .entries
        .iter()
        .find(|e| view.exists(&e.path))
        .map(|e| e.base.display())
        .unwrap_or_default();
    ImagePath::new(&format!("{base}/{value}"))
}

impl Analyzer for RuntimePaths {
    fn name(&self) -> &'static str {
        "runtime_paths"
    }

    fn rules(&self) -> &'static [Rule] {
        &RULES
    }

    fn run(&self, facts: &Facts<'_>, out: &mut Vec<Finding>) {
        let (uid, gid) = (facts.plan.identity.uid, facts.plan.identity.gid);
        let view = facts.view;
        for matched in facts.recipes {
            let name = &matched.recipe.name;
            for (w, path, dir) in service_paths(matched, view) {
                // /tmp is a tmpfs in the runtime contract: always writable.
                let tmp = ImagePath::new("/tmp");
                if dir != tmp && !dir.is_below(&tmp) && !writable_by(view, &dir, uid, gid) {
                    let owner = view
                        .resolve(&dir)
                        .ok()
                        .and_then(|r| view.get(&r).map(|n| (r, n)))
                        .map(|(r, n)| {
                            format!("`{r}` is {}:{} {:04o}", n.meta.uid, n.meta.gid, n.meta.mode)
                        })
                        .unwrap_or_else(|| format!("`{dir}` does not exist and cannot be created"));
                    let layer = view.get(&path).or_else(|| view.get(&dir)).map(|n| n.layer);
                    out.push(Finding::new(
                        &RULES[0],
                        Location::file(&path, layer, None),
                        format!(
                            "{name} writes its {} `{path}`; uid {uid} cannot ({owner})",
                            w.what
                        ),
                    ));
                }
            }
            for logs in &matched.recipe.logs {
                let mut values = logs
                    .config
                    .as_ref()
                    .map(|r| directive_values(matched, r))
                    .unwrap_or_default();
                if values.is_empty() {
                    values = logs.default.clone();
                }
                for value in values {
                    // What the recipe points logs at is a stream by definition (Redis's
                    // `logfile ""` is stdout).
                    if is_stream(&value)
                        || value.contains("${")
                        || logs.to.as_deref() == Some(value.as_str())
                    {
                        continue;
                    }
                    let path = image_path(matched, view, &value);
                    let Ok(resolved) = view.resolve(&path) else {
                        continue;
                    };
                    if is_stream(&resolved.display()) {
                        continue;
                    }
                    let node = view.get(&resolved);
                    let what = match node.map(|n| n.meta.kind) {
                        Some(Kind::File) => "is a regular file",
                        None => "does not exist yet (the service creates it)",
                        Some(_) => "is not linked to stdout or stderr",
                    };
                    out.push(Finding::new(
                        &RULES[1],
                        Location::file(&path, view.get(&path).map(|n| n.layer), None),
                        format!("{name} logs to `{path}`, which {what}"),
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

    /// Debian's nginx layout: pid in /run, temp in /var/lib/nginx, logs as files.
    const DEBIAN_NGINX: &str = r#"
[[layer]]
[[layer.entry]]
path = "/etc/passwd"
text = "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n"
[[layer.entry]]
path = "/usr/sbin/nginx"
size = 10
mode = 0o755
[[layer.entry]]
path = "/run"
type = "dir"
[[layer.entry]]
path = "/var/lib/nginx"
type = "dir"
[[layer.entry]]
path = "/var/log/nginx"
type = "dir"
mode = 0o755
[[layer.entry]]
path = "/var/log/nginx/access.log"
text = ""
[[layer.entry]]
path = "/etc/nginx/nginx.conf"
text = """user www-data;
pid /run/nginx.pid;
error_log /var/log/nginx/error.log;
http {
    access_log /var/log/nginx/access.log;
    access_log off;
}
"""
"#;

    /// The official image's layout: pid in /var/run, logs linked to the standard streams,
    /// temp dirs owned by nginx.
    const OFFICIAL_NGINX: &str = r#"
[config]
User = "101"
[[layer]]
[[layer.entry]]
path = "/etc/passwd"
text = "root:x:0:0:root:/root:/bin/sh\nnginx:x:101:101:nginx:/nonexistent:/bin/false\n"
[[layer.entry]]
path = "/usr/sbin/nginx"
size = 10
mode = 0o755
[[layer.entry]]
path = "/var/run"
type = "dir"
[[layer.entry]]
path = "/var/cache/nginx"
type = "dir"
uid = 101
gid = 0
mode = 0o770
[[layer.entry]]
path = "/var/log/nginx/access.log"
type = "symlink"
target = "/dev/stdout"
[[layer.entry]]
path = "/var/log/nginx/error.log"
type = "symlink"
target = "/dev/stderr"
[[layer.entry]]
path = "/etc/nginx/nginx.conf"
text = "pid /var/run/nginx.pid;\nerror_log  /var/log/nginx/error.log notice;\n"
"#;

    #[test]
    fn debian_layout() {
        assert_eq!(
            Analyzed::from_spec(DEBIAN_NGINX).run(&RuntimePaths),
            [
                "UR301 error /run/nginx.pid (layer 1): nginx writes its pid file `/run/nginx.pid`; uid 33 cannot (`/run` is 0:0 0755)",
                "UR301 error /var/lib/nginx (layer 1): nginx writes its temp files (Debian packages) `/var/lib/nginx`; uid 33 cannot (`/var/lib/nginx` is 0:0 0755)",
                "UR302 warning /var/log/nginx/access.log (layer 1): nginx logs to `/var/log/nginx/access.log`, which is a regular file",
                "UR302 warning /var/log/nginx/error.log: nginx logs to `/var/log/nginx/error.log`, which does not exist yet (the service creates it)",
            ]
        );
    }

    #[test]
    fn official_layout_only_the_pid_file() {
        assert_eq!(
            Analyzed::from_spec(OFFICIAL_NGINX).run(&RuntimePaths),
            ["UR301 error /var/run/nginx.pid (layer 1): nginx writes its pid file `/var/run/nginx.pid`; uid 101 cannot (`/var/run` is 0:0 0755)"]
        );
    }

    /// A Redis image already set up to run unprivileged: its pid file in /tmp, its data
    /// directory its user's, its log on stdout. `@DATA_UID@` and `@DATA_MODE@` are the data
    /// directory's owner and mode.
    const REDIS_READY: &str = r#"
[config]
User = "999:0"
[[layer]]
[[layer.entry]]
path = "/etc/passwd"
text = "root:x:0:0:root:/root:/bin/sh\nredis:x:999:999::/data:/bin/false\n"
[[layer.entry]]
path = "/usr/bin/redis-server"
size = 10
mode = 0o755
[[layer.entry]]
path = "/tmp"
type = "dir"
mode = 0o1777
[[layer.entry]]
path = "/data"
type = "dir"
uid = @DATA_UID@
gid = 0
mode = @DATA_MODE@
[[layer.entry]]
path = "/etc/redis/redis.conf"
text = "pidfile /tmp/redis.pid\ndir /data\nlogfile \"\"\n"
"#;

    #[test]
    fn a_service_set_up_for_its_user_reports_nothing() {
        // The analyzer has a service to look at, and finds each of its paths fine...
        let ready = REDIS_READY
            .replace("@DATA_UID@", "999")
            .replace("@DATA_MODE@", "0o775");
        assert_eq!(
            Analyzed::from_spec(&ready).run(&RuntimePaths),
            Vec::<String>::new()
        );
        // ...and the same image with its data directory left to root is caught.
        let root_data = REDIS_READY
            .replace("@DATA_UID@", "0")
            .replace("@DATA_MODE@", "0o755");
        assert_eq!(
            Analyzed::from_spec(&root_data).run(&RuntimePaths),
            ["UR301 error /data (layer 1): redis writes its data directory (RDB and AOF files) `/data`; uid 999 cannot (`/data` is 0:0 0755)"]
        );
    }
}
