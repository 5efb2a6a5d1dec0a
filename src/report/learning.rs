//! `unroot learn`'s report: each round, every learned change with its evidence, what could
//! not be learned, and the verdict (a change is proven only when the last run served).

use std::fmt::Write;

use crate::pipeline::Learning;

use super::Format;

/// Renders what learning found as text or JSON (SARIF is for findings: JSON here too).
pub fn render(l: &Learning, format: Format) -> String {
    match format {
        Format::Text => text(l),
        Format::Json | Format::Sarif => {
            let mut s = serde_json::to_string_pretty(l).expect("reports serialize");
            s.push('\n');
            s
        }
    }
}

/// The text report.
pub fn text(l: &Learning) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "learned from {} ({}): {} round(s), {:.1} s",
        l.location,
        l.digest,
        l.rounds.len(),
        l.seconds
    );
    for r in &l.rounds {
        let _ = writeln!(
            out,
            "  round {}: {}: {} new change(s), {:.1} s",
            r.round, r.ran, r.learned, r.seconds
        );
        for run in &r.runs {
            let _ = writeln!(out, "    {run}");
        }
    }
    let status = if l.proven { "proven" } else { "not proven" };
    if l.knowledge.learned.is_empty() {
        let _ = writeln!(out, "\nlearned nothing");
    } else {
        let _ = writeln!(out, "\nlearned ({status}):");
    }
    for c in &l.knowledge.learned {
        let _ = writeln!(out, "  - {}", c.change.describe());
        for e in &c.evidence {
            let _ = writeln!(out, "      {e}");
        }
    }
    if !l.knowledge.problems.is_empty() {
        let _ = writeln!(out, "\nnot learned:");
        for p in &l.knowledge.problems {
            let _ = writeln!(out, "  - {}", p.problem);
            for e in &p.evidence {
                let _ = writeln!(out, "      {e}");
            }
        }
    }
    if let Some(v) = l.verification.as_ref().filter(|v| !v.passed) {
        for run in v.runs.iter().filter(|r| !r.passed) {
            let _ = writeln!(
                out,
                "\nthe last run as the {} {}:{} said:",
                run.as_, run.uid, run.gid
            );
            for line in &run.log {
                let _ = writeln!(out, "    {line}");
            }
        }
    }
    let verdict = if l.proven {
        "the image converted with the learned recipe runs unprivileged"
    } else {
        "the image converted with what was learned does not run unprivileged"
    };
    let _ = writeln!(out, "\n{verdict} ({})", l.stopped.describe());
    out
}
