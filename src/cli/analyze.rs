//! `unroot analyze`: renders the report in the asked format, or one part of the contract.

use crate::cli::{run_name, AnalyzeArgs, Emit, Format};
use crate::model::ImageLocation;
use crate::pipeline::default_destination;
use crate::report::{sarif, text, Report};

/// The report (or the asked part of it) as text to print.
pub fn render(args: &AnalyzeArgs, report: &Report) -> String {
    // The contract describes the image `unroot convert` would write by default.
    let converted = ImageLocation::parse(&args.image)
        .ok()
        .and_then(|l| default_destination(&l).ok())
        .map(|l| run_name(&l))
        .unwrap_or_else(|| "IMAGE".to_string());
    match (args.emit, args.format) {
        (Some(Emit::K8s), _) => report.contract.kubernetes_yaml(&converted),
        (Some(Emit::Docker), _) => format!("{}\n", report.contract.docker_command(&converted)),
        (None, Format::Text) => text::render(report, &converted),
        (None, Format::Json) => report.to_json(),
        (None, Format::Sarif) => sarif::render(report),
    }
}
