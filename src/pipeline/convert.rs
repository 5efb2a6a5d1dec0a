//! `convert`: each image in a straight line, scan -> plan -> mutate -> sink; an index
//! becomes an index of its converted images, written after all of them.

use crate::control::FileError;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;

use crate::control::Event;
use crate::error::Error;
use crate::model::{media, Descriptor, Digest, ImageIndex, ImageLocation, ImageRef};
use crate::plan::{self, RecipeFailure};
use crate::transport::{BlobProvider, BlobReader, Sink, Source, TransportError};
use crate::write::image::{Lineage, BASE_DIGEST, BASE_NAME, RECIPES_DIGEST};
use crate::write::mutate::{mutate, MutateError, Mutation, SourceImage};

use super::analyze::{examine, plan_error, Examined};
use super::metered::Metered;
use super::request::{created_time, named_destination, CREATED_BY, SUFFIX};
use super::scan::scan_layers;
use super::RunTarget;
use super::{
    Contents, ConvertOutcome, ConvertRequest, ImageConversion, IndexConversion, NewLayerSummary,
    ResolvedImage, ResolvedIndex, Session,
};

impl Session {
    /// Converts an image: a single image becomes one image; an index (unless the request
    /// picks a platform) becomes an index of every platform converted, in the same order,
    /// attestations dropped, written after all of its images. Nothing is visible at the
    /// destination until everything it refers to is there.
    ///
    /// With `request.verify`, the converted image is first written to a layout in the
    /// work directory and run (see [`Session::verify`]); only when it serves is it written
    /// to the destination, else [`Error::NotVerified`] and nothing is written there.
    pub fn convert(&self, request: &ConvertRequest) -> Result<ConvertOutcome, Error> {
        let result = match (&request.learn, &request.verify) {
            (Some(options), _) => self.convert_learned(request, options),
            (None, Some(options)) if !request.dry_run => self.convert_verified(request, options),
            _ => self.convert_all(request),
        };
        self.settle(result)
    }

    /// Learns what the image needs (see [`Session::learn`]), then converts it with the
    /// learned recipe, when the image it made served; else [`Error::NotLearned`] and
    /// nothing is written to the destination.
    fn convert_learned(
        &self,
        request: &ConvertRequest,
        options: &super::LearnOptions,
    ) -> Result<ConvertOutcome, Error> {
        if !request.dry_run {
            // The destination is checked before the first run, as without --learn.
            drop(self.open_sink(&request.destination)?);
        }
        let learning = self.learn(&super::LearnRequest {
            conversion: request.clone(),
            options: options.clone(),
        })?;
        if !learning.proven && !request.dry_run {
            return Err(Error::NotLearned {
                destination: request.destination.to_string(),
                learning: Box::new(learning),
            });
        }
        let image =
            super::learn::with_recipe(&request.image, &learning.recipe, &learning.recipe_name)?;
        let learned = ConvertRequest {
            image,
            learn: None,
            verify: None,
            ..request.clone()
        };
        let mut outcome = self.convert_all(&learned)?;
        if let ConvertOutcome::Image(conversion) = &mut outcome {
            // The conversion is deterministic: the destination gets the image that ran.
            if learning.proven && learning.tried.as_ref() != Some(&conversion.manifest.digest) {
                return Err(Error::Unsupported {
                    location: request.destination.to_string(),
                    reason: format!(
                        "the conversion with the learned recipe gave {}, not the image that was run ({}): nothing is proven of it",
                        conversion.manifest.digest,
                        learning.tried.as_ref().map_or("none".into(), |d| d.to_string())
                    ),
                });
            }
            conversion.verified = learning.verification.as_ref().map(|v| v.summary());
            conversion.learning = Some(Box::new(learning));
        }
        Ok(outcome)
    }

