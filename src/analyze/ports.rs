//! Privileged ports: `ExposedPorts` and `*PORT` variables below 1024, the listen ports of
//! `Entrypoint` and `Cmd`, and the listen directives of the services the recipes know,
//! following their includes; and exposed ports whose move would not reach the service.

use super::{Analyzer, Facts, Finding, Fixer, Location, Rule, Severity};
use std::collections::BTreeSet;

use crate::model::command::port_args;
use crate::model::ports::{is_port_variable, UNPRIVILEGED_START};
use crate::plan::scripts::command_script;
use crate::recipe::{config_lines, ConfigProblem, PortPattern};
use crate::write::image::recorded_port_moves;

/// The rules of this analyzer.
pub static RULES: [Rule; 6] = [
    Rule {
        id: "UR201",
        name: "privileged-exposed-port",
        severity: Severity::Error,
        summary: "The image exposes a port below 1024",
        help: "A non-root process cannot bind ports below 1024 where `net.ipv4.ip_unprivileged_port_start` is 1024 (CRI-O, OpenShift, rootless podman). The exposed port documents where the service listens; it must move with the service.",
        fix: "`unroot convert` moves it by the port map (80->8080, 443->8443, else +8000; `--port FROM:TO`)",
        fixer: Fixer::Unroot,
        refs: &[],
    },
    Rule {
        id: "UR202",
        name: "privileged-port-variable",
        severity: Severity::Error,
        summary: "An environment variable sets a port below 1024",
        help: "Services that take their port from `PORT`, `HTTP_PORT` and the like will try to bind a privileged port and fail as a non-root user.",
        fix: "`unroot convert` moves the value by the port map",
        fixer: Fixer::Unroot,
        refs: &[],
    },
    Rule {
        id: "UR203",
        name: "privileged-listen-directive",
        severity: Severity::Error,
        summary: "A service's config listens on a port below 1024",
        help: "The service will fail to bind this port as a non-root user where `ip_unprivileged_port_start` is 1024; config edits by `sed` break silently when the file changes, which is why unroot reads the directive itself.",
        fix: "`unroot convert` moves it by the port map, through the service's recipe",
        fixer: Fixer::Unroot,
        refs: &[],
    },
    Rule {
        id: "UR204",
        name: "unreadable-config",
        severity: Severity::Warning,
        summary: "A service's config file could not be checked",
        help: "The file is too large, binary, behind a symlink loop, or outside the files unroot keeps; ports and paths in it are not known.",
        fix: "check the file by hand",
        fixer: Fixer::User,
        refs: &[],
    },
    Rule {
        id: "UR205",
        name: "privileged-port-argument",
        severity: Severity::Error,
        summary: "The command line makes the service listen on a port below 1024",
        help: "A port in `Entrypoint` or `Cmd` (`--port 80`, `-b 0.0.0.0:80`, `-p 80`, an exposed port given alone, also inside `sh -c`) is where the process binds; as a non-root user it fails there.",
        fix: "`unroot convert` moves it by the port map (80->8080, 443->8443, else +8000; `--port FROM:TO`)",
        fixer: Fixer::Unroot,
        refs: &[],
    },
    Rule {
        id: "UR206",
        name: "port-set-elsewhere",
        severity: Severity::Error,
        summary: "An exposed port moves, but nothing unroot changes moves the service",
        help: "`ExposedPorts` only documents the port: no port variable, command-line argument or recipe directive that unroot changes sets it, so the service most likely still binds the privileged port (from a config file no recipe knows, or a default compiled in) and fails as a non-root user.",
        fix: "make the service listen on the new port: set it in its config file or command line (e.g. a `--port` argument in `Cmd`), or add a recipe (`unroot recipes`); `--port FROM:TO` picks the new port",
        fixer: Fixer::User,
        refs: &[],
    },
];

/// Finds privileged ports.
pub struct Ports;

