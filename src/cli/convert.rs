//! `unroot convert`: builds the request from the arguments and renders the report.

use std::fmt::Write as _;

use crate::cli::ConvertArgs;
use crate::error::Error;
use crate::layer::Meta;
use crate::model::{ImageLocation, Platform};
use crate::pipeline::{human_bytes, ConvertReport, ConvertRequest};
use crate::plan::generic;
use crate::plan::ports::PortMap;
use crate::transport::auth::Credentials;
use crate::transport::registry::RegistryOptions;

/// Turns the arguments into a request, checking every value before any work starts.
pub fn request(args: &ConvertArgs) -> Result<ConvertRequest, Error> {
    let source = ImageLocation::parse(&args.source)?;
    let destination = args
        .destination
        .as_deref()
        .map(ImageLocation::parse)
        .transpose()?;
    let ports = PortMap::new(&args.ports)?;
    let platform = Platform::parse(&args.platform)?;
    let creds = args
        .registry
        .creds
        .as_deref()
        .map(Credentials::parse)
        .transpose()?;
    let mut created_by = String::from("unroot convert");
    if let Some(uid) = args.uid {
        let _ = write!(created_by, " --uid {uid}");
    }
    if let Some(gid) = args.gid {
        let _ = write!(created_by, " --gid {gid}");
    }
    let mut port_args = args.ports.clone();
    port_args.sort();
    for p in port_args {
        let _ = write!(created_by, " --port {p}");
    }
    Ok(ConvertRequest {
        source,
        destination,
        platform,
        generic: generic::Options {
            uid: args.uid,
            gid: args.gid,
            ports,
            mtime: 0,
            preferred_users: Vec::new(),
        },
        registry: RegistryOptions {
            creds,
            tls_verify: args.registry.tls_verify,
        },
        source_date_epoch: args.source_date_epoch,
        created_by,
    })
}

fn mode_string(meta: &Meta) -> String {
    let mut s = String::with_capacity(10);
    s.push(meta.kind.letter());
    let bits = [
        (0o400, 'r'),
        (0o200, 'w'),
        (0o100, 'x'),
        (0o040, 'r'),
        (0o020, 'w'),
        (0o010, 'x'),
        (0o004, 'r'),
        (0o002, 'w'),
        (0o001, 'x'),
    ];
    for (bit, c) in bits {
        s.push(if meta.mode & bit != 0 { c } else { '-' });
    }
    s
}

/// The human-readable report of a conversion.
pub fn render(report: &ConvertReport) -> String {
    let plan = &report.plan;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "converted {} ({})",
        report.source, report.source_digest
    );
    if let Some(p) = &report.platform {
        let _ = writeln!(out, "platform  {p}");
    }
    let _ = writeln!(out, "       to {} ({})", report.destination, report.digest);
    let _ = writeln!(
        out,
        "user      {} -> {} (`{}`: {})",
        plan.user_before.as_deref().unwrap_or("root (unset)"),
        plan.user(),
        plan.identity.name,
        plan.identity.why
    );
    if !plan.port_moves.is_empty() {
        let moves: Vec<String> = plan
            .port_moves
            .iter()
            .map(|(f, t)| format!("{f} -> {t}"))
            .collect();
        let _ = writeln!(out, "ports     {}", moves.join(", "));
    }
    if !plan.writable.is_empty() {
        let w: Vec<String> = plan.writable.iter().map(|p| p.display()).collect();
        let _ = writeln!(out, "writable  {}", w.join(" "));
    }
    match &report.new_layer {
        Some((digest, size, entries)) => {
            let _ = writeln!(
                out,
                "new layer {digest} ({}, {entries} entries, {} of file content)",
                human_bytes(*size),
                human_bytes(plan.content_bytes())
            );
        }
        None => {
            let _ = writeln!(
                out,
                "new layer none (no file changes; only the config changed)"
            );
        }
    }
    if !plan.changes.is_empty() {
        let _ = writeln!(out, "changes:");
        for (path, change) in &plan.changes {
            let owner = match &change.before {
                Some(b)
                    if (b.uid, b.gid, b.mode)
                        != (change.meta.uid, change.meta.gid, change.meta.mode) =>
                {
                    format!(
                        "{} {}:{} -> {} {}:{}",
                        mode_string(b),
                        b.uid,
                        b.gid,
                        mode_string(&change.meta),
                        change.meta.uid,
                        change.meta.gid
                    )
                }
                _ => format!(
                    "{} {}:{}",
                    mode_string(&change.meta),
                    change.meta.uid,
                    change.meta.gid
                ),
            };
            let _ = writeln!(out, "  {path}  {owner}  {}", change.reason.describe());
        }
    }
    for note in &plan.notes {
        let _ = writeln!(out, "note: {note}");
    }
    out
}