    fn convert_verified(
        &self,
        request: &ConvertRequest,
        options: &super::VerifyOptions,
    ) -> Result<ConvertOutcome, Error> {
        let scratch = self.scratch()?;
        let trial_dir = scratch.path().join("trial");
        let trial_location = ImageLocation::OciLayout {
            dir: trial_dir,
            tag: Some("verify".into()),
        };
        // The destination is checked before the trial reads a layer, as without --verify.
        drop(self.open_sink(&request.destination)?);
        let mut trial = request.clone();
        trial.destination = trial_location.clone();
        if let ConvertOutcome::AlreadyConverted { .. } = self.convert_all(&trial)? {
            return self.convert_all(request);
        }
        let mut image = request.image.clone();
        image.source = trial_location;
        let verification = self.verify(&super::VerifyRequest {
            image,
            options: options.clone(),
        })?;
        if !verification.passed {
            return Err(Error::NotVerified {
                destination: request.destination.to_string(),
                summary: verification.summary(),
            });
        }
        drop(scratch);
        // The conversion is deterministic: the destination gets the image that was run.
        let mut outcome = self.convert_all(request)?;
        if let ConvertOutcome::Image(conversion) = &mut outcome {
            conversion.verified = Some(verification.summary());
        }
        Ok(outcome)
    }

    pub(super) fn convert_all(&self, request: &ConvertRequest) -> Result<ConvertOutcome, Error> {
        let from = &request.image;
        let mut resolved = self.resolve(&from.source, from.platform.as_ref())?;
        let asked = &request.destination;
        // A docker archive `--to` names no image for takes the source's name.
        let renamed;
        let request = match named_destination(asked, resolved.source.as_ref(), SUFFIX) {
            d if d != *asked => {
                renamed = ConvertRequest {
                    destination: d,
                    ..request.clone()
                };
                &renamed
            }
            _ => request,
        };
        let destination = &request.destination;
        let first = match &resolved.contents {
            Contents::Image(image) => Some(image.as_ref()),
            Contents::Index(index) => index.images.first().map(|(_, i)| i),
        };
        if let Some(c) = first.and_then(|image| {
            image
                .config
                .history_created_by()
                .into_iter()
                .find(|c| c.starts_with(CREATED_BY))
        }) {
            // A second conversion would only stack another layer on the first.
            let digest = match &resolved.contents {
                Contents::Image(image) => image.digest.clone(),
                Contents::Index(index) => index.digest.clone(),
            };
            let copied_to = if request.explicit_destination && !request.dry_run {
                // Copied, it keeps its name: `-unprivileged` is on it already.
                let destination = named_destination(asked, resolved.source.as_ref(), "");
                let written = self.copy_unchanged(&destination, &mut resolved)?;
                Some((destination, written))
            } else {
                None
            };
            return Ok(ConvertOutcome::AlreadyConverted {
                location: from.source.clone(),
                digest,
                created_by: c,
                copied_to,
            });
        }
        if let (Contents::Index(index), ImageLocation::DockerArchive { .. }) =
            (&resolved.contents, destination)
        {
            return Err(Error::Unsupported {
                location: destination.to_string(),
                reason: format!(
                    "{} has {} platforms and a docker archive holds one; pick one with `--platform`",
                    from.source,
                    index.images.len()
                ),
            });
        }
        let mut sink = if request.dry_run {
            None
        } else {
            Some(self.open_sink(destination)?)
        };
        let contents = resolved.contents.clone();
        let source = resolved.source.as_mut();
        match contents {
            Contents::Image(image) => {
                let mut converted = self.convert_image(request, source, sink.as_mut(), &image)?;
                if let Some(sink) = sink.as_mut() {
                    converted.digest = sink.commit(&converted.manifest)?;
                }
                Ok(ConvertOutcome::Image(Box::new(converted)))
            }
            Contents::Index(index) => self.convert_index(request, source, sink, index),
        }
    }