impl Analyzer for Ports {
    fn name(&self) -> &'static str {
        "ports"
    }

    fn rules(&self) -> &'static [Rule] {
        &RULES
    }

    fn run(&self, facts: &Facts<'_>, out: &mut Vec<Finding>) {
        for key in facts.config.exposed_ports() {
            let port = key.split('/').next().and_then(|p| p.parse::<u16>().ok());
            if let Some(p) = port.filter(|p| *p < UNPRIVILEGED_START) {
                out.push(Finding::new(
                    &RULES[0],
                    Location::config("ExposedPorts"),
                    format!("`{key}` is below 1024 (port {p})"),
                ));
            }
        }
        let exposed: Vec<u16> = facts
            .config
            .exposed_ports()
            .iter()
            .filter_map(|k| k.split('/').next()?.parse().ok())
            .collect();
        // Every port something in the image sets for the service to listen on.
        let mut set: BTreeSet<u16> = BTreeSet::new();
        for (field, args) in [
            ("Entrypoint", facts.config.entrypoint()),
            ("Cmd", facts.config.cmd()),
        ] {
            for found in port_args(&args, &exposed) {
                set.insert(found.port);
                if found.port < UNPRIVILEGED_START {
                    out.push(Finding::new(
                        &RULES[4],
                        Location::config(&format!("{field}[{}]", found.index)),
                        format!("`{}` listens on port {}", found.text, found.port),
                    ));
                }
            }
        }
        if let Some(script) = command_script(facts.view, facts.config, &exposed, |_| None) {
            for m in &script.moves {
                set.insert(m.from);
                if m.from < UNPRIVILEGED_START {
                    out.push(Finding::new(
                        &RULES[4],
                        Location::file(&script.path, Some(script.layer), Some(m.line)),
                        format!(
                            "the command's script listens on port {}: `{}`",
                            m.from, m.before
                        ),
                    ));
                }
            }
        }
        for var in facts.config.env() {
            if let Some((k, v)) = var.split_once('=') {
                if is_port_variable(k) {
                    if let Ok(p) = v.trim().parse::<u16>() {
                        set.insert(p);
                        if p > 0 && p < UNPRIVILEGED_START {
                            out.push(Finding::new(
                                &RULES[1],
                                Location::config("Env"),
                                format!("`{var}` sets port {p}"),
                            ));
                        }
                    }
                }
            }
        }
        for matched in facts.recipes {
            let recipe = matched.recipe;
            // The config's files, with the directives that apply to them.
            let config: Vec<&PortPattern> =
                recipe.ports.iter().filter(|p| p.files.is_none()).collect();
            for file in &matched.files {
                let text = match &file.text {
                    Ok(t) => t,
                    Err(problem) => {
                        let why = match problem {
                            ConfigProblem::TooLarge => "it is larger than 1 MiB",
                            ConfigProblem::Binary => "it is not a text file",
                            ConfigProblem::Loop => "its path is a symlink loop",
                            ConfigProblem::NotCaptured => {
                                "it is outside the files unroot keeps for this service"
                            }
                        };
                        out.push(Finding::new(
                            &RULES[3],
                            Location::file(&file.path, file.layer, None),
                            format!("{} config not checked: {why}", recipe.name),
                        ));
                        continue;
                    }
                };
                let via = if file.path == file.resolved {
                    String::new()
                } else {
                    format!(" (included as `{}`)", file.path)
                };
                let place = (&file.resolved, file.layer);
                directive_ports(recipe, &config, text, place, &via, &mut set, out);
            }
            // The other files a directive names (an entrypoint script, a learned file):
            // the ports they set count as the service's, the findings stay the config's.
            let mut quiet = Vec::new();
            for pattern in recipe.ports.iter().filter(|p| p.files.is_some()) {
                let globs = pattern.files.as_deref().unwrap_or_default();
                for path in crate::recipe::edit::files_matching(facts.view, globs) {
                    let Some(node) = facts.view.get(&path) else {
                        continue;
                    };
                    let Some(crate::layer::Content::Bytes(text)) = &node.content else {
                        continue;
                    };
                    let place = (&path, Some(node.layer));
                    directive_ports(recipe, &[pattern], text, place, "", &mut set, &mut quiet);
                }
            }
        }
        unreached_moves(facts, &set, out);
    }
}

