//! `unroot verify`'s report: each run of the image, passed or failed and why, with what
//! the process said.

use std::fmt::Write;

use crate::pipeline::Verification;

use super::Format;

/// Renders a verification as text or JSON (SARIF is for findings: it is JSON here too).
pub fn render(v: &Verification, format: Format) -> String {
    match format {
        Format::Text => text(v),
        Format::Json | Format::Sarif => {
            let mut s = serde_json::to_string_pretty(v).expect("reports serialize");
            s.push('\n');
            s
        }
    }
}

fn text(v: &Verification) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "verified {} ({})", v.location, v.digest);
    let _ = writeln!(
        out,
        "  read-only root filesystem; tmpfs at {}",
        if v.writable.is_empty() {
            "nothing".to_string()
        } else {
            v.writable.join(" ")
        }
    );
    let _ = writeln!(
        out,
        "  no capabilities, no_new_privs, a user namespace, ip_unprivileged_port_start 1024"
    );
    for run in &v.runs {
        let verdict = if run.passed { "PASS" } else { "FAIL" };
        let listening = if run.listening.is_empty() {
            "listening on nothing".to_string()
        } else {
            let ports: Vec<String> = run.listening.iter().map(u16::to_string).collect();
            format!("listening on {}", ports.join(", "))
        };
        let _ = writeln!(
            out,
            "\n{verdict}  as the {} {}:{}: {listening}",
            run.as_, run.uid, run.gid
        );
        for r in &run.reasons {
            let _ = writeln!(out, "  - {r}");
        }
        if !run.passed {
            for d in &run.denied {
                let _ = writeln!(out, "  denied: {d}");
            }
            if !run.log.is_empty() {
                let _ = writeln!(out, "  last output:");
                for l in &run.log {
                    let _ = writeln!(out, "    {l}");
                }
            }
        }
    }
    for n in &v.notes {
        let _ = writeln!(out, "\nnote: {n}");
    }
    let _ = writeln!(
        out,
        "\n{}",
        if v.passed {
            "the image runs unprivileged"
        } else {
            "the image does not run unprivileged"
        }
    );
    out
}
