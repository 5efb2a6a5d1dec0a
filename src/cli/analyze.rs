//! `unroot analyze`: renders the report in the asked format, or one part of the contract.

use crate::cli::{AnalyzeArgs, Emit, Format};
use crate::report::{sarif, text, Report};

/// The report (or the asked part of it) as text to print.
pub fn render(args: &AnalyzeArgs, report: &Report) -> String {
    match (args.emit, args.format) {
        (Some(Emit::K8s), _) => report.contract.kubernetes_yaml(),
        (Some(Emit::Docker), _) => format!("{}\n", report.contract.docker),
        (None, Format::Text) => text::render(report),
        (None, Format::Json) => report.to_json(),
        (None, Format::Sarif) => sarif::render(report),
    }
}
