//! `unroot convert`: the session converts; this renders the result.

use crate::cli::ConvertArgs;
use crate::pipeline::ConvertOutcome;
use crate::report::Outcome;

/// The text to print and whether `--fail-on` trips.
pub fn render(args: &ConvertArgs, outcome: &ConvertOutcome) -> (String, bool) {
    let report = Outcome::of_conversion(outcome);
    let gate = args.fail_on.severity().is_some_and(|s| report.fails(s));
    let text = crate::cli::analyze::emit(&args.emit, &report)
        .unwrap_or_else(|| report.render_width(args.format, crate::cli::columns()));
    (text, gate)
}
