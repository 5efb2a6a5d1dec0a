//! `unroot analyze`: renders the report in the asked format, or one part of the contract.

use crate::cli::{AnalyzeArgs, Emit, Format};
use crate::pipeline::Analysis;
use crate::report::{sarif, text, IndexReport, Report};

/// The analysis (or the asked part of it) as text to print.
pub fn render(args: &AnalyzeArgs, analysis: &Analysis) -> String {
    let report = match analysis {
        Analysis::Image(report) => report,
        Analysis::Index {
            location,
            digest,
            platforms,
        } => {
            let index = IndexReport::new(
                location.to_string(),
                digest.to_string(),
                None,
                Vec::new(),
                platforms.clone(),
            );
            return match (args.emit, args.format) {
                // The contract is the same for every platform unless their files differ:
                // print each, labelled.
                (Some(emit), _) => index
                    .platforms
                    .iter()
                    .map(|p| format!("# {}\n{}", p.platform, emit_one(emit, &p.report)))
                    .collect(),
                (None, Format::Text) => text::render_index(&index),
                (None, Format::Json) => index.to_json(),
                (None, Format::Sarif) => sarif::render_index(&index),
            };
        }
    };
    match (args.emit, args.format) {
        (Some(emit), _) => emit_one(emit, report),
        (None, Format::Text) => text::render(report),
        (None, Format::Json) => report.to_json(),
        (None, Format::Sarif) => sarif::render(report),
    }
}

fn emit_one(emit: Emit, report: &Report) -> String {
    match emit {
        Emit::K8s => report.contract.kubernetes_yaml(),
        Emit::Docker => format!("{}\n", report.contract.docker),
    }
}

/// Whether the analysis has a finding at `level` or worse (for `--fail-on`).
pub fn fails(analysis: &Analysis, level: crate::analyze::Severity) -> bool {
    match analysis {
        Analysis::Image(r) => r.fails(level),
        Analysis::Index { platforms, .. } => platforms.iter().any(|(_, r)| r.fails(level)),
    }
}
