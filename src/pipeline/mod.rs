//! The one place that wires the work together: source -> manifest and config -> one pass
//! over the layers -> plan -> analysis and report; for a conversion, then new layer,
//! config and manifest -> sink.
//!
//! Invariant: nothing is written to the destination until every layer has been read and
//! verified and the new layer is complete; the sink then writes blobs before the manifest.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::analyze::{self, Facts};
use crate::recipe::MatchedRecipe;
use crate::error::Error;
use crate::layer::{LayerInfo, MergedView};
use crate::model::{
    media, Descriptor, Digest, ImageConfig, ImageIndex, ImageLocation, ImageRef, Platform,
};
use crate::plan::generic;
use crate::layer::accounts::Accounts;
use crate::plan::Plan;
use crate::recipe::Selection;
use crate::report::{Contract, ImageInfo, Report};
use crate::transport::registry::RegistryOptions;
use crate::transport::{self, BlobProvider, BlobReader, OutputLayer, Source, TransportError};
use crate::write::image::{assemble, converted_config, Lineage};
use crate::write::layer::{write_layer, NewLayer};

mod progress;
mod read;

pub use progress::{Meter, NoMeter, Progress, Silent};

pub use read::{preferred_users, resolve, scan_layers, ResolvedImage};

/// What to read and how to plan its conversion: shared by `analyze` and `convert`.
#[derive(Clone, Debug)]
pub struct ImageRequest {
    /// The image to read.
    pub source: ImageLocation,
    /// The platform to pick from an index; `None`: every platform (convert) or every
    /// platform in turn (analyze).
    pub platform: Option<Platform>,
    /// `--uid`, `--gid`, the port map.
    pub generic: generic::Options,
    /// Credentials and TLS.
    pub registry: RegistryOptions,
    /// The recipes to use.
    pub recipes: Selection,
    /// How many layers are read at once; 0: as many as the machine has cores (at most 4).
    pub jobs: usize,
}

/// What to convert, where to, and how.
#[derive(Clone, Debug)]
pub struct ConvertRequest {
    /// The image and how to plan.
    pub image: ImageRequest,
    /// Where to write; `None` for the default (`<tag>-unprivileged` next to the source).
    pub destination: Option<ImageLocation>,
    /// `SOURCE_DATE_EPOCH`, for the times of the new config, history entry and files.
    pub source_date_epoch: Option<i64>,
    /// The `created_by` of the history entry.
    pub created_by: String,
    /// Plan and report only: write nothing.
    pub dry_run: bool,
    /// Rewrite the layers that hold owners above 65535.
    pub remap_ids: bool,
}

/// The prefix of the history entry a conversion writes; finding it means the image was
/// converted already.
pub const CREATED_BY: &str = "unroot convert";

/// What `convert` did.
#[derive(Debug)]
pub enum ConvertOutcome {
    /// It wrote (or, for a dry run, planned) a converted image.
    Converted(Box<ConvertReport>),
    /// An index: every platform converted, then a new index.
    ConvertedIndex {
        /// The source index.
        source: ImageLocation,
        /// Its digest.
        source_digest: Digest,
        /// Where it was written.
        destination: ImageLocation,
        /// The new index's digest.
        digest: Digest,
        /// Whether it was written (`false` for a dry run).
        written: bool,
        /// Each platform's conversion, in the index's order.
        platforms: Vec<(String, Box<ConvertReport>)>,
        /// Entries not carried over (attestations), with why.
        dropped: Vec<String>,
    },
    /// The source was converted by unroot already: nothing was written.
    AlreadyConverted {
        /// The source.
        location: ImageLocation,
        /// Its digest.
        digest: Digest,
        /// The history entry that says so.
        created_by: String,
    },
}

/// What a conversion did.
#[derive(Debug)]
pub struct ConvertReport {
    /// The destination.
    pub destination: ImageLocation,
    /// The destination manifest's digest (the config's for docker archives).
    pub digest: Digest,
    /// The new layer: digest, compressed size, entries; `None` when no file changed.
    pub new_layer: Option<(Digest, u64, usize)>,
    /// Bytes of file content in the new layer.
    pub content_bytes: u64,
    /// The report on the converted image: remaining findings, the changes, the contract.
    pub report: Report,
}

