//! The one place that wires a conversion together: source -> manifest and config -> one
//! pass over the layers -> plan -> new layer, config and manifest -> sink.
//!
//! Invariant: nothing is written to the destination until every layer has been read and
//! verified and the new layer is complete; the sink then writes blobs before the manifest.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::analyze::MatchedRecipe;
use crate::error::Error;
use crate::layer::scan::CapturePolicy;
use crate::layer::{ImagePath, LayerInfo, Meta, Scan, Want};
use crate::model::{media, ImageRef};
use crate::model::{
    Descriptor, Digest, ImageConfig, ImageLocation, ImageManifest, Manifest, Platform,
};
use crate::plan::generic::{self, GenericCapture};
use crate::plan::Plan;
use crate::recipe::{self, Recipe};
use crate::transport::registry::RegistryOptions;
use crate::transport::{self, BlobProvider, BlobReader, OutputLayer, Source, TransportError};
use crate::write::image::{assemble, Lineage};
use crate::write::layer::write_layer;

/// What to convert, where to, and how.
#[derive(Clone, Debug)]
pub struct ConvertRequest {
    /// The image to read.
    pub source: ImageLocation,
    /// Where to write; `None` for the default (`<tag>-unprivileged` next to the source).
    pub destination: Option<ImageLocation>,
    /// The platform to pick from an index.
    pub platform: Platform,
    /// `--uid`, `--gid`, the port map.
    pub generic: generic::Options,
    /// Credentials and TLS.
    pub registry: RegistryOptions,
    /// `SOURCE_DATE_EPOCH`, for the times of the new config, history entry and files.
    pub source_date_epoch: Option<i64>,
    /// The `created_by` of the history entry.
    pub created_by: String,
}

/// What a conversion did.
#[derive(Debug)]
pub struct ConvertReport {
    /// The source.
    pub source: ImageLocation,
    /// The digest of the source manifest that was converted (the platform's).
    pub source_digest: Digest,
    /// The platform, when the source was an index.
    pub platform: Option<Platform>,
    /// The destination.
    pub destination: ImageLocation,
    /// The destination manifest's digest (the config's for docker archives).
    pub digest: Digest,
    /// Every change.
    pub plan: Plan,
    /// The source layers, as read.
    pub layers: Vec<LayerInfo>,
    /// The new layer: digest, compressed size, entries; `None` when no file changed.
    pub new_layer: Option<(Digest, u64, usize)>,
}

/// Receives progress messages (one line each) as a conversion goes.
pub trait Progress {
    /// A step begins or ends.
    fn message(&mut self, line: &str);
}

/// Progress that goes nowhere.
pub struct Silent;

