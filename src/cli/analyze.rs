//! `unroot analyze`: renders the report in the asked format, or one part of the contract.

use crate::cli::{AnalyzeArgs, Emit};
use crate::pipeline::AnalyzeOutcome;
use crate::report::{Outcome, Report};

/// The text to print (the report, or the asked part of the contract) and whether
/// `--fail-on` trips.
pub fn render(args: &AnalyzeArgs, analysis: &AnalyzeOutcome) -> (String, bool) {
    let report = Outcome::of_analysis(analysis);
    let gate = args.fail_on.severity().is_some_and(|s| report.fails(s));
    let text = match (args.emit, &report) {
        (Some(emit), Outcome::Image(r)) => emit_one(emit, r),
        // The contract is the same for every platform unless their files differ: print
        // each, labelled.
        (Some(emit), Outcome::Index(index)) => index
            .platforms
            .iter()
            .map(|p| format!("# {}\n{}", p.platform, emit_one(emit, &p.report)))
            .collect(),
        _ => report.render(args.format),
    };
    (text, gate)
}

fn emit_one(emit: Emit, report: &Report) -> String {
    match emit {
        Emit::K8s => report.contract.kubernetes_yaml(),
        Emit::Docker => format!("{}\n", report.contract.docker),
    }
}
