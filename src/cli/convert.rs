//! `unroot convert`: builds the request from the arguments and renders the result.

use std::fmt::Write as _;

use crate::cli::{image_request, ConvertArgs, Format};
use crate::error::Error;
use crate::model::ImageLocation;
use crate::pipeline::{ConvertOutcome, ConvertRequest};
use crate::report::{sarif, text, IndexDestination, IndexReport};

/// Turns the arguments into a request, checking every value before any work starts.
pub fn request(args: &ConvertArgs) -> Result<ConvertRequest, Error> {
    let image = image_request(&args.source, &args.plan)?;
    let destination = args
        .destination
        .as_deref()
        .map(ImageLocation::parse)
        .transpose()?;
    let mut created_by = String::from(crate::pipeline::CREATED_BY);
    if let Some(uid) = args.plan.uid {
        let _ = write!(created_by, " --uid {uid}");
    }
    if let Some(gid) = args.plan.gid {
        let _ = write!(created_by, " --gid {gid}");
    }
    if args.remap_ids {
        let _ = write!(created_by, " --remap-ids");
    }
    let mut port_args = args.plan.ports.clone();
    port_args.sort();
    for p in port_args {
        let _ = write!(created_by, " --port {p}");
    }
    Ok(ConvertRequest {
        image,
        destination,
        source_date_epoch: args.source_date_epoch,
        created_by,
        dry_run: args.dry_run,
        remap_ids: args.remap_ids,
    })
}

/// The result in the asked format.
pub fn render(outcome: &ConvertOutcome, format: Format) -> String {
    match (outcome, format) {
        (ConvertOutcome::Converted(result), Format::Text) => text::render(&result.report),
        (ConvertOutcome::Converted(result), Format::Json) => result.report.to_json(),
        (ConvertOutcome::Converted(result), Format::Sarif) => sarif::render(&result.report),
        (
            ConvertOutcome::ConvertedIndex {
                source,
                source_digest,
                destination,
                digest,
                written,
                platforms,
                dropped,
            },
            format,
        ) => {
            let report = IndexReport::new(
                source.to_string(),
                source_digest.to_string(),
                Some(IndexDestination {
                    location: destination.to_string(),
                    digest: digest.to_string(),
                    written: *written,
                }),
                dropped.clone(),
                platforms.iter().map(|(p, r)| (p.clone(), r.report.clone())).collect(),
            );
            match format {
                Format::Text => text::render_index(&report),
                Format::Json => report.to_json(),
                Format::Sarif => sarif::render_index(&report),
            }
        }
        (ConvertOutcome::AlreadyConverted { location, digest, created_by }, Format::Text) => format!(
            "{location} ({digest}) is already converted (its history has `{created_by}`): nothing to do\n"
        ),
        (ConvertOutcome::AlreadyConverted { location, digest, created_by }, _) => {
            let v = serde_json::json!({
                "schema_version": crate::report::SCHEMA_VERSION,
                "already_converted": {"location": location.to_string(), "digest": digest.to_string(), "created_by": created_by},
            });
            format!("{}\n", serde_json::to_string_pretty(&v).expect("JSON"))
        }
    }
}

/// Whether the outcome has a finding at `level` or worse (for `--fail-on`).
pub fn fails(outcome: &ConvertOutcome, level: crate::analyze::Severity) -> bool {
    match outcome {
        ConvertOutcome::Converted(r) => r.report.fails(level),
        ConvertOutcome::ConvertedIndex { platforms, .. } => {
            platforms.iter().any(|(_, r)| r.report.fails(level))
        }
        ConvertOutcome::AlreadyConverted { .. } => false,
    }
}