    fn convert_index(
        &self,
        request: &ConvertRequest,
        source: &mut dyn Source,
        mut sink: Option<Box<dyn Sink>>,
        index: ResolvedIndex,
    ) -> Result<ConvertOutcome, Error> {
        let destination = &request.destination;
        let mut platforms = Vec::new();
        for (entry, image) in &index.images {
            let name = image.platform_name();
            self.control().events.event(&Event::Platform {
                platform: &name,
                converting: true,
            });
            let converted = self.convert_image(request, source, sink.as_mut(), image)?;
            platforms.push((name, entry.clone(), converted));
        }
        // The new index: the same platforms in the same order, the index's annotations kept.
        let mut annotations = index.index.annotations.clone();
        match base_name(source) {
            Some(name) => annotations.insert(BASE_NAME.to_string(), name),
            None => annotations.remove(BASE_NAME),
        };
        annotations.insert(BASE_DIGEST.to_string(), index.digest.to_string());
        annotations.insert(
            RECIPES_DIGEST.to_string(),
            request.image.recipes.digest().to_string(),
        );
        let manifests = platforms
            .iter()
            .map(|(_, entry, converted)| {
                let mut d = converted.manifest.clone();
                d.platform = entry.platform.clone();
                d.annotations = entry.annotations.clone();
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
            self.control().events.event(&Event::WritingIndex {
                platforms: platforms.len(),
                destination,
            });
            sink.put_index(&bytes, &desc)?;
            sink.commit(&desc)?;
        }
        Ok(ConvertOutcome::Index(IndexConversion {
            source: request.image.source.clone(),
            source_digest: index.digest,
            destination: destination.clone(),
            digest: desc.digest,
            written: sink.is_some(),
            platforms: platforms
                .into_iter()
                .map(|(name, _, converted)| (name, converted))
                .collect(),
            dropped: index.attestations,
        }))
    }

    /// Converts one image and puts its blobs and manifest to the sink (no tag yet).
    fn convert_image(
        &self,
        request: &ConvertRequest,
        source: &mut dyn Source,
        mut sink: Option<&mut Box<dyn Sink>>,
        image: &ResolvedImage,
    ) -> Result<ImageConversion, Error> {
        let from = &request.image;
        let destination = &request.destination;
        let (created, mtime) = created_time(request.source_date_epoch, image.config.created());
        let scratch = self.scratch()?;
        let keep = !source.is_local()
            && sink
                .as_ref()
                .is_some_and(|s| !s.can_reuse_blobs_of(source.location()));

        // Scan: every layer once.
        let recipes = &from.recipes;
        let mut scanned = scan_layers(
            source,
            image,
            &recipes.all(),
            keep,
            scratch.path(),
            &self.limits(),
            self.layer_cache(),
            self.control(),
        )?;

        // Plan: recipes, then the generic conversion; a recipe that does not apply stops.
        let mut options = from.generic.clone();
        options.mtime = mtime;
        let mut plan = plan::build(
            &scanned.scan,
            &image.config,
            recipes,
            &options,
            RecipeFailure::Stop,
        )
        .map_err(|e| plan_error(&from.source, e))?;

        // The scan's buffers are freed; give their memory back before the new layer is
        // compressed, so the two do not add up.
        release_free_memory();

        // Mutate: the new layer, rewritten layers, config and manifest; meanwhile the sink
        // finds (or mounts) the base layers it has.
        let base_name = base_name(source);
        let recipes_digest = recipes.digest();
        let kept: Vec<Descriptor> = image
            .manifest
            .layers
            .iter()
            .zip(&scanned.scan.layers)
            .filter(|(_, info)| !(request.remap_ids && info.out_of_range > 0))
            .map(|(desc, _)| desc.clone())
            .collect();
        let origin = source.location().clone();
        let cache = &scanned.cache;
        let mut reopen = |desc: &Descriptor| -> Result<BlobReader, TransportError> {
            match cache.get(&desc.digest) {
                Some(path) => Ok(Box::new(
                    File::open(path).map_err(TransportError::io("open", path))?,
                )),
                None => source.blob(desc),
            }
        };
        let (mutation, prepared) = std::thread::scope(|scope| {
            let preparing = sink
                .as_mut()
                .map(|sink| scope.spawn(|| sink.prepare(&kept, &origin)));
            let mutation = mutate(
                &SourceImage {
                    location: &from.source,
                    manifest: &image.manifest,
                    config: &image.config,
                    layers: &scanned.scan.layers,
                    spool: &scanned.scan.spool,
                },
                &mut plan,
                if request.remap_ids {
                    Some(&mut reopen)
                } else {
                    None
                },
                &Lineage {
                    base_name: base_name.as_deref(),
                    base_digest: &image.digest,
                    recipes_digest: &recipes_digest,
                    created: &created,
                    created_by: &request.created_by,
                },
                scratch.path(),
                self.control(),
            );
            let prepared = preparing.map(|p| {
                p.join().unwrap_or_else(|panic| {
                    Err(TransportError::Internal {
                        message: crate::control::panic_message(&*panic),
                    })
                })
            });
            (mutation, prepared)
        });
        let mutation = mutation.map_err(mutate_error)?;
        prepared.transpose()?;

        // Sink: blobs, config, manifest (the tag comes with the commit).
        let written = sink.is_some();
        if !written {
            self.control()
                .events
                .event(&Event::WouldWrite { destination });
        }
        let digest = match sink.as_mut() {
            Some(sink) => {
                self.control()
                    .events
                    .event(&Event::WritingImage { destination });
                let mut local = scanned.cache.clone();
                let mut written = std::collections::BTreeSet::new();
                for l in mutation
                    .new_layer
                    .iter()
                    .chain(mutation.rewritten.iter().map(|(_, l)| l))
                {
                    local.insert(l.digest.clone(), l.file.path().to_path_buf());
                    written.insert(l.digest.clone());
                }
                let mut blobs = Blobs {
                    session: self,
                    source: &mut *source,
                    local: &local,
                    written: &written,
                };
                sink.put_image(&mutation.output, &mut blobs)?;
                mutation.output.manifest_desc.digest.clone()
            }
            // What the manifest would be (docker archives name images by their config).
            None if matches!(destination, ImageLocation::DockerArchive { .. }) => {
                mutation.output.config_desc.digest.clone()
            }
            None => mutation.output.manifest_desc.digest.clone(),
        };

        // The analysis is of the image as converted: the plan's layer merged over the view.
        let Mutation {
            output,
            new_layer,
            rewritten,
            layers,
        } = mutation;
        let view = &mut scanned.scan.view;
        for (i, _) in &rewritten {
            view.remap_ids(*i, crate::layer::reader::MAX_MAPPED_ID, plan.identity.uid);
        }
        view.apply_layer(plan.layer_changes());
        let converted =
            crate::model::ImageConfig::parse(&output.config).map_err(|e| Error::Config {
                location: destination.to_string(),
                source: e,
            })?;
        let content_bytes = plan.content_bytes();
        let analysis = examine(
            &from.source,
            image,
            Examined {
                view,
                layers: &layers,
                config: &converted,
            },
            &converted,
            plan,
            recipes,
            RunTarget {
                location: Some(destination.clone()),
                digest: (written && matches!(destination, ImageLocation::Registry(_)))
                    .then(|| digest.clone()),
                written,
            },
        );
        Ok(ImageConversion {
            verified: None,
            learning: None,
            destination: destination.clone(),
            digest,
            manifest: output.manifest_desc,
            written,
            new_layer: new_layer.map(|l| NewLayerSummary {
                digest: l.digest,
                size: l.size,
                entries: l.entries,
                content_bytes,
            }),
            analysis,
        })
    }
}

/// Returns freed heap memory to the system (glibc keeps it in its arenas otherwise).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only gives unused memory of the allocator back to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn mutate_error(e: MutateError) -> Error {
    match e {
        MutateError::Write { dir, source } => {
            FileError::of("write a layer in", &dir)(source).into()
        }
        MutateError::Read(e) => e.into(),
        MutateError::Assemble(e) => e.into(),
    }
}