/// The default destination: the same place with the tag `<tag>-unprivileged`.
pub fn default_destination(source: &ImageLocation) -> Result<ImageLocation, Error> {
    const SUFFIX: &str = "-unprivileged";
    let tagged = |t: &Option<String>| Some(format!("{}{SUFFIX}", t.as_deref().unwrap_or("latest")));
    let sibling = |file: &Path| -> PathBuf {
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = match file.extension() {
            Some(ext) => format!("{stem}{SUFFIX}.{}", ext.to_string_lossy()),
            None => format!("{stem}{SUFFIX}"),
        };
        file.with_file_name(name)
    };
    Ok(match source {
        ImageLocation::Registry(r) => match r.tag() {
            Some(t) => ImageLocation::Registry(r.with_tag(&format!("{t}{SUFFIX}"))),
            None => {
                return Err(Error::NoDestination {
                    source_location: source.to_string(),
                    reason: "it is named by digest only, so there is no tag to derive one from"
                        .into(),
                })
            }
        },
        ImageLocation::OciLayout { dir, tag } => ImageLocation::OciLayout {
            dir: dir.clone(),
            tag: tagged(tag),
        },
        ImageLocation::OciArchive { file, tag } => ImageLocation::OciArchive {
            file: sibling(file),
            tag: tag.clone(),
        },
        ImageLocation::DockerArchive { file, reference } => ImageLocation::DockerArchive {
            file: sibling(file),
            reference: reference.as_ref().map(|r| match r.rsplit_once(':') {
                Some((repo, tag)) if !tag.contains('/') => format!("{repo}:{tag}{SUFFIX}"),
                _ => format!("{r}:latest{SUFFIX}"),
            }),
        },
    })
}

/// Analyzes one image: reads it once and reports what ties it to root, what the conversion
/// would do, and the converted image's runtime contract.
pub fn analyze(request: &ImageRequest, progress: &mut dyn Progress) -> Result<Analysis, Error> {
    let mut source = transport::open_source(&request.source, &request.registry)?;
    let location = request.source.to_string();
    progress.message(&format!("resolving {}", request.source));
    let (entries, index) = match read::resolve_top(source.as_mut())? {
        read::Top::Image(raw) => (vec![(None, raw)], None),
        read::Top::Index(index, _) if request.platform.is_some() => {
            let desc = read::select(
                &index,
                request.platform.as_ref().expect("checked"),
                &location,
            )?;
            let raw = source.manifest_by_digest(&desc)?;
            (vec![(desc.platform.clone(), raw)], None)
        }
        read::Top::Index(index, raw) => {
            let mut entries = Vec::new();
            for desc in index
                .manifests
                .iter()
                .filter(|d| !ImageIndex::is_attestation(d))
            {
                entries.push((desc.platform.clone(), source.manifest_by_digest(desc)?));
            }
            (entries, Some(raw.digest))
        }
    };
    let mut reports = Vec::new();
    for (platform, raw) in entries {
        let image = read::load_image(source.as_mut(), raw, platform.clone())?;
        if let Some(p) = &platform {
            progress.message(&format!("analyzing {p}"));
        }
        reports.push((
            platform.map_or_else(|| "unknown".to_string(), |p| p.to_string()),
            analyze_image(request, source.as_mut(), image, progress)?,
        ));
    }
    Ok(match index {
        None => Analysis::Image(Box::new(reports.pop().expect("one image").1)),
        Some(digest) => Analysis::Index {
            location: request.source.clone(),
            digest,
            platforms: reports,
        },
    })
}

/// What `analyze` found.
#[derive(Debug)]
pub enum Analysis {
    /// One image's report.
    Image(Box<Report>),
    /// An index: each platform's report, in the index's order.
    Index {
        /// The index.
        location: ImageLocation,
        /// Its digest.
        digest: Digest,
        /// Each platform and its report.
        platforms: Vec<(String, Report)>,
    },
}