/// The ports `patterns` of `recipe` find in `text` (the file at `place`): each is set for
/// the service, and a privileged one is a finding (UR203) at its line.
fn directive_ports(
    recipe: &crate::recipe::Recipe,
    patterns: &[&PortPattern],
    text: &[u8],
    (path, layer): (&crate::layer::ImagePath, Option<usize>),
    via: &str,
    set: &mut BTreeSet<u16>,
    out: &mut Vec<Finding>,
) {
    for (n, line) in config_lines(text, recipe.comment.as_deref()).enumerate() {
        for pattern in patterns {
            for cap in pattern.regex.captures_iter(line) {
                let port = std::str::from_utf8(&cap["port"])
                    .ok()
                    .and_then(|p| p.parse::<u32>().ok());
                if let Some(p) = port.and_then(|p| u16::try_from(p).ok()) {
                    set.insert(p);
                }
                if let Some(p) = port.filter(|p| *p > 0 && *p < u32::from(UNPRIVILEGED_START)) {
                    out.push(Finding::new(
                        &RULES[2],
                        Location::file(path, layer, Some(n + 1)),
                        format!(
                            "{} `{}` on port {p}: `{}`{via}",
                            recipe.name,
                            pattern.directive,
                            String::from_utf8_lossy(line).trim()
                        ),
                    ));
                }
            }
        }
    }
}

