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

/// Renders a report as text, lines unwrapped.
pub fn render(report: &Report) -> String {
    render_width(report, usize::MAX)
}

/// Renders a report as text with lines longer than `width` wrapped (see [`fit`]); the
/// edits a dry run shows are never wrapped.
pub fn render_width(report: &Report, width: usize) -> String {
    let mut out = String::new();
    // `out[..fitted]` is final: wrapped, or a diff.
    let mut fitted = 0;
    // What was read and written first, each digest on a line of its own (a digest and a
    // label fit in 80 columns).
    match &report.destination {
        None => {
            let _ = writeln!(out, "analyzed {}", report.image.location);
            let _ = writeln!(out, "  digest {}", report.image.digest);
        }
        Some(d) => {
            let (verb, pad) = verb(d.written);
            let _ = writeln!(out, "{verb} {}", report.image.location);
            let _ = writeln!(out, "{pad}to {}", d.location);
            let _ = writeln!(out, "  source {}", report.image.digest);
            let _ = writeln!(out, "  output {}", d.digest);
            if let Some(l) = &d.learned {
                let _ = writeln!(
                    out,
                    "learned in {} round(s) (recipe {}), proven by the runs below:",
                    l.rounds, l.recipe
                );
                for c in &l.changes {
                    let _ = writeln!(out, "  - {}", c.change);
                }
            }
            for v in d.verified.iter().flatten() {
                let _ = writeln!(out, "verified {v}");
            }
            match &d.new_layer {
                Some(l) => {
                    let _ = writeln!(
                        out,
                        "new layer {}, {} entries, {} of file content",
                        human_bytes(l.size),
                        l.entries,
                        human_bytes(l.content_bytes)
                    );
                    let _ = writeln!(out, "  digest {}", l.digest);
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
            // The count, so the totals below add up from what is listed.
            let count = match group.len() {
                1 => String::new(),
                n => format!(" ({n})"),
            };
            let _ = writeln!(
                out,
                "  {} {}{count}: {}{who}",
                first.id, first.name, first.summary
            );
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
        out = fit(&out, width);
        for ch in c.changes.iter().filter(|ch| ch.diff.is_some()) {
            let _ = write!(out, "\n{}", ch.diff.as_deref().unwrap_or_default());
        }
        fitted = out.len();
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
    if let Some(pending) = report.contract.pending() {
        let _ = writeln!(out, "            ({pending})");
    }
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
    let rest = fit(&out[fitted..], width);
    out.truncate(fitted);
    out + &rest
}

/// Renders an index report: a header, then each platform's report.
pub fn render_index(report: &super::IndexReport) -> String {
    render_index_width(report, usize::MAX)
}

/// [`render_index`] with lines wrapped at `width`.
pub fn render_index_width(report: &super::IndexReport, width: usize) -> String {
    let mut out = String::new();
    let i = &report.index;
    match &i.destination {
        None => {
            let _ = writeln!(
                out,
                "analyzed {}, {} platforms",
                i.location,
                report.platforms.len()
            );
            let _ = writeln!(out, "  digest {}", i.digest);
        }
        Some(d) => {
            let (verb, pad) = verb(d.written);
            let _ = writeln!(out, "{verb} {}", i.location);
            let _ = writeln!(
                out,
                "{pad}to {}, an index of {} platforms",
                d.location,
                report.platforms.len()
            );
            let _ = writeln!(out, "  source {}", i.digest);
            let _ = writeln!(out, "  output {}", d.digest);
        }
    }
    for d in &i.dropped {
        let _ = writeln!(out, "dropped {d}");
    }
    let mut out = fit(&out, width);
    for p in &report.platforms {
        let _ = write!(
            out,
            "\n=== {} ===\n{}",
            p.platform,
            render_width(&p.report, width)
        );
    }
    out
}

/// The labels of lines that hold a shell command: wrapped as the shell continues a line
/// (` \` at the end), so what is printed still runs when pasted.
const COMMAND_LABELS: [&str; 2] = ["  docker    ", "  podman    "];

/// Wraps each line of `text` longer than `width` columns at spaces. A continuation line
/// is indented to the line's value column (the end of the first run of two or more
/// spaces, as in `  user      1000:1000`) when that is in the left half, else four
/// columns more than the line. Words are never split: a word longer than the room stays
/// whole. Command lines are continued with ` \`, and never broken inside quotes.
pub fn fit(text: &str, width: usize) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 16);
    for line in text.split_inclusive('\n') {
        let (body, newline) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        if body.chars().count() <= width {
            out.push_str(line);
            continue;
        }
        let indent = body.len() - body.trim_start_matches(' ').len();
        let command = COMMAND_LABELS.iter().any(|l| body.starts_with(l));
        let value = value_column(body, indent);
        let hang = match value {
            Some(c) if command => c + 2,
            Some(c) if c <= width / 2 => c,
            _ => indent + 4,
        };
        // Words keep the spacing before them unless a line breaks there.
        let mut current = body[..indent].to_string();
        let mut first = true;
        // A command line ends in ` \` when another follows.
        let room = if command {
            width.saturating_sub(2)
        } else {
            width
        };
        for (gap, word) in words(&body[indent..], command) {
            let gap = if first { "" } else { gap };
            if first || current.chars().count() + gap.len() + word.chars().count() <= room {
                current.push_str(gap);
                current.push_str(word);
            } else {
                out.push_str(&current);
                out.push_str(if command { " \\\n" } else { "\n" });
                current = format!("{}{word}", " ".repeat(hang));
            }
            first = false;
        }
        out.push_str(&current);
        out.push_str(newline);
    }
    out
}

/// Where a line's value starts: the end of its first run of two or more spaces after the
/// first word.
fn value_column(line: &str, indent: usize) -> Option<usize> {
    let rest = &line[indent..];
    let gap = rest.find("  ")?;
    let after = rest[gap..].len() - rest[gap..].trim_start_matches(' ').len();
    Some(indent + gap + after)
}

/// The words of `text`, each with the spaces before it, split at spaces. For a command,
/// never inside single or double quotes, and an option stays with its value (`--tmpfs
/// /tmp`, `-p 8080:8080`).
fn words(text: &str, command: bool) -> Vec<(&str, &str)> {
    // (gap start, word start, word end)
    let mut spans: Vec<(usize, usize, usize)> = Vec::new();
    let mut gap_start = 0;
    let mut start: Option<usize> = None;
    let mut quote = None;
    for (i, c) in text.char_indices() {
        match (c, quote) {
            ('\'' | '"', None) if command => quote = Some(c),
            (q, Some(open)) if q == open => quote = None,
            (' ', None) => {
                if let Some(s) = start.take() {
                    spans.push((gap_start, s, i));
                    gap_start = i;
                }
                continue;
            }
            _ => {}
        }
        start.get_or_insert(i);
    }
    if let Some(s) = start {
        spans.push((gap_start, s, text.len()));
    }
    if command {
        let mut glued: Vec<(usize, usize, usize)> = Vec::with_capacity(spans.len());
        let mut rest = spans.into_iter().peekable();
        while let Some((gap, from, to)) = rest.next() {
            let word = &text[from..to];
            let takes_value = word.starts_with('-') && !word.contains('=');
            match rest.peek() {
                Some(&(_, next_from, next_to))
                    if takes_value
                        && !text[next_from..].starts_with('-')
                        && &text[next_from..next_to] != "&&" =>
                {
                    glued.push((gap, from, next_to));
                    rest.next();
                }
                _ => glued.push((gap, from, to)),
            }
        }
        spans = glued;
    }
    spans
        .into_iter()
        .map(|(gap, from, to)| (&text[gap..from], &text[from..to]))
        .collect()
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
    fn long_lines_wrap_at_the_value_column_and_commands_stay_runnable() {
        let text = "  writable  /app/cache /data /home/app /var/lib/service/state /var/log/service /tmp\nshort\n";
        assert_eq!(
            fit(text, 40),
            "  writable  /app/cache /data /home/app\n            /var/lib/service/state\n            /var/log/service /tmp\nshort\n"
        );
        let detail = "      /etc/nginx/conf.d/default.conf:2 (layer 2): nginx `listen` on port 80";
        assert_eq!(
            fit(detail, 40),
            "      /etc/nginx/conf.d/default.conf:2\n          (layer 2): nginx `listen` on\n          port 80"
        );
        // A word longer than the room is not split.
        let long = format!("see {}", "x".repeat(50));
        assert_eq!(fit(&long, 20), format!("see\n    {}", "x".repeat(50)));
        // Commands: ` \` continuations, and quoted words with spaces stay whole.
        let command = "  docker    skopeo copy 'oci:/out/my web:v1' docker-daemon:localhost/my-web:v1 && docker run --rm --read-only --user 1000:1000 localhost/my-web:v1";
        let wrapped = fit(command, 50);
        assert_eq!(
            wrapped,
            "  docker    skopeo copy 'oci:/out/my web:v1' \\\n              docker-daemon:localhost/my-web:v1 \\\n              && docker run --rm --read-only \\\n              --user 1000:1000 \\\n              localhost/my-web:v1"
        );
        assert!(wrapped.lines().all(|l| l.len() <= 50), "{wrapped}");
        // The shell reads the wrapped command as the one given.
        let joined = wrapped.replace(" \\\n", " ");
        assert_eq!(
            joined.split_whitespace().collect::<Vec<_>>(),
            command.split_whitespace().collect::<Vec<_>>()
        );
        assert_eq!(fit(text, usize::MAX), text);
    }

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