fn analyze_image(
    request: &ImageRequest,
    source: &mut dyn Source,
    image: ResolvedImage,
    progress: &mut dyn Progress,
) -> Result<Report, Error> {
    let work = work_dir()?;
    let recipes = &request.recipes;
    let (scan, _) = scan_layers(
        source,
        &image,
        &recipes.all(),
        false,
        work.path(),
        request.jobs,
        progress,
    )?;
    let plan = plan(
        request,
        &scan,
        &image.config,
        recipes,
        RecipeFailure::Record,
    )?;
    let converted = converted_config(&image.config, &plan);
    // The contract describes the image `unroot convert` writes by default.
    let run_as = default_destination(&request.source).ok();
    Ok(report(
        &request.source,
        run_as.as_ref(),
        &image,
        &scan.view,
        &scan.layers,
        &image.config,
        &converted,
        &plan,
        recipes,
    ))
}

fn work_dir() -> Result<tempfile::TempDir, Error> {
    tempfile::Builder::new()
        .prefix("unroot-")
        .tempdir()
        .map_err(|e| Error::Io {
            op: "create a temporary directory in",
            path: std::env::temp_dir(),
            source: e,
        })
}

/// How a recipe that does not apply is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecipeFailure {
    /// It stops the conversion.
    Stop,
    /// It is recorded in the plan (and reported as a finding).
    Record,
}

/// Plans the conversion: the recipes that match are applied first (their edits, the
/// directories they make writable, their preferred users), then the generic conversion.
pub fn plan(
    request: &ImageRequest,
    scan: &crate::layer::Scan,
    config: &ImageConfig,
    recipes: &Selection,
    failure: RecipeFailure,
) -> Result<Plan, Error> {
    let matched = MatchedRecipe::find(recipes, &scan.view);
    let mut outcomes = Vec::new();
    let mut problems = Vec::new();
    for m in &matched {
        match crate::recipe::edit::apply(m, &scan.view, &request.generic.ports) {
            Ok(outcome) => outcomes.push((m.recipe.name.clone(), outcome)),
            Err(e) if failure == RecipeFailure::Record => {
                problems.push((m.recipe.name.clone(), e.to_string()))
            }
            Err(e) => {
                return Err(Error::RecipeApply {
                    location: request.source.to_string(),
                    source: e,
                })
            }
        }
    }
    let mut options = request.generic.clone();
    options.preferred_users = preferred_users(&matched);
    options.recipe_writable = outcomes
        .iter()
        .flat_map(|(name, o)| {
            o.writable_dirs
                .iter()
                .map(move |d| (d.clone(), name.clone()))
        })
        .collect();
    let mut plan = generic::plan(scan, config, &options).map_err(|e| Error::Plan {
        location: request.source.to_string(),
        source: e,
    })?;
    plan.add_recipe_outcomes(&outcomes, &scan.view, &config.env(), options.mtime);
    plan.recipe_problems = problems;
    Ok(plan)
}

/// Analyzes `view` (with `config`) and builds the report; the contract describes the image
/// with `contract_config`.
#[allow(clippy::too_many_arguments)] // One call site each in analyze and convert.
fn report(
    location: &ImageLocation,
    run_as: Option<&ImageLocation>,
    image: &ResolvedImage,
    view: &MergedView,
    layers: &[LayerInfo],
    config: &ImageConfig,
    contract_config: &ImageConfig,
    plan: &Plan,
    recipes: &Selection,
) -> Report {
    let matched = MatchedRecipe::find(recipes, view);
    let accounts = Accounts::read(view).unwrap_or_default();
    let facts = Facts {
        view,
        layers,
        config,
        accounts: &accounts,
        plan,
        recipes: &matched,
    };
    let findings = analyze::analyze(&facts);
    let name = run_as.map_or_else(|| "IMAGE".to_string(), run_name);
    let contract = Contract::new(view, contract_config, plan, &matched, &name);
    let info = ImageInfo {
        location: location.to_string(),
        digest: image.digest.to_string(),
        platform: image.platform.as_ref().map(|p| p.to_string()),
        user: image.config.user().map(String::from),
    };
    Report::new(
        info,
        &findings,
        &matched,
        plan,
        &image.config,
        contract_config,
        contract,
    )
}

