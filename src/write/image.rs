//! The new config and manifest: the source's, plus one layer and the plan's config
//! changes. Manifests are written as OCI (Docker media types of reused layers are mapped to
//! their OCI equivalents: same bytes, same digests).

use std::collections::BTreeMap;

use crate::model::manifest::to_canonical_bytes;
use crate::model::{media, Descriptor, Digest, ImageConfig, ImageManifest};
use crate::plan::Plan;
use crate::transport::{OutputImage, OutputLayer};

/// The annotation naming the image a converted image was made from.
pub const BASE_NAME: &str = "org.opencontainers.image.base.name";
/// The annotation with the digest of that image.
pub const BASE_DIGEST: &str = "org.opencontainers.image.base.digest";
/// The annotation with the digest of the recipe set the conversion used
/// ([`Selection::digest`](crate::recipe::Selection::digest)).
pub const RECIPES_DIGEST: &str = "dev.unroot.recipes.digest";

/// What went into the history entry and the layer.
pub struct Lineage<'a> {
    /// The source's name: its registry reference, or what a local source records (the tag
    /// it was read by); `None` leaves the annotation out.
    pub base_name: Option<&'a str>,
    /// The source manifest's digest.
    pub base_digest: &'a Digest,
    /// The digest of the recipe set.
    pub recipes_digest: &'a Digest,
    /// The `created` time of the new config and history entry (RFC 3339).
    pub created: &'a str,
    /// The `created_by` of the history entry.
    pub created_by: &'a str,
}

/// Why an image cannot be assembled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssembleError {
    /// A reused layer has a media type unroot cannot map to OCI.
    #[error("layer {digest} has the media type `{media_type}`, which unroot cannot carry into an OCI manifest")]
    LayerType {
        /// The layer.
        digest: Digest,
        /// Its media type.
        media_type: String,
    },
}

/// Builds the output image from the source manifest and config, the scan's layer facts,
/// the plan, and the new layer (when the plan has file changes).
pub fn assemble(
    source: &ImageManifest,
    config: &ImageConfig,
    base_layers: &[OutputLayer],
    plan: &Plan,
    new_layer: Option<&OutputLayer>,
    lineage: &Lineage<'_>,
) -> Result<OutputImage, AssembleError> {
    let mut config = converted_config(config, plan);
    let comment = summary(plan);
    if let Some(layer) = new_layer {
        config.push_layer(
            &layer.diff_id,
            lineage.created,
            lineage.created_by,
            &comment,
        );
    } else {
        config.push_history_only(lineage.created, lineage.created_by, &comment);
    }
    let config_bytes = config.to_bytes();
    let config_desc = Descriptor::new(
        media::OCI_CONFIG,
        Digest::sha256_of(&config_bytes),
        config_bytes.len() as u64,
    );

    let mut layers = Vec::with_capacity(base_layers.len() + 1);
    for layer in base_layers {
        let mut l = layer.clone();
        l.desc.media_type = media::oci_layer_type(&layer.desc.media_type)
            .ok_or_else(|| AssembleError::LayerType {
                digest: layer.desc.digest.clone(),
                media_type: layer.desc.media_type.clone(),
            })?
            .to_string();
        layers.push(l);
    }
    if let Some(layer) = new_layer {
        layers.push(layer.clone());
    }

    let mut annotations: BTreeMap<String, String> = source.annotations.clone();
    match lineage.base_name {
        Some(name) => annotations.insert(BASE_NAME.to_string(), name.to_string()),
        None => annotations.remove(BASE_NAME),
    };
    annotations.insert(BASE_DIGEST.to_string(), lineage.base_digest.to_string());
    annotations.insert(
        RECIPES_DIGEST.to_string(),
        lineage.recipes_digest.to_string(),
    );
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.to_string()),
        artifact_type: None,
        config: config_desc.clone(),
        layers: layers.iter().map(|l| l.desc.clone()).collect(),
        subject: None,
        annotations,
    };
    let manifest_bytes = to_canonical_bytes(&manifest);
    let manifest_desc = Descriptor::new(
        media::OCI_MANIFEST,
        Digest::sha256_of(&manifest_bytes),
        manifest_bytes.len() as u64,
    );
    Ok(OutputImage {
        manifest: manifest_bytes,
        manifest_desc,
        config: config_bytes,
        config_desc,
        layers,
    })
}

/// The config with the plan's changes: `User`, `ExposedPorts`, `Env`, the ports of
/// `Entrypoint` and `Cmd` (no history yet).
pub fn converted_config(config: &ImageConfig, plan: &Plan) -> ImageConfig {
    let mut config = config.clone();
    config.set_user(&plan.user());
    if let Some(ports) = &plan.exposed_ports {
        config.set_exposed_ports(ports.clone());
    }
    if let Some(env) = &plan.env {
        config.set_env(env.clone());
    }
    if let Some(volumes) = &plan.volumes {
        config.set_volumes(volumes.clone());
    }
    for (field, args) in [("Entrypoint", &plan.entrypoint), ("Cmd", &plan.cmd)] {
        if let Some(args) = args {
            config.set_command(field, args.clone());
        }
    }
    config
}

/// The ports a conversion moved, as its history comment ([`summary`]) records them; empty
/// for a comment unroot did not write.
pub fn recorded_port_moves(comment: &str) -> Vec<(u16, u16)> {
    let Some(parts) = comment.strip_prefix(SUMMARY_PREFIX) else {
        return Vec::new();
    };
    parts
        .split("; ")
        .filter_map(|p| p.strip_prefix("ports "))
        .flat_map(|list| list.split(','))
        .filter_map(|m| {
            let (f, t) = m.split_once("->")?;
            Some((f.parse().ok()?, t.parse().ok()?))
        })
        .collect()
}

/// How the history comment of a conversion starts.
const SUMMARY_PREFIX: &str = "unroot: ";

/// One line saying what the conversion did, for the history entry.
pub fn summary(plan: &Plan) -> String {
    let mut parts = vec![format!("USER {}", plan.user())];
    if !plan.port_moves.is_empty() {
        let moves: Vec<String> = plan
            .port_moves
            .iter()
            .map(|(f, t)| format!("{f}->{t}"))
            .collect();
        parts.push(format!("ports {}", moves.join(",")));
    }
    let reowned = plan
        .changes
        .values()
        .filter(|c| matches!(c.reason, crate::plan::Reason::Reowned { .. }))
        .count();
    if reowned > 0 {
        parts.push(format!("{reowned} executables/libraries re-owned to root"));
    }
    if !plan.writable.is_empty() {
        let w: Vec<String> = plan.writable.iter().map(|p| p.display()).collect();
        parts.push(format!("writable {}", w.join(",")));
    }
    format!("{SUMMARY_PREFIX}{}", parts.join("; "))
}