/// The source's name for `org.opencontainers.image.base.name`: a registry reference (its
/// tag, no digest), or for a local source the name it records for the image it read (the
/// layout's `ref.name`, the docker archive's `RepoTags` entry), never the path or the tag
/// as typed, which would put this machine's directories into the image and make its digest
/// depend on how they were spelt. A local image that records no name has none to give.
fn base_name(source: &dyn Source) -> Option<String> {
    match source.location() {
        ImageLocation::Registry(r) => Some(strip_digest(r)),
        _ => source.recorded_name(),
    }
}

fn strip_digest(r: &ImageRef) -> String {
    match r.tag() {
        Some(t) => format!("{}:{t}", r.name()),
        None => r.name(),
    }
}

impl Session {
    /// Writes what `resolved` holds to `destination` as it is (an image converted
    /// already): blobs, configs and manifests byte for byte, the tag last.
    fn copy_unchanged(
        &self,
        destination: &ImageLocation,
        resolved: &mut super::Resolved,
    ) -> Result<Digest, Error> {
        let is_archive = matches!(destination, ImageLocation::DockerArchive { .. });
        if let (Contents::Index(index), true) = (&resolved.contents, is_archive) {
            return Err(Error::Unsupported {
                location: destination.to_string(),
                reason: format!(
                    "{} has {} platforms and a docker archive holds one; pick one with `--platform`",
                    resolved.source.location(),
                    index.images.len()
                ),
            });
        }
        let mut sink = self.open_sink(destination)?;
        self.control()
            .events
            .event(&Event::WritingImage { destination });
        let source = resolved.source.as_mut();
        let (local, written) = (BTreeMap::new(), std::collections::BTreeSet::new());
        let top = match &resolved.contents {
            Contents::Image(image) => {
                let raw = source.manifest()?;
                let output = unchanged(source, image, raw, is_archive)?;
                let top = output.manifest_desc.clone();
                let mut blobs = Blobs {
                    session: self,
                    source,
                    local: &local,
                    written: &written,
                };
                sink.put_image(&output, &mut blobs)?;
                top
            }
            Contents::Index(index) => {
                for (desc, image) in &index.images {
                    let raw = source.manifest_by_digest(desc)?;
                    let output = unchanged(source, image, raw, false)?;
                    let mut blobs = Blobs {
                        session: self,
                        source: &mut *source,
                        local: &local,
                        written: &written,
                    };
                    sink.put_image(&output, &mut blobs)?;
                }
                let raw = source.manifest()?;
                let media_type = raw
                    .media_type
                    .clone()
                    .unwrap_or_else(|| media::OCI_INDEX.to_string());
                let top = Descriptor::new(&media_type, raw.digest.clone(), raw.bytes.len() as u64);
                sink.put_index(&raw.bytes, &top)?;
                top
            }
        };
        Ok(sink.commit(&top)?)
    }
}

