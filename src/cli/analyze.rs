//! `unroot analyze`: renders the report in the asked format, or one part of the contract.

use crate::cli::{AnalyzeArgs, Emit, EmitArgs};
use crate::pipeline::AnalyzeOutcome;
use crate::report::{KubernetesOptions, Outcome, Report};

/// The text to print (the report, or the asked part of the contract) and whether
/// `--fail-on` trips.
pub fn render(args: &AnalyzeArgs, analysis: &AnalyzeOutcome) -> (String, bool) {
    args.report.render(&Outcome::of_analysis(analysis))
}

/// The part of the contract `--emit` asks for, when it asks and the outcome has one.
pub fn emit(args: &EmitArgs, report: &Outcome) -> Option<String> {
    let emit = args.emit?;
    match report {
        Outcome::Image(r) => Some(emit_one(emit, args, r)),
        // The contract is the same for every platform unless their files differ: print
        // each, labelled.
        Outcome::Index(index) => Some(
            index
                .platforms
                .iter()
                .map(|p| format!("# {}\n{}", p.platform, emit_one(emit, args, &p.report)))
                .collect(),
        ),
        _ => None,
    }
}

fn emit_one(emit: Emit, args: &EmitArgs, report: &Report) -> String {
    let k8s = |pod| KubernetesOptions {
        pod,
        user_namespace: args.k8s_user_namespace,
        network_policy: args.k8s_network_policy,
    };
    // The commands run as printed; a comment first says when the image is not written yet.
    let lines = |engine| {
        let pending = report
            .contract
            .pending()
            .map(|p| format!("# {p}: run that first\n"));
        pending
            .into_iter()
            .chain(
                report
                    .contract
                    .commands(engine)
                    .iter()
                    .map(|c| format!("{c}\n")),
            )
            .collect()
    };
    match emit {
        Emit::K8s => report.contract.kubernetes_manifest(&k8s(false)),
        Emit::K8sPod => report.contract.kubernetes_manifest(&k8s(true)),
        Emit::Docker => lines("docker"),
        Emit::Podman => lines("podman"),
    }
}