/// Converts an image: the whole pipeline. A single image becomes one image; an index
/// (without `--platform`) becomes an index of every platform converted, in the same order,
/// attestations dropped, written after all of its images.
pub fn convert(
    request: &ConvertRequest,
    progress: &mut dyn Progress,
) -> Result<ConvertOutcome, Error> {
    let from = &request.image;
    let destination = match &request.destination {
        Some(d) => d.clone(),
        None => default_destination(&from.source)?,
    };
    let mut source = transport::open_source(&from.source, &from.registry)?;
    let mut sink = if request.dry_run {
        None
    } else {
        Some(transport::open_sink(&destination, &from.registry)?)
    };
    let location = from.source.to_string();

    progress.message(&format!("resolving {}", from.source));
    let (entries, index) = match read::resolve_top(source.as_mut())? {
        read::Top::Image(raw) => (vec![(None, raw)], None),
        read::Top::Index(index, _) if from.platform.is_some() => {
            let desc = read::select(&index, from.platform.as_ref().expect("checked"), &location)?;
            let raw = source.manifest_by_digest(&desc)?;
            (vec![(Some(desc), raw)], None)
        }
        read::Top::Index(index, raw) => {
            if matches!(destination, ImageLocation::DockerArchive { .. }) {
                return Err(Error::Unsupported {
                    location: destination.to_string(),
                    reason: format!("{location} has {} platforms and a docker archive holds one; pick one with `--platform`", index.platforms().len()),
                });
            }
            let mut entries = Vec::new();
            for desc in index
                .manifests
                .iter()
                .filter(|d| !ImageIndex::is_attestation(d))
            {
                let raw = source.manifest_by_digest(desc)?;
                entries.push((Some(desc.clone()), raw));
            }
            (entries, Some((index, raw)))
        }
    };

    let mut converted: Vec<(Option<Descriptor>, ConvertReport, Descriptor)> = Vec::new();
    for (n, (entry, raw)) in entries.into_iter().enumerate() {
        let platform = entry.as_ref().and_then(|e| e.platform.clone());
        let image = read::load_image(source.as_mut(), raw, platform.clone())?;
        if n == 0 {
            if let Some(c) = image
                .config
                .history_created_by()
                .into_iter()
                .find(|c| c.starts_with(CREATED_BY))
            {
                // A second conversion would only stack another layer on the first.
                return Ok(ConvertOutcome::AlreadyConverted {
                    location: from.source.clone(),
                    digest: image.digest,
                    created_by: c,
                });
            }
        }
        if let Some(p) = &platform {
            progress.message(&format!("converting {p}"));
        }
        let (report, manifest) = convert_image(
            request,
            source.as_mut(),
            sink.as_mut(),
            &destination,
            image,
            progress,
        )?;
        converted.push((entry, report, manifest));
    }

    let Some((index, index_raw)) = index else {
        let (_, mut report, manifest) = converted.pop().expect("one image");
        if let Some(sink) = sink.as_mut() {
            let digest = sink.commit(&manifest)?;
            report.digest = digest.clone();
            if let Some(d) = report.report.destination.as_mut() {
                d.digest = digest.to_string();
            }
        }
        return Ok(ConvertOutcome::Converted(Box::new(report)));
    };

    // The new index: the same platforms in the same order, the index's annotations kept.
    let mut annotations = index.annotations.clone();
    annotations.insert(
        crate::write::image::BASE_NAME.to_string(),
        base_name(&from.source),
    );
    annotations.insert(
        crate::write::image::BASE_DIGEST.to_string(),
        index_raw.digest.to_string(),
    );
    let manifests = converted
        .iter()
        .map(|(entry, _, manifest)| {
            let mut d = manifest.clone();
            if let Some(e) = entry {
                d.platform = e.platform.clone();
                d.annotations = e.annotations.clone();
            }
            d
        })
        .collect();
    let new_index = ImageIndex {
        schema_version: 2,
        media_type: Some(media::OCI_INDEX.to_string()),
        manifests,
        annotations,
    };
    let bytes = crate::model::manifest::to_canonical_bytes(&new_index);
    let desc = Descriptor::new(
        media::OCI_INDEX,
        Digest::sha256_of(&bytes),
        bytes.len() as u64,
    );
    if let Some(sink) = sink.as_mut() {
        progress.message(&format!(
            "writing the index of {} platforms to {destination}",
            converted.len()
        ));
        sink.put_index(&bytes, &desc)?;
        sink.commit(&desc)?;
    }
    let dropped = index
        .manifests
        .iter()
        .filter(|d| ImageIndex::is_attestation(d))
        .map(|d| {
            format!(
                "{} ({}): it refers to the source image's digests, so it would be stale",
                d.digest,
                d.annotations
                    .get("vnd.docker.reference.type")
                    .map_or("attestation", String::as_str)
            )
        })
        .collect();
    Ok(ConvertOutcome::ConvertedIndex {
        source: from.source.clone(),
        source_digest: index_raw.digest,
        destination,
        digest: desc.digest,
        written: sink.is_some(),
        platforms: converted
            .into_iter()
            .map(|(e, r, _)| {
                (
                    e.and_then(|e| e.platform)
                        .map_or_else(|| "unknown".to_string(), |p| p.to_string()),
                    Box::new(r),
                )
            })
            .collect(),
        dropped,
    })
}

