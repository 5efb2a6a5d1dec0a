//! The human-readable report: findings grouped by severity and rule, what the conversion
//! does, and the runtime contract.

use std::fmt::Write as _;

use super::Report;
use crate::analyze::Severity;
use crate::model::human_bytes;

/// The variables of two `Env` lists (JSON arrays of `NAME=VALUE`) that differ: name, value
/// before, value after, in the order they first appear.
fn env_changes(
    before: &serde_json::Value,
    after: &serde_json::Value,
) -> Vec<(String, Option<String>, Option<String>)> {
    let pairs = |v: &serde_json::Value| -> Vec<(String, String)> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_str())
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (e.to_string(), String::new()),
            })
            .collect()
    };
    let (b, a) = (pairs(before), pairs(after));
    let get = |list: &[(String, String)], k: &str| {
        list.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    };
    let mut names: Vec<String> = Vec::new();
    for (k, _) in b.iter().chain(&a) {
        if !names.contains(k) {
            names.push(k.clone());
        }
    }
    names
        .into_iter()
        .filter_map(|k| {
            let (x, y) = (get(&b, &k), get(&a, &k));
            (x != y).then_some((k, x, y))
        })
        .collect()
}

/// Renders a report as text.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    match &report.destination {
        None => {
            let _ = writeln!(
                out,
                "analyzed {} ({})",
                report.image.location, report.image.digest
            );
        }
        Some(d) => {
            let (verb, pad) = verb(d.written);
            let _ = writeln!(
                out,
                "{verb} {} ({})",
                report.image.location, report.image.digest
            );
            let _ = writeln!(out, "{pad}to {} ({})", d.location, d.digest);
            for v in d.verified.iter().flatten() {
                let _ = writeln!(out, "verified {v}");
            }
            match &d.new_layer {
                Some(l) => {
                    let _ = writeln!(
                        out,
                        "new layer {} ({}, {} entries, {} of file content)",
                        l.digest,
                        human_bytes(l.size),
                        l.entries,
                        human_bytes(l.content_bytes)
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "new layer none (no file changes; only the config changed)"
                    );
                }
            }
        }
    }
    if let Some(p) = &report.image.platform {
        let _ = writeln!(out, "platform  {p}");
    }
    if report.destination.is_some() && !report.findings.is_empty() {
        let _ = writeln!(
            out,
            "\nWHAT REMAINS in the converted image (unroot does not change these)"
        );
    }
    for severity in [Severity::Error, Severity::Warning, Severity::Info] {
        let findings: Vec<_> = report
            .findings
            .iter()
            .filter(|f| f.severity == severity)
            .collect();
        if findings.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{}", severity.name().to_uppercase());
        let mut i = 0;
        while i < findings.len() {
            let rule = findings[i].id;
            let group: Vec<_> = findings[i..].iter().take_while(|f| f.id == rule).collect();
            let first = group[0];
            // What the analyzers no longer find in the image as `convert` writes it.
            let fixed = group
                .iter()
                .filter(|f| f.fixed_by_convert == Some(true))
                .count();
            let who = match fixed {
                0 => String::new(),
                n if n == group.len() => " [unroot convert fixes this]".to_string(),
                n => format!(" [unroot convert fixes {n} of {}]", group.len()),
            };
            let _ = writeln!(out, "  {} {}: {}{who}", first.id, first.name, first.summary);
            for f in &group {
                let _ = writeln!(out, "      {}: {}", f.location, f.message);
            }
            let _ = writeln!(out, "      fix: {}", first.fix);
            if !first.refs.is_empty() {
                let _ = writeln!(out, "      see also: {}", first.refs.join(", "));
            }
            i += group.len();
        }
    }
    if report.findings.is_empty() {
        let _ = writeln!(out, "\nno findings");
    }

    if !report.recipes.is_empty() {
        let _ = writeln!(out, "\nRECIPES");
        for r in &report.recipes {
            let _ = writeln!(out, "  {} ({}): found {}", r.name, r.summary, r.signature);
        }
    }

    let c = &report.conversion;
    let _ = writeln!(
        out,
        "\n{}",
        if report.destination.is_some() {
            "CONVERSION"
        } else {
            "CONVERSION (what `unroot convert` would do)"
        }
    );
    let _ = writeln!(
        out,
        "  user      {} -> {} (`{}`: {})",
        c.user_before.as_deref().unwrap_or("root (unset)"),
        c.user,
        c.user_name,
        c.user_reason
    );
    if !c.port_moves.is_empty() {
        let moves: Vec<String> = c
            .port_moves
            .iter()
            .map(|m| format!("{} -> {}", m.from, m.to))
            .collect();
        let _ = writeln!(out, "  ports     {}", moves.join(", "));
    }
    for m in &c.port_args {
        let _ = writeln!(
            out,
            "  port      {}: `{}` -> `{}` ({} -> {})",
            m.location, m.before, m.after, m.from, m.to
        );
    }
    if !c.writable.is_empty() {
        let _ = writeln!(out, "  writable  {}", c.writable.join(" "));
    }
    if !c.changes.is_empty() {
        let _ = writeln!(
            out,
            "  changes   {} paths in the new layer:",
            c.changes.len()
        );
        let width = c.changes.iter().map(|ch| ch.path.len()).max().unwrap_or(0);
        for ch in &c.changes {
            let owner = match &ch.before {
                Some(b) if *b != ch.after => format!("{b} -> {}", ch.after),
                _ => ch.after.clone(),
            };
            let _ = writeln!(out, "    {:width$}  {owner}  {}", ch.path, ch.description);
        }
    }
    for change in &c.config_changes {
        if change.field == "Env" {
            // Only the variables that change, one a line: the whole list twice does not
            // fit a terminal and hides the change.
            for (name, before, after) in env_changes(&change.before, &change.after) {
                let show = |v: Option<&str>| v.map_or("(unset)".to_string(), |v| format!("{v:?}"));
                let _ = writeln!(
                    out,
                    "  config    Env {name}: {} -> {}",
                    show(before.as_deref()),
                    show(after.as_deref())
                );
            }
            continue;
        }
        let _ = writeln!(
            out,
            "  config    {}: {} -> {}",
            change.field, change.before, change.after
        );
    }
    for n in &c.notes {
        let _ = writeln!(out, "  note: {n}");
    }
    // A dry run shows every edit in full.
    if report.destination.as_ref().is_some_and(|d| !d.written) {
        for ch in c.changes.iter().filter(|ch| ch.diff.is_some()) {
            let _ = write!(out, "\n{}", ch.diff.as_deref().unwrap_or_default());
        }
    }

    let k = &report.contract.runtime;
    let _ = writeln!(out, "\nRUNTIME CONTRACT (the converted image)");
    let _ = writeln!(out, "  user      {}:{}", k.uid, k.gid);
    if !k.ports.is_empty() {
        let ports: Vec<String> = k
            .ports
            .iter()
            .map(|p| match p.moved_from {
                Some(f) => format!("{}/{} (was {f})", p.port, p.protocol),
                None => format!("{}/{}", p.port, p.protocol),
            })
            .collect();
        let _ = writeln!(out, "  ports     {}", ports.join(", "));
    }
    let _ = writeln!(out, "  writable  {}", k.writable.join(" "));
    let _ = writeln!(
        out,
        "  read-only root filesystem: {}",
        if k.read_only_root_filesystem {
            "yes"
        } else {
            "no"
        }
    );
    for n in &k.notes {
        let _ = writeln!(out, "  note: {n}");
    }
    let _ = writeln!(out, "  docker    {}", report.contract.docker);
    let _ = writeln!(
        out,
        "  kubernetes: `--emit k8s` prints a Deployment (`--emit k8s-pod`: a Pod)"
    );

    let s = &report.summary;
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let counts = format!(
        "{}, {}, {} info",
        plural(s.errors, "error"),
        plural(s.warnings, "warning"),
        s.infos
    );
    if report.destination.is_some() {
        let _ = writeln!(out, "\nremaining in the converted image: {counts}");
    } else {
        let _ = writeln!(
            out,
            "\n{counts} ({} fixed by `unroot convert`)",
            s.fixable_by_unroot
        );
    }
    out
}

