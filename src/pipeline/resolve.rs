//! Resolving: the one place that turns a location into an image, or an index of images,
//! with every manifest and config fetched, verified and checked (no layer bytes yet).

use crate::control::Event;
use crate::error::Error;
use crate::model::{
    media, Descriptor, Digest, ImageConfig, ImageIndex, ImageLocation, ImageManifest, Manifest,
    Platform,
};
use crate::transport::{self, RawManifest, Source};

use super::Session;

/// A single-platform image, resolved from a source.
#[derive(Clone, Debug)]
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

/// An index with its images.
#[derive(Clone, Debug)]
pub struct ResolvedIndex {
    /// The index's digest.
    pub digest: Digest,
    /// The index.
    pub index: ImageIndex,
    /// Its images, in its order, each with its entry.
    pub images: Vec<(Descriptor, ResolvedImage)>,
    /// Its attestation entries, which describe the images rather than being one.
    pub attestations: Vec<Descriptor>,
}

/// What a location names.
#[derive(Clone, Debug)]
pub enum Contents {
    /// One image (a platform picked from an index counts as one).
    Image(Box<ResolvedImage>),
    /// An index of images.
    Index(ResolvedIndex),
}

/// A resolved location, with the source to read its layers from.
pub struct Resolved {
    /// The source.
    pub source: Box<dyn Source>,
    /// What it holds.
    pub contents: Contents,
}

impl ResolvedImage {
    /// Its platform as `os/arch[/variant]`, `unknown` when the index does not say.
    pub fn platform_name(&self) -> String {
        self.platform
            .as_ref()
            .map_or_else(|| "unknown".to_string(), |p| p.to_string())
    }
}

impl Session {
    /// Opens `location` and fetches what it names: an image, or an index and each of its
    /// images; with `platform`, the one image of the index for it (an error listing the
    /// platforms there are when there is none).
    pub fn resolve(
        &self,
        location: &ImageLocation,
        platform: Option<&Platform>,
    ) -> Result<Resolved, Error> {
        let mut source = self.open_source(location)?;
        self.control().events.event(&Event::Resolving { location });
        let raw = source.manifest()?;
        let contents = match parse(&raw, location)? {
            Manifest::Image(_) => {
                let image = load_image(source.as_mut(), raw, None)?;
                // One image has one platform, its config's: another one asked for is not
                // there, rather than silently this one.
                if let Some(wanted) = platform {
                    let (os, arch) = (image.config.os(), image.config.architecture());
                    let has = match (os, arch) {
                        (Some(os), Some(arch)) => Some(Platform {
                            os: os.to_string(),
                            architecture: arch.to_string(),
                            os_version: None,
                            os_features: None,
                            variant: image.config.variant().map(str::to_string),
                        }),
                        _ => None,
                    };
                    if let Some(has) = has.filter(|h| !h.satisfies(wanted)) {
                        return Err(Error::NoPlatform {
                            location: location.to_string(),
                            wanted: wanted.to_string(),
                            available: vec![has.to_string()],
                        });
                    }
                }
                Contents::Image(Box::new(image))
            }
            Manifest::Index(index) => match platform {
                Some(p) => {
                    let desc = index.select(p).cloned().ok_or_else(|| Error::NoPlatform {
                        location: location.to_string(),
                        wanted: p.to_string(),
                        available: index.platforms(),
                    })?;
                    let child = source.manifest_by_digest(&desc)?;
                    Contents::Image(Box::new(load_image(
                        source.as_mut(),
                        child,
                        desc.platform.clone(),
                    )?))
                }
                None => {
                    let mut images = Vec::new();
                    let mut attestations = Vec::new();
                    for desc in &index.manifests {
                        if ImageIndex::is_attestation(desc) {
                            attestations.push(desc.clone());
                            continue;
                        }
                        let child = source.manifest_by_digest(desc)?;
                        let image = load_image(source.as_mut(), child, desc.platform.clone())?;
                        images.push((desc.clone(), image));
                    }
                    Contents::Index(ResolvedIndex {
                        digest: raw.digest,
                        index,
                        images,
                        attestations,
                    })
                }
            },
        };
        Ok(Resolved { source, contents })
    }
}

fn parse(raw: &RawManifest, location: &ImageLocation) -> Result<Manifest, Error> {
    Manifest::parse(&raw.bytes, raw.media_type.as_deref()).map_err(|e| Error::Manifest {
        location: location.to_string(),
        source: e,
    })
}

/// Parses an image manifest, checks it, and fetches its config.
fn load_image(
    source: &mut dyn Source,
    raw: RawManifest,
    picked: Option<Platform>,
) -> Result<ResolvedImage, Error> {
    let location = source.location().to_string();
    let manifest = match parse(&raw, source.location())? {
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
    let config_error = |source| Error::Config {
        location: location.clone(),
        source,
    };
    let config = ImageConfig::parse(&config_bytes).map_err(config_error)?;
    if let Some(os) = config.os().filter(|os| *os != "linux") {
        return Err(unsupported(format!(
            "it is a `{os}` image; unroot converts Linux images"
        )));
    }
    let diff_ids = config.diff_ids().map_err(config_error)?;
    if diff_ids.len() != manifest.layers.len() {
        return Err(config_error(crate::model::config::ConfigError(format!(
            "it lists {} diff_ids for {} layers",
            diff_ids.len(),
            manifest.layers.len()
        ))));
    }
    Ok(ResolvedImage {
        manifest,
        digest: raw.digest,
        config,
        platform: picked,
    })
}