/// Converts one platform's image and puts its blobs and manifest to the sink (no tag);
/// returns its report and manifest descriptor.
fn convert_image(
    request: &ConvertRequest,
    source: &mut dyn Source,
    mut sink: Option<&mut Box<dyn crate::transport::Sink>>,
    destination: &ImageLocation,
    image: ResolvedImage,
    progress: &mut dyn Progress,
) -> Result<(ConvertReport, Descriptor), Error> {
    let from = &request.image;
    let created = created_time(request.source_date_epoch, image.config.created());

    let work = work_dir()?;
    let keep = !source.is_local()
        && sink
            .as_ref()
            .is_some_and(|s| !s.can_reuse_blobs_of(source.location()));
    let recipes = &from.recipes;
    let (mut scan, cache) = scan_layers(
        source,
        &image,
        &recipes.all(),
        keep,
        work.path(),
        from.jobs,
        progress,
    )?;
    let mut with_mtime = from.clone();
    with_mtime.generic.mtime = created.1;
    let plan = plan(
        &with_mtime,
        &scan,
        &image.config,
        recipes,
        RecipeFailure::Stop,
    )?;

    let new_layer = if plan.changes.is_empty() {
        None
    } else {
        progress.message(&format!(
            "writing the new layer ({} entries)",
            plan.changes.len()
        ));
        Some(
            write_layer(&plan.changes, &scan.spool, work.path()).map_err(|e| Error::Io {
                op: "write the new layer in",
                path: work.path().to_path_buf(),
                source: e,
            })?,
        )
    };
    let new_output = new_layer.as_ref().map(output_layer);
    let mut base_layers: Vec<OutputLayer> = image
        .manifest
        .layers
        .iter()
        .zip(&scan.layers)
        .map(|(desc, info)| OutputLayer {
            desc: desc.clone(),
            diff_id: info.diff_id.clone(),
            uncompressed_size: info.uncompressed_size,
        })
        .collect();
    // Layers with owners a rootless runtime cannot map are rewritten when asked (a layer on
    // top cannot fix them); every other layer stays as it is.
    let mut config = image.config.clone();
    let mut rewritten = Vec::new();
    let mut plan = plan;
    if request.remap_ids {
        for (i, info) in scan
            .layers
            .iter()
            .enumerate()
            .filter(|(_, l)| l.out_of_range > 0)
        {
            let desc = &image.manifest.layers[i];
            progress.message(&format!(
                "rewriting layer {} {} ({} entries owned by ids above 65535)",
                i + 1,
                desc.digest.short(),
                info.out_of_range
            ));
            let blob = match cache.get(&desc.digest) {
                Some(path) => Box::new(std::fs::File::open(path).map_err(|e| Error::Io {
                    op: "open",
                    path: path.clone(),
                    source: e,
                })?) as transport::BlobReader,
                None => source.blob(desc)?,
            };
            let remapped =
                crate::write::remap::remap_layer(blob, desc, plan.identity.uid, work.path())
                    .map_err(|e| TransportError::from_read(e, source.location()))?;
            let layer = remapped.layer;
            plan.notes.push(format!(
                "layer {} ({}) rewritten as {}: {} entries owned by ids above 65535 now belong to {}:0",
                i + 1,
                desc.digest,
                layer.digest,
                remapped.remapped,
                plan.identity.uid
            ));
            base_layers[i] = output_layer(&layer);
            config.set_diff_id(i, &layer.diff_id);
            scan.view
                .remap_ids(i, crate::layer::reader::MAX_MAPPED_ID, plan.identity.uid);
            rewritten.push((i, layer));
        }
    }
    let base_name = base_name(&from.source);
    let output = assemble(
        &image.manifest,
        &config,
        &base_layers,
        &plan,
        new_output.as_ref(),
        &Lineage {
            base_name: &base_name,
            base_digest: &image.digest,
            created: &created.0,
            created_by: &request.created_by,
        },
    )?;

    let digest = match sink.as_mut() {
        Some(sink) => {
            progress.message(&format!("writing the image to {destination}"));
            let mut local = cache.clone();
            if let Some(l) = &new_layer {
                local.insert(l.digest.clone(), l.file.path().to_path_buf());
            }
            for (_, l) in &rewritten {
                local.insert(l.digest.clone(), l.file.path().to_path_buf());
            }
            let mut blobs = Blobs {
                source: &mut *source,
                local: &local,
                progress: &mut *progress,
            };
            sink.put_image(&output, &mut blobs)?;
            output.manifest_desc.digest.clone()
        }
        // What the manifest would be (docker archives name images by their config).
        None if matches!(destination, ImageLocation::DockerArchive { .. }) => {
            output.config_desc.digest.clone()
        }
        None => output.manifest_desc.digest.clone(),
    };

    // The report is about the image as converted: the plan's layer merged over the view.
    let mut layers = scan.layers.clone();
    for (i, l) in &rewritten {
        layers[*i] = written_layer_info(l);
    }
    layers.extend(new_layer.as_ref().map(written_layer_info));
    scan.view.apply_layer(plan.layer_changes());
    let converted = ImageConfig::parse(&output.config).map_err(|e| Error::Config {
        location: destination.to_string(),
        source: e,
    })?;
    let mut report = report(
        &from.source,
        Some(destination),
        &image,
        &scan.view,
        &layers,
        &converted,
        &converted,
        &plan,
        recipes,
    );
    report.destination = Some(crate::report::Destination {
        location: destination.to_string(),
        digest: digest.to_string(),
        written: sink.is_some(),
        new_layer: new_layer.as_ref().map(|l| crate::report::NewLayerOut {
            digest: l.digest.to_string(),
            size: l.size,
            entries: l.entries,
            content_bytes: plan.content_bytes(),
        }),
    });
    Ok((
        ConvertReport {
            destination: destination.clone(),
            digest,
            content_bytes: plan.content_bytes(),
            new_layer: new_layer.map(|l| (l.digest, l.size, l.entries)),
            report,
        },
        output.manifest_desc,
    ))
}

