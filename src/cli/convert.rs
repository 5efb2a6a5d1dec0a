//! `unroot convert`: the session converts; this renders the result.

use crate::cli::ConvertArgs;
use crate::pipeline::ConvertOutcome;
use crate::report::Outcome;

/// The text to print and whether `--fail-on` trips.
pub fn render(args: &ConvertArgs, outcome: &ConvertOutcome) -> (String, bool) {
    args.report.render(&Outcome::of_conversion(outcome))
}