/// Renders an index report: a header, then each platform's report.
pub fn render_index(report: &super::IndexReport) -> String {
    let mut out = String::new();
    let i = &report.index;
    match &i.destination {
        None => {
            let _ = writeln!(
                out,
                "analyzed {} ({}), {} platforms",
                i.location,
                i.digest,
                report.platforms.len()
            );
        }
        Some(d) => {
            let (verb, pad) = verb(d.written);
            let _ = writeln!(out, "{verb} {} ({})", i.location, i.digest);
            let _ = writeln!(
                out,
                "{pad}to {} ({}), an index of {} platforms",
                d.location,
                d.digest,
                report.platforms.len()
            );
        }
    }
    for d in &i.dropped {
        let _ = writeln!(out, "dropped {d}");
    }
    for p in &report.platforms {
        let _ = write!(out, "\n=== {} ===\n{}", p.platform, render(&p.report));
    }
    out
}

/// "converted" or "would convert", and the padding that aligns "to" under the source.
fn verb(written: bool) -> (&'static str, String) {
    let verb = if written {
        "converted"
    } else {
        "would convert"
    };
    (verb, " ".repeat(verb.len() - 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_changes_name_only_the_variables_that_change() {
        let before = serde_json::json!(["PATH=/bin", "PORT=80", "OLD=1", "FLAG"]);
        let after = serde_json::json!(["PATH=/bin", "PORT=8080", "FLAG", "NEW=x=y"]);
        assert_eq!(
            env_changes(&before, &after),
            vec![
                (
                    "PORT".to_string(),
                    Some("80".to_string()),
                    Some("8080".to_string())
                ),
                ("OLD".to_string(), Some("1".to_string()), None),
                ("NEW".to_string(), None, Some("x=y".to_string())),
            ]
        );
        assert_eq!(env_changes(&before, &before), vec![]);
    }
}
