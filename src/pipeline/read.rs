//! Reading: the manifest and config of one platform, then one pass over the layers.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use super::progress::Metered;
use super::Progress;
use crate::model::human_bytes;
use crate::recipe::MatchedRecipe;
use crate::error::Error;
use crate::layer::scan::{read_unmerged, CapturePolicy, UnmergedLayer};
use crate::layer::{ImagePath, Meta, Scan, Want};
use crate::model::{
    media, Descriptor, Digest, ImageConfig, ImageIndex, ImageManifest, Manifest, Platform,
};
use crate::plan::generic::GenericCapture;
use crate::recipe::{self, Recipe};
use crate::transport::{self, RawManifest, Source};

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

/// What a source's location names.
pub enum Top {
    /// A single-platform image manifest.
    Image(RawManifest),
    /// An index of images.
    Index(ImageIndex, RawManifest),
}

/// Fetches and parses the manifest or index the source names.
pub fn resolve_top(source: &mut dyn Source) -> Result<Top, Error> {
    let location = source.location().to_string();
    let raw = source.manifest()?;
    match Manifest::parse(&raw.bytes, raw.media_type.as_deref()).map_err(|e| Error::Manifest {
        location,
        source: e,
    })? {
        Manifest::Index(index) => Ok(Top::Index(index, raw)),
        Manifest::Image(_) => Ok(Top::Image(raw)),
    }
}

/// The index entry for `platform`, or an error listing those there are.
pub fn select(
    index: &ImageIndex,
    platform: &Platform,
    location: &str,
) -> Result<Descriptor, Error> {
    index
        .select(platform)
        .cloned()
        .ok_or_else(|| Error::NoPlatform {
            location: location.to_string(),
            wanted: platform.to_string(),
            available: index.platforms(),
        })
}

/// Fetches the manifest (picking the platform from an index) and the config, and checks
/// that the image is one unroot can convert.
pub fn resolve(source: &mut dyn Source, platform: &Platform) -> Result<ResolvedImage, Error> {
    let location = source.location().to_string();
    match resolve_top(source)? {
        Top::Image(raw) => load_image(source, raw, None),
        Top::Index(index, _) => {
            let desc = select(&index, platform, &location)?;
            let child = source.manifest_by_digest(&desc)?;
            load_image(source, child, desc.platform.clone())
        }
    }
}

/// Parses an image manifest, checks it, and fetches its config.
pub fn load_image(
    source: &mut dyn Source,
    raw: RawManifest,
    picked: Option<Platform>,
) -> Result<ResolvedImage, Error> {
    let location = source.location().to_string();
    let manifest_err = |source| Error::Manifest {
        location: location.clone(),
        source,
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

/// How many layers are read at once: `jobs`, or one per core up to four.
fn parallel_reads(jobs: usize, layers: usize) -> usize {
    let auto = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    let n = if jobs == 0 { auto } else { jobs };
    n.clamp(1, layers.max(1))
}

/// Reads every layer once into a [`Scan`], keeping the bodies the conversion and the
/// recipes need. Blobs of a remote source that the sink will need again are kept in
/// `cache_dir` while they stream past.
///
/// Up to `jobs` layers are downloaded, decompressed and parsed at once, each on its own
/// thread; they are merged in order as they finish, and no more than `jobs` layers are
/// ever read ahead of the next one to merge, so memory stays bounded.
pub fn scan_layers(
    source: &mut dyn Source,
    image: &ResolvedImage,
    recipes: &[Recipe],
    keep_for_sink: bool,
    cache_dir: &Path,
    jobs: usize,
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
    let layers = &image.manifest.layers;
    let total = layers.len();
    let workers = parallel_reads(jobs, total);
    progress.stage("reading layers", layers.iter().map(|l| l.size).sum());
    let cancel = Arc::new(AtomicBool::new(false));
    let spool = scan.spool.clone();
    let (tx, rx) = mpsc::channel::<(usize, std::thread::Result<Result<UnmergedLayer, Error>>)>();
    let outcome = std::thread::scope(|scope| -> Result<(), Error> {
        let mut started = 0;
        let mut merged = 0;
        let mut running = 0;
        let mut done: BTreeMap<usize, UnmergedLayer> = BTreeMap::new();
        let result = (|| loop {
            while running < workers && started < total && started < merged + workers {
                let i = started;
                let desc = &layers[i];
                progress.message(&format!(
                    "reading layer {}/{total} {} ({})",
                    i + 1,
                    desc.digest.short(),
                    human_bytes(desc.size)
                ));
                let blob = source.blob(desc)?;
                let meter = progress.meter(
                    &format!("layer {}/{total} {}", i + 1, desc.digest.short()),
                    desc.size,
                );
                let reader = Metered::new(blob, meter).cancellable(cancel.clone());
                let copy = if keep_for_sink && !cache.contains_key(&desc.digest) {
                    let path = cache_dir.join(desc.digest.hex());
                    let file = File::create(&path).map_err(|e| Error::Io {
                        op: "create",
                        path: path.clone(),
                        source: e,
                    })?;
                    cache.insert(desc.digest.clone(), path);
                    Some(file)
                } else {
                    None
                };
                let (tx, spool, policy, diff_id, location) =
                    (tx.clone(), &spool, &policy, &diff_ids[i], location.clone());
                scope.spawn(move || {
                    // A panic is sent on too, so the merging side never waits for a layer
                    // that will not come.
                    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        match copy {
                            Some(file) => {
                                let tee = Tee {
                                    inner: reader,
                                    copy: io::BufWriter::with_capacity(256 * 1024, file),
                                };
                                read_unmerged(tee, desc, Some(diff_id), policy, spool)
                            }
                            None => read_unmerged(reader, desc, Some(diff_id), policy, spool),
                        }
                        .map_err(|e| Error::Layer {
                            location,
                            source: Box::new(e),
                        })
                    }));
                    let _ = tx.send((i, read));
                });
                started += 1;
                running += 1;
            }
            if merged == total {
                return Ok(());
            }
            let (i, read) = rx.recv().expect("a layer is being read");
            running -= 1;
            match read {
                // The first failure, in whatever layer, ends the scan.
                Ok(read) => done.insert(i, read?),
                Err(panic) => {
                    cancel.store(true, Ordering::Relaxed);
                    std::panic::resume_unwind(panic)
                }
            };
            while let Some(read) = done.remove(&merged) {
                scan.merge(read);
                merged += 1;
            }
        })();
        if result.is_err() {
            // The other reads are not needed: stop them rather than wait for them.
            cancel.store(true, Ordering::Relaxed);
        }
        result
    });
    outcome?;
    Ok((scan, cache))
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