/// The name an image is run by: a registry reference as docker takes it, else the
/// location.
pub fn run_name(location: &ImageLocation) -> String {
    match location {
        ImageLocation::Registry(r) => r.to_string(),
        other => other.to_string(),
    }
}

/// The name recorded in `org.opencontainers.image.base.name`: the registry reference, or
/// the transport location for local images.
fn base_name(source: &ImageLocation) -> String {
    match source {
        ImageLocation::Registry(r) => strip_digest(r),
        other => other.to_string(),
    }
}

fn strip_digest(r: &ImageRef) -> String {
    match r.tag() {
        Some(t) => format!("{}:{t}", r.name()),
        None => r.name(),
    }
}

/// The `created` time of the output (RFC 3339) and the same instant in seconds, for file
/// times: `SOURCE_DATE_EPOCH` when set, else the source's own `created`, else the epoch.
pub fn created_time(source_date_epoch: Option<i64>, source_created: Option<&str>) -> (String, u64) {
    use chrono::{DateTime, SecondsFormat, Utc};
    if let Some(secs) = source_date_epoch {
        if let Some(t) = DateTime::<Utc>::from_timestamp(secs, 0) {
            return (
                t.to_rfc3339_opts(SecondsFormat::Secs, true),
                secs.max(0) as u64,
            );
        }
    }
    if let Some(created) = source_created {
        if let Ok(t) = DateTime::parse_from_rfc3339(created) {
            return (created.to_string(), t.timestamp().max(0) as u64);
        }
    }
    ("1970-01-01T00:00:00Z".to_string(), 0)
}

