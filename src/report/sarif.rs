//! SARIF 2.1.0, as GitHub code scanning reads it: one run, the rules with help text, and
//! results with locations inside the image.

use serde_json::{json, Value};

use super::Report;
use crate::analyze::{rules, Location, Severity};

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "note",
    }
}

/// GitHub's `security-severity` (0-10) for a severity.
fn security_severity(s: Severity) -> &'static str {
    match s {
        Severity::Error => "7.5",
        Severity::Warning => "5.0",
        Severity::Info => "2.0",
    }
}

/// Renders a report as a SARIF 2.1.0 log.
pub fn render(report: &Report) -> String {
    log(vec![run(report, None)])
}

/// Renders an index report: one run per platform.
pub fn render_index(report: &super::IndexReport) -> String {
    log(report
        .platforms
        .iter()
        .map(|p| run(&p.report, Some(&p.platform)))
        .collect())
}

fn log(runs: Vec<Value>) -> String {
    let log = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": runs,
    });
    let mut s = serde_json::to_string_pretty(&log).expect("SARIF serializes");
    s.push('\n');
    s
}

/// The SARIF log of a conversion that had nothing to do: no results, and a notification
/// that says why.
pub fn render_already_converted(location: &str, digest: &str, created_by: &str) -> String {
    log(vec![json!({
        "tool": {"driver": driver()},
        "automationDetails": {"id": format!("unroot/{location}")},
        "invocations": [{
            "executionSuccessful": true,
            "toolExecutionNotifications": [{
                "level": "note",
                "message": {"text": format!("{location} ({digest}) is already converted (its history has `{created_by}`): nothing to do")},
            }],
        }],
        "properties": {"image": location, "digest": digest, "already_converted": true},
        "results": [],
    })])
}

/// The tool, with every rule and its help.
fn driver() -> Value {
    let rule_json: Vec<Value> = rules()
        .iter()
        .map(|r| {
            let mut help = format!("{}\n\nFix: {}", r.help, r.fix);
            if !r.refs.is_empty() {
                help.push_str(&format!("\n\nEquivalent checks: {}", r.refs.join(", ")));
            }
            json!({
                "id": r.id,
                "name": pascal(r.name),
                "shortDescription": {"text": r.summary},
                "fullDescription": {"text": r.help},
                "help": {"text": help.clone(), "markdown": help},
                "defaultConfiguration": {"level": level(r.severity)},
                "properties": {
                    "tags": ["security", "container", "non-root"],
                    "security-severity": security_severity(r.severity),
                    "equivalents": r.refs,
                },
            })
        })
        .collect();
    json!({
        "name": "unroot",
        "version": env!("CARGO_PKG_VERSION"),
        "semanticVersion": env!("CARGO_PKG_VERSION"),
        "rules": rule_json,
    })
}

fn run(report: &Report, platform: Option<&str>) -> Value {
    let all = rules();
    let results: Vec<Value> = report
        .findings
        .iter()
        .map(|f| {
            let index = all.iter().position(|r| r.id == f.id).expect("every finding has a rule");
            let (uri, region, logical) = match &f.location {
                Location::File { path, line, .. } => (path.trim_start_matches('/').to_string(), *line, None),
                Location::Config { field } => ("Dockerfile".to_string(), None, Some(format!("config.{field}"))),
            };
            let mut physical = json!({"artifactLocation": {"uri": uri}});
            if let Some(line) = region {
                physical["region"] = json!({"startLine": line});
            }
            let mut location = json!({"physicalLocation": physical});
            if let Some(l) = logical {
                location["logicalLocations"] = json!([{"name": l, "kind": "member"}]);
            }
            json!({
                "ruleId": f.id,
                "ruleIndex": index,
                "level": level(f.severity),
                "message": {"text": format!("{}: {}", f.summary, f.message)},
                "locations": [location],
                "partialFingerprints": {"unrootFinding/v1": format!("{}:{}:{}", f.id, f.location, f.message)},
            })
        })
        .collect();
    let id = match platform {
        Some(p) => format!("unroot/{}/{p}", report.image.location),
        None => format!("unroot/{}", report.image.location),
    };
    json!({
        "tool": {"driver": driver()},
        "automationDetails": {"id": id},
        "properties": {
            "image": report.image.location,
            "digest": report.image.digest,
            "platform": platform,
            "contract": report.contract,
        },
        "results": results,
    })
}

/// `root-user` -> `RootUser`.
fn pascal(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}