/// UR206: ports that a conversion moves (or, in a converted image, moved) in
/// `ExposedPorts` while nothing moves the service with them. Before conversion, a move
/// reaches the service when the plan changes what sets the port; in an image unroot
/// converted (the moves are in its history), when something in it sets the new port.
fn unreached_moves(facts: &Facts<'_>, set: &BTreeSet<u16>, out: &mut Vec<Finding>) {
    let recorded: Vec<(u16, u16)> = facts
        .config
        .history_comments()
        .iter()
        .flat_map(|c| recorded_port_moves(c))
        .collect();
    let unreached: Vec<(u16, u16)> = if recorded.is_empty() {
        (facts.plan.port_moves.iter().copied())
            .filter(|(from, _)| !facts.plan.listen_moves.contains(from))
            .collect()
    } else {
        recorded
            .into_iter()
            .filter(|(_, to)| !set.contains(to))
            .collect()
    };
    if unreached.is_empty() {
        return;
    }
    let directives = super::service_config::directives(facts);
    for (from, to) in unreached {
        // Where a config file no recipe knows sets it, say so.
        let seen: Vec<String> = directives
            .iter()
            .filter(|d| matches!(d.value, super::service_config::Value::Port(p) if p == from))
            .map(|d| format!("`{}` at {}:{}", d.text, d.path, d.line))
            .collect();
        let hint = if seen.is_empty() {
            String::new()
        } else {
            format!("; set at {}", seen.join(", "))
        };
        out.push(Finding::new(
            &RULES[5],
            Location::config("ExposedPorts"),
            format!(
                "port {from} moves to {to} in `ExposedPorts`, but no port variable, argument or recipe directive sets the service's port: it still listens on {from} unless its config changes{hint}"
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{Analyzed, CLEAN};

    /// nginx as the official image lays it out, plus Debian-style sites-enabled symlinks,
    /// a commented-out listen, a huge file, a binary one and a non-UTF-8 one.
    const NGINX: &str = r#"
[config]
Env = ["PORT=80", "HTTPS_PORT=443", "METRICS_PORT=9113", "SUPPORT=80"]
ExposedPorts = ["80/tcp", "443/tcp", "9113/tcp", "53/udp"]

[[layer]]
[[layer.entry]]
path = "/usr/sbin/nginx"
size = 10
mode = 0o755
[[layer.entry]]
path = "/etc/nginx/nginx.conf"
text = """user  nginx;
pid        /var/run/nginx.pid;
http {
    include       /etc/nginx/mime.types;
    include /etc/nginx/conf.d/*.conf;
    include sites-enabled/*;
    include huge.conf;
    include blob.bin;
}
"""
[[layer.entry]]
path = "/etc/nginx/mime.types"
text = "types { text/html html; }\n"
[[layer.entry]]
path = "/etc/nginx/conf.d/default.conf"
text = """server {
    listen       80;
    listen  [::]:80;
    # listen 81;
    listen 127.0.0.1:8080 default_server;
    listen 443 ssl http2;
}
"""
[[layer.entry]]
path = "/etc/nginx/sites-available/legacy"
text = "server { listen 8443 ssl; listen 70; }\n"
[[layer.entry]]
path = "/etc/nginx/sites-enabled/legacy"
type = "symlink"
target = "/etc/nginx/sites-available/legacy"
[[layer.entry]]
path = "/etc/nginx/huge.conf"
size = 2000000
[[layer.entry]]
path = "/etc/nginx/blob.bin"
text = "\u0000\u0001binary"

[[layer]]
[[layer.entry]]
path = "/etc/nginx/conf.d/latin1.conf"
base64 = "IyBjYWbpCnNlcnZlciB7IGxpc3RlbiAyMTsgfQo="  # Latin-1, not UTF-8
"#;

    #[test]
    fn findings() {
        let lines = Analyzed::from_spec(NGINX).run(&Ports);
        assert_eq!(
            lines,
            [
                "UR201 error config ExposedPorts: `443/tcp` is below 1024 (port 443)",
                "UR201 error config ExposedPorts: `53/udp` is below 1024 (port 53)",
                "UR201 error config ExposedPorts: `80/tcp` is below 1024 (port 80)",
                "UR202 error config Env: `HTTPS_PORT=443` sets port 443",
                "UR202 error config Env: `PORT=80` sets port 80",
                "UR203 error /etc/nginx/conf.d/default.conf:2 (layer 1): nginx `listen` on port 80: `listen       80;`",
                "UR203 error /etc/nginx/conf.d/default.conf:3 (layer 1): nginx `listen` on port 80: `listen  [::]:80;`",
                "UR203 error /etc/nginx/conf.d/default.conf:6 (layer 1): nginx `listen` on port 443: `listen 443 ssl http2;`",
                "UR203 error /etc/nginx/conf.d/latin1.conf:2 (layer 2): nginx `listen` on port 21: `server { listen 21; }`",
                "UR203 error /etc/nginx/sites-available/legacy:1 (layer 1): nginx `listen` on port 70: `server { listen 8443 ssl; listen 70; }` (included as `/etc/nginx/sites-enabled/legacy`)",
                // Nothing nginx's recipe or the config moves sets port 53.
                "UR206 error config ExposedPorts: port 53 moves to 8053 in `ExposedPorts`, but no port variable, argument or recipe directive sets the service's port: it still listens on 53 unless its config changes",
                "UR204 warning /etc/nginx/blob.bin (layer 1): nginx config not checked: it is not a text file",
                "UR204 warning /etc/nginx/huge.conf (layer 1): nginx config not checked: it is larger than 1 MiB",
            ]
        );
    }

    /// A service without a recipe that takes its port on the command line (one exposed
    /// port), and another exposed port nothing sets.
    const GUNICORN: &str = r#"
[config]
ExposedPorts = ["80/tcp", "25/tcp", "8000/tcp"]
Entrypoint = ["/usr/bin/tini", "--"]
Cmd = ["/bin/sh", "-c", "exec gunicorn -b 0.0.0.0:80 --workers 4 --timeout 80 app:app"]

[[layer]]
[[layer.entry]]
path = "/usr/bin/tini"
size = 10
mode = 0o755
"#;

    #[test]
    fn command_line_ports_and_ports_nothing_sets() {
        let analyzed = Analyzed::from_spec(GUNICORN);
        assert_eq!(
            analyzed.run(&Ports),
            [
                "UR201 error config ExposedPorts: `25/tcp` is below 1024 (port 25)",
                "UR201 error config ExposedPorts: `80/tcp` is below 1024 (port 80)",
                "UR205 error config Cmd[2]: `-b 0.0.0.0:80` listens on port 80",
                "UR206 error config ExposedPorts: port 25 moves to 8025 in `ExposedPorts`, but no port variable, argument or recipe directive sets the service's port: it still listens on 25 unless its config changes",
            ]
        );
        // The plan moves the argument in place, and says where.
        let plan = &analyzed.plan;
        assert_eq!(
            plan.cmd.as_deref(),
            Some(
                &[
                    "/bin/sh".to_string(),
                    "-c".into(),
                    "exec gunicorn -b 0.0.0.0:8080 --workers 4 --timeout 80 app:app".into()
                ][..]
            )
        );
        assert_eq!(plan.entrypoint, None);
        let m = &plan.arg_moves[..];
        assert_eq!(m.len(), 1);
        assert_eq!(
            (m[0].location.as_str(), m[0].from, m[0].to),
            ("config.Cmd[2]", 80, 8080)
        );
        assert_eq!(plan.port_moves, [(25, 8025), (80, 8080)]);
        assert_eq!(plan.listen_moves.iter().copied().collect::<Vec<_>>(), [80]);
    }

    #[test]
    fn clean_image_reports_nothing() {
        assert_eq!(Analyzed::from_spec(CLEAN).run(&Ports), Vec::<String>::new());
    }
}