impl Progress for Silent {
    fn message(&mut self, _line: &str) {}
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

/// A single-platform image, resolved from a source.
pub struct ResolvedImage {
    /// Its manifest.
    pub manifest: ImageManifest,
    /// The manifest's digest.
    pub digest: Digest,
    /// Its config.
    pub config: ImageConfig,
    /// The platform picked from an index, if the source was one.
    pub platform: Option<Platform>,
}

/// Fetches the manifest (picking the platform from an index) and the config, and checks
/// that the image is one unroot can convert.
pub fn resolve(source: &mut dyn Source, platform: &Platform) -> Result<ResolvedImage, Error> {
    let location = source.location().to_string();
    let manifest_err = |source| Error::Manifest {
        location: location.clone(),
        source,
    };
    let raw = source.manifest()?;
    let (raw, picked) =
        match Manifest::parse(&raw.bytes, raw.media_type.as_deref()).map_err(manifest_err)? {
            Manifest::Index(index) => {
                let desc = index
                    .select(platform)
                    .cloned()
                    .ok_or_else(|| Error::NoPlatform {
                        location: location.clone(),
                        wanted: platform.to_string(),
                        available: index.platforms(),
                    })?;
                let child = source.manifest_by_digest(&desc)?;
                (child, desc.platform.clone())
            }
            Manifest::Image(_) => (raw, None),
        };
    let manifest =
        match Manifest::parse(&raw.bytes, raw.media_type.as_deref()).map_err(manifest_err)? {
            Manifest::Image(m) => m,
            Manifest::Index(_) => {
                return Err(Error::Unsupported {
                    location,
                    reason: "an index entry is itself an index; nested indexes are not supported"
                        .into(),
                })
            }
        };
    let unsupported = |reason: String| Error::Unsupported {
        location: location.clone(),
        reason,
    };
    for layer in &manifest.layers {
        if media::is_foreign_layer(&layer.media_type) {
            return Err(unsupported(format!(
                "layer {} is a foreign (Windows) layer; Windows images cannot run unprivileged this way",
                layer.digest
            )));
        }
        if media::oci_layer_type(&layer.media_type).is_none() {
            return Err(unsupported(format!(
                "layer {} has the media type `{}`, which is not an image layer",
                layer.digest, layer.media_type
            )));
        }
    }
    if manifest.config.media_type != media::OCI_CONFIG
        && manifest.config.media_type != media::DOCKER_CONFIG
    {
        return Err(unsupported(format!(
            "its config has the media type `{}`: this is an artifact, not a container image",
            manifest.config.media_type
        )));
    }
    let reader = source.blob(&manifest.config)?;
    let config_bytes = transport::read_small_blob(reader, &manifest.config, source.location())?;
    let config = ImageConfig::parse(&config_bytes).map_err(|e| Error::Config {
        location: location.clone(),
        source: e,
    })?;
    if let Some(os) = config.os().filter(|os| *os != "linux") {
        return Err(unsupported(format!(
            "it is a `{os}` image; unroot converts Linux images"
        )));
    }
    let diff_ids = config.diff_ids().map_err(|e| Error::Config {
        location: location.clone(),
        source: e,
    })?;
    if diff_ids.len() != manifest.layers.len() {
        return Err(Error::Config {
            location,
            source: crate::model::config::ConfigError(format!(
                "it lists {} diff_ids for {} layers",
                diff_ids.len(),
                manifest.layers.len()
            )),
        });
    }
    Ok(ResolvedImage {
        manifest,
        digest: raw.digest,
        config,
        platform: picked,
    })
}

/// What the scan keeps: what the generic conversion needs, plus the files the recipes
/// read (their config, in memory and capped).
struct Capture {
    recipes: globset::GlobSet,
}

impl CapturePolicy for Capture {
    fn want(&self, path: &ImagePath, meta: &Meta) -> Want {
        match GenericCapture.want(path, meta) {
            Want::Nothing if self.recipes.is_match(path.display()) => Want::Text,
            other => other,
        }
    }
}

/// The service accounts the matched recipes prefer, in recipe order.
pub fn preferred_users(matched: &[MatchedRecipe<'_>]) -> Vec<(String, String)> {
    matched
        .iter()
        .flat_map(|m| {
            m.recipe
                .users
                .iter()
                .map(|u| (u.clone(), m.recipe.name.clone()))
        })
        .collect()
}

/// Reads every layer once into a [`Scan`], keeping the bodies the conversion and the
/// recipes need. Blobs of a remote source that the sink will need again are kept in
/// `cache_dir` while they stream past.
pub fn scan_layers(
    source: &mut dyn Source,
    image: &ResolvedImage,
    recipes: &[Recipe],
    keep_for_sink: bool,
    cache_dir: &Path,
    progress: &mut dyn Progress,
) -> Result<(Scan, BTreeMap<Digest, PathBuf>), Error> {
    let location = source.location().to_string();
    let diff_ids = image.config.diff_ids().map_err(|e| Error::Config {
        location: location.clone(),
        source: e,
    })?;
    let mut scan = Scan::new().map_err(|e| Error::Io {
        op: "create a temporary file in",
        path: std::env::temp_dir(),
        source: e,
    })?;
    let mut cache = BTreeMap::new();
    let policy = Capture {
        recipes: recipe::capture_set(recipes),
    };
    let total = image.manifest.layers.len();
    for (i, (desc, diff_id)) in image.manifest.layers.iter().zip(&diff_ids).enumerate() {
        progress.message(&format!(
            "reading layer {}/{total} {} ({})",
            i + 1,
            desc.digest.short(),
            human_bytes(desc.size)
        ));
        let blob = source.blob(desc)?;
        let keep = keep_for_sink && !cache.contains_key(&desc.digest);
        let layer_err = |e| Error::Layer {
            location: location.clone(),
            source: Box::new(e),
        };
        if keep {
            let path = cache_dir.join(desc.digest.hex());
            let file = File::create(&path).map_err(|e| Error::Io {
                op: "create",
                path: path.clone(),
                source: e,
            })?;
            let tee = Tee {
                inner: blob,
                copy: io::BufWriter::with_capacity(256 * 1024, file),
            };
            scan.add_layer(tee, desc, Some(diff_id), &policy)
                .map_err(layer_err)?;
            cache.insert(desc.digest.clone(), path);
        } else {
            scan.add_layer(blob, desc, Some(diff_id), &policy)
                .map_err(layer_err)?;
        }
    }
    Ok((scan, cache))
}

/// Converts one image: the whole pipeline.
pub fn convert(
    request: &ConvertRequest,
    progress: &mut dyn Progress,
) -> Result<ConvertReport, Error> {
    let destination = match &request.destination {
        Some(d) => d.clone(),
        None => default_destination(&request.source)?,
    };
    let mut source = transport::open_source(&request.source, &request.registry)?;
    let mut sink = transport::open_sink(&destination, &request.registry)?;

    progress.message(&format!("resolving {}", request.source));
    let image = resolve(source.as_mut(), &request.platform)?;
    let created = created_time(request.source_date_epoch, image.config.created());
    let mut options = request.generic.clone();
    options.mtime = created.1;

    let work = tempfile::Builder::new()
        .prefix("unroot-")
        .tempdir()
        .map_err(|e| Error::Io {
            op: "create a temporary directory in",
            path: std::env::temp_dir(),
            source: e,
        })?;
    let keep = !source.is_local() && !sink.can_reuse_blobs_of(source.location());
    let recipes = Recipe::builtin();
    let (scan, cache) = scan_layers(
        source.as_mut(),
        &image,
        &recipes,
        keep,
        work.path(),
        progress,
    )?;
    options.preferred_users = preferred_users(&MatchedRecipe::find(&recipes, &scan.view));

    let plan = generic::plan(&scan, &image.config, &options).map_err(|e| Error::Plan {
        location: request.source.to_string(),
        source: e,
    })?;

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
    let new_output = new_layer.as_ref().map(|l| OutputLayer {
        desc: Descriptor::new(media::OCI_LAYER_GZIP, l.digest.clone(), l.size),
        diff_id: l.diff_id.clone(),
        uncompressed_size: l.uncompressed_size,
    });
    let base_layers: Vec<OutputLayer> = image
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
    let base_name = base_name(&request.source);
    let output = assemble(
        &image.manifest,
        &image.config,
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

    progress.message(&format!("writing {destination}"));
    let mut blobs = Blobs {
        source: source.as_mut(),
        cache: &cache,
        new_layer: new_layer
            .as_ref()
            .map(|l| (l.digest.clone(), l.file.path().to_path_buf())),
    };
    let digest = sink.write(&output, &mut blobs)?;
    Ok(ConvertReport {
        source: request.source.clone(),
        source_digest: image.digest,
        platform: image.platform,
        destination,
        digest,
        plan,
        layers: scan.layers,
        new_layer: new_layer.map(|l| (l.digest, l.size, l.entries)),
    })
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

/// Sizes for people: `512 B`, `1.5 KiB`, `36.2 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Copies what it reads into a file (the blob cache of remote sources).
struct Tee<R, W: Write> {
    inner: R,
    copy: W,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        if n == 0 && !buf.is_empty() {
            self.copy.flush()?;
        }
        Ok(n)
    }
}

/// Gives the sink the new layer from its file, cached blobs from the cache, and the rest
/// from the source.
struct Blobs<'a> {
    source: &'a mut dyn Source,
    cache: &'a BTreeMap<Digest, PathBuf>,
    new_layer: Option<(Digest, PathBuf)>,
}

impl BlobProvider for Blobs<'_> {
    fn open(&mut self, desc: &Descriptor) -> Result<BlobReader, TransportError> {
        let local = match &self.new_layer {
            Some((d, p)) if *d == desc.digest => Some(p),
            _ => self.cache.get(&desc.digest),
        };
        match local {
            Some(path) => Ok(Box::new(
                File::open(path).map_err(TransportError::io("open", path))?,
            )),
            None => self.source.blob(desc),
        }
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

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(36 * 1024 * 1024), "36.0 MiB");
    }
}