/// An image to write as it is: its manifest's own bytes, its config, its layers (their
/// uncompressed sizes counted only for a docker archive, which needs them).
fn unchanged(
    source: &mut dyn Source,
    image: &ResolvedImage,
    raw: crate::transport::RawManifest,
    count_sizes: bool,
) -> Result<crate::transport::OutputImage, Error> {
    let config_desc = image.manifest.config.clone();
    let reader = source.blob(&config_desc)?;
    let config = crate::transport::read_small_blob(reader, &config_desc, source.location())?;
    let location = source.location().clone();
    let diff_ids = image.config.diff_ids().map_err(|e| Error::Config {
        location: location.to_string(),
        source: e,
    })?;
    let mut layers = Vec::new();
    for (desc, diff_id) in image.manifest.layers.iter().zip(diff_ids) {
        let uncompressed_size = if count_sizes {
            let reader = source.blob(desc)?;
            let mut buffered = std::io::BufReader::with_capacity(128 * 1024, reader);
            let io = |e: std::io::Error| {
                Error::Transport(Box::new(TransportError::from_read(e, &location)))
            };
            let head = std::io::BufRead::fill_buf(&mut buffered).map_err(io)?;
            let compression = crate::layer::Compression::detect(head);
            let mut decoder = compression.decoder(buffered).map_err(io)?;
            std::io::copy(&mut decoder, &mut std::io::sink()).map_err(io)?
        } else {
            0
        };
        layers.push(crate::transport::OutputLayer {
            desc: desc.clone(),
            diff_id: diff_id.clone(),
            uncompressed_size,
        });
    }
    Ok(crate::transport::OutputImage {
        manifest_desc: Descriptor::new(
            &raw.media_type.clone().unwrap_or_else(|| {
                image
                    .manifest
                    .media_type
                    .clone()
                    .unwrap_or_else(|| media::OCI_MANIFEST.to_string())
            }),
            raw.digest.clone(),
            raw.bytes.len() as u64,
        ),
        manifest: raw.bytes,
        config,
        config_desc,
        layers,
    })
}

/// Gives the sink the layers written here (the new one, rewritten ones) and the cached
/// ones from their files, and the rest from the source.
struct Blobs<'a> {
    session: &'a Session,
    source: &'a mut dyn Source,
    local: &'a BTreeMap<Digest, PathBuf>,
    /// The blobs this conversion wrote.
    written: &'a std::collections::BTreeSet<Digest>,
}

impl BlobProvider for Blobs<'_> {
    fn open(&mut self, desc: &Descriptor) -> Result<BlobReader, TransportError> {
        let reader: BlobReader = match self.local.get(&desc.digest) {
            Some(path) => Box::new(File::open(path).map_err(TransportError::io("open", path))?),
            None => self.source.blob(desc)?,
        };
        let control = self.session.control();
        let meter = control
            .events
            .meter(&format!("writing {}", desc.digest.short()), desc.size);
        Ok(Box::new(
            Metered::new(reader, meter).cancellable(control.cancel.clone()),
        ))
    }

    fn origin(&self) -> &ImageLocation {
        self.source.location()
    }

    fn is_new(&self, desc: &Descriptor) -> bool {
        self.written.contains(&desc.digest)
    }
}