/// A layer unroot wrote, as the manifest lists it.
fn output_layer(l: &NewLayer) -> OutputLayer {
    OutputLayer {
        desc: Descriptor::new(media::OCI_LAYER_GZIP, l.digest.clone(), l.size),
        diff_id: l.diff_id.clone(),
        uncompressed_size: l.uncompressed_size,
    }
}

/// A layer unroot wrote, as the report describes layers.
fn written_layer_info(l: &NewLayer) -> LayerInfo {
    LayerInfo {
        digest: l.digest.clone(),
        diff_id: l.diff_id.clone(),
        uncompressed_size: l.uncompressed_size,
        compression: crate::layer::Compression::Gzip,
        entries: l.entries as u64,
        out_of_range: 0,
        out_of_range_example: None,
    }
}

/// Gives the sink the layers written here (the new one, rewritten ones) and the cached
/// ones from their files, and the rest from the source.
struct Blobs<'a> {
    source: &'a mut dyn Source,
    local: &'a BTreeMap<Digest, PathBuf>,
    progress: &'a mut dyn Progress,
}

impl BlobProvider for Blobs<'_> {
    fn open(&mut self, desc: &Descriptor) -> Result<BlobReader, TransportError> {
        let reader: BlobReader = match self.local.get(&desc.digest) {
            Some(path) => Box::new(File::open(path).map_err(TransportError::io("open", path))?),
            None => self.source.blob(desc)?,
        };
        let meter = self
            .progress
            .meter(&format!("writing {}", desc.digest.short()), desc.size);
        Ok(Box::new(progress::Metered::new(reader, meter)))
    }

    fn origin(&self) -> &ImageLocation {
        self.source.location()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_destinations() {
        let d =
            |s: &str| default_destination(&ImageLocation::parse(s).unwrap()).map(|l| l.to_string());
        assert_eq!(
            d("nginx").unwrap(),
            "docker://docker.io/library/nginx:latest-unprivileged"
        );
        assert_eq!(
            d("localhost:5000/a:1.2").unwrap(),
            "docker://localhost:5000/a:1.2-unprivileged"
        );
        assert_eq!(d("oci:dir:v1").unwrap(), "oci:dir:v1-unprivileged");
        assert_eq!(d("oci:dir").unwrap(), "oci:dir:latest-unprivileged");
        assert_eq!(
            d("oci-archive:/x/a.tar:v1").unwrap(),
            "oci-archive:/x/a-unprivileged.tar:v1"
        );
        assert_eq!(
            d("docker-archive:a.tar:app:1").unwrap(),
            "docker-archive:a-unprivileged.tar:app:1-unprivileged"
        );
        let pinned = format!("nginx@sha256:{}", "0".repeat(64));
        assert!(matches!(d(&pinned), Err(Error::NoDestination { .. })));
    }

    #[test]
    fn created_times() {
        assert_eq!(
            created_time(Some(86400), Some("2024-01-01T00:00:00Z")),
            ("1970-01-02T00:00:00Z".into(), 86400)
        );
        assert_eq!(
            created_time(None, Some("2024-01-01T00:00:00.5Z")).1,
            1704067200
        );
        assert_eq!(
            created_time(None, Some("garbage")),
            ("1970-01-01T00:00:00Z".into(), 0)
        );
    }
}
