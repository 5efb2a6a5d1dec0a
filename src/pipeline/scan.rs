//! The one pass over an image's layers: each layer downloaded, decompressed, verified and
//! parsed on a worker thread, merged in order into the view.

use crate::control::FileError;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use crate::analyze::service_config;
use crate::plan::scripts::SCRIPT_CAP;

use crate::control::{panic_message, Control, Event};
use crate::error::Error;
use crate::layer::feed::{Fed, OrderedMerge};
use crate::layer::merged::LayerChange;
use crate::layer::scan::{read_changes, CapturePolicy};
use crate::layer::{ImagePath, LayerError, LayerInfo, Meta, Scan, Want};
use crate::model::Digest;
use crate::plan::generic::GenericCapture;
use crate::recipe::{self, Recipe};
use crate::transport::Source;

use super::layer_cache::{CaptureKey, LayerCache};
use super::metered::Metered;
use super::ResolvedImage;

/// What the scan keeps: what the generic conversion needs, plus the files the recipes
/// read (their config, in memory and capped), and small config files under `/etc` for
/// the services no recipe knows (up to a budget per layer).
struct Capture {
    recipes: globset::GlobSet,
    /// Where the command's script may be, and the names it may have (a link's target).
    scripts: (Vec<ImagePath>, Vec<Vec<u8>>),
    /// What it keeps, as a key of the layer cache.
    key: CaptureKey,
}

impl Capture {
    fn new(recipes: &[Recipe], config: &crate::model::ImageConfig) -> Capture {
        let scripts = crate::plan::scripts::candidates(config);
        let names: Vec<Vec<u8>> = scripts.iter().map(|p| p.file_name().to_vec()).collect();
        let mut parts: Vec<Vec<u8>> = Vec::new();
        for r in recipes {
            parts.extend(
                r.capture
                    .iter()
                    .map(|g| [b"capture ", g.as_bytes()].concat()),
            );
        }
        parts.extend(scripts.iter().map(|p| [b"script ", p.as_bytes()].concat()));
        parts.extend(
            names
                .iter()
                .map(|n| [b"script-name ", n.as_slice()].concat()),
        );
        Capture {
            recipes: recipe::capture_set(recipes),
            key: CaptureKey::new(parts.iter().map(Vec::as_slice)),
            scripts: (scripts, names),
        }
    }

    /// The policy of one layer: what it keeps depends on that layer alone, so a layer's
    /// scan can be kept and used again for another image ([`LayerCache`]).
    fn layer(&self) -> LayerCapture<'_> {
        LayerCapture {
            capture: self,
            configs: AtomicU64::new(0),
        }
    }
}

/// [`Capture`] for one layer.
struct LayerCapture<'a> {
    capture: &'a Capture,
    /// Bytes of config files this layer kept so far.
    configs: AtomicU64,
}

impl CapturePolicy for LayerCapture<'_> {
    fn want(&self, path: &ImagePath, meta: &Meta) -> Want {
        let Capture {
            recipes, scripts, ..
        } = self.capture;
        match GenericCapture.want(path, meta) {
            Want::Nothing if recipes.is_match(path.display()) => Want::Text,
            Want::Nothing
                if meta.size <= SCRIPT_CAP
                    && (scripts.0.contains(path)
                        || scripts.1.iter().any(|n| n.as_slice() == path.file_name())) =>
            {
                Want::Text
            }
            Want::Nothing if service_config::is_candidate(path, meta) => {
                let before = self.configs.fetch_add(meta.size, Ordering::Relaxed);
                if before + meta.size <= service_config::CONFIG_BUDGET {
                    Want::Text
                } else {
                    Want::Nothing
                }
            }
            other => other,
        }
    }
}

/// How many layers are read at once: `jobs`, or one per core up to four.
fn parallel_reads(jobs: usize, layers: usize) -> usize {
    let auto = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    let n = if jobs == 0 { auto } else { jobs };
    n.clamp(1, layers.max(1))
}

/// How much a scan may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanLimits {
    /// How many layers are read at once; 0: one per core, at most 4.
    pub jobs: usize,
    /// The bytes of bodies to re-own the scan may keep on disk (holes not counted).
    pub max_spool: u64,
}

impl Default for ScanLimits {
    fn default() -> Self {
        ScanLimits {
            jobs: 0,
            max_spool: crate::layer::scan::SPOOL_BUDGET,
        }
    }
}

/// What a scan gives: the scan, and the blobs kept on disk for the sink.
pub(crate) struct Scanned {
    pub scan: Scan,
    pub cache: BTreeMap<Digest, PathBuf>,
}

/// Reads every layer once into a [`Scan`], keeping the bodies the conversion and the
/// recipes need. Blobs of a remote source that the sink will need again are kept in
/// `dir` while they stream past (`keep_for_sink`).
///
/// Up to `jobs` layers are downloaded, decompressed and parsed at once, each on its own
/// thread. The lowest layer not yet merged puts its entries into the view as they are
/// read; a layer read ahead of its turn keeps them until then, and no more than `jobs`
/// layers are ever read ahead of the next one to merge, so memory stays bounded (a
/// single-layer image is never held as a list of entries). The first failure
/// (or a cancellation) stops the other reads; a worker that panics fails the scan with
/// [`Error::Internal`], not the process.
#[allow(clippy::too_many_arguments)] // One call site; each is a separate input of the scan.
pub(crate) fn scan_layers(
    source: &mut dyn Source,
    image: &ResolvedImage,
    recipes: &[Recipe],
    keep_for_sink: bool,
    dir: &Path,
    limits: &ScanLimits,
    layer_cache: Option<&LayerCache>,
    control: &Control,
) -> Result<Scanned, Error> {
    let jobs = limits.jobs;
    let location = source.location().to_string();
    let diff_ids = image.config.diff_ids().map_err(|e| Error::Config {
        location: location.clone(),
        source: e,
    })?;
    let mut scan = Scan::new_in(dir, limits.max_spool)
        .map_err(FileError::of("create a temporary file in", dir))?;
    let mut cache = BTreeMap::new();
    let policy = Capture::new(recipes, &image.config);
    let layers = &image.manifest.layers;
    let total = layers.len();
    let workers = parallel_reads(jobs, total);
    let events = &control.events;
    events.stage("reading layers", layers.iter().map(|l| l.size).sum());
    // Stops the reads of this scan: when one fails, or when the job is cancelled.
    let stop = control.cancel.child();
    let spool = scan.spool.clone();
    let merge = OrderedMerge::new(std::mem::take(&mut scan.view));
    type Done = (usize, Result<(LayerInfo, Fed), Error>);
    let (tx, rx) = mpsc::channel::<Done>();
    let outcome = std::thread::scope(|scope| -> Result<(), Error> {
        let mut started = 0;
        let mut merged = 0;
        let mut done: BTreeMap<usize, (LayerInfo, Fed)> = BTreeMap::new();
        let result = (|| loop {
            while started < total && started < merged + workers {
                let i = started;
                let desc = &layers[i];
                let label = format!("layer {}/{total} {}", i + 1, desc.digest.short());
                if let Some(hit) =
                    layer_cache.and_then(|c| c.get(&desc.digest, &diff_ids[i], &policy.key))
                {
                    events.event(&Event::LayerFromCache {
                        index: i,
                        count: total,
                        digest: &desc.digest,
                    });
                    let meter = events.meter(&label, desc.size);
                    let (tx, merge, spool) = (tx.clone(), &merge, &spool);
                    let location = location.clone();
                    scope.spawn(move || {
                        // As for a read: a panic is sent on as an error.
                        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            let mut feed = merge.feed(i);
                            let replayed = hit.replay(spool, &mut |c| feed.push(c));
                            meter.add(desc.size);
                            meter.finish();
                            replayed
                                .map(|()| (hit.info.clone(), feed.done()))
                                .map_err(|e| {
                                    FileError::of(
                                        "copy the kept bodies of a cached layer to a temporary file in",
                                        dir,
                                    )(e)
                                    .into()
                                })
                        }))
                        .unwrap_or_else(|panic| {
                            Err(Error::Internal {
                                location,
                                message: format!(
                                    "replaying cached layer {} failed: {}",
                                    desc.digest,
                                    panic_message(&*panic)
                                ),
                            })
                        });
                        let _ = tx.send((i, read));
                    });
                    started += 1;
                    continue;
                }
                events.event(&Event::ReadingLayer {
                    index: i,
                    count: total,
                    digest: &desc.digest,
                    size: desc.size,
                });
                let blob = source.blob(desc)?;
                let meter = events.meter(&label, desc.size);
                let reader = Metered::new(blob, meter).cancellable(stop.clone());
                let copy = if keep_for_sink && !cache.contains_key(&desc.digest) {
                    let path = dir.join(desc.digest.hex());
                    let file = File::create(&path).map_err(FileError::of("create", &path))?;
                    cache.insert(desc.digest.clone(), path);
                    Some(file)
                } else {
                    None
                };
                let (tx, merge, spool, policy, diff_id, location, stop) = (
                    tx.clone(),
                    &merge,
                    &spool,
                    &policy,
                    &diff_ids[i],
                    location.clone(),
                    stop.clone(),
                );
                scope.spawn(move || {
                    // A panic is sent on too, as an error, so the merging side never waits
                    // for a layer that will not come.
                    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        let policy = policy.layer();
                        let policy = &policy;
                        let mut feed = merge.feed(i);
                        let mut recorder = layer_cache.and_then(LayerCache::recorder);
                        let mut push = |c: LayerChange| {
                            if let Some(r) = &mut recorder {
                                r.record(&c);
                            }
                            feed.push(c)
                        };
                        match copy {
                            Some(file) => {
                                let tee = Tee {
                                    inner: reader,
                                    copy: io::BufWriter::with_capacity(256 * 1024, file),
                                };
                                let (d, p) = (Some(diff_id), policy);
                                read_changes(tee, desc, d, p, spool, &stop, &mut push)
                            }
                            None => {
                                let (d, p) = (Some(diff_id), policy);
                                read_changes(reader, desc, d, p, spool, &stop, &mut push)
                            }
                        }
                        .map(|info| {
                            if let (Some(cache), Some(recorder)) = (layer_cache, recorder) {
                                // A layer that cannot be kept is read again next time;
                                // this scan has what it needs either way.
                                let _ = cache.insert(&policy.capture.key, &info, recorder, spool);
                            }
                            (info, feed.done())
                        })
                        .map_err(|e| match e {
                            LayerError::Internal { message, .. } => Error::Internal {
                                location: location.clone(),
                                message: format!("reading layer {} failed: {message}", desc.digest),
                            },
                            e => Error::Layer {
                                location: location.clone(),
                                source: Box::new(e),
                            },
                        })
                    }))
                    .unwrap_or_else(|panic| {
                        Err(Error::Internal {
                            location,
                            message: format!(
                                "reading layer {} failed: {}",
                                desc.digest,
                                panic_message(&*panic)
                            ),
                        })
                    });
                    let _ = tx.send((i, read));
                });
                started += 1;
            }
            if merged == total {
                return Ok(());
            }
            let (i, read) = rx.recv().expect("a layer is being read");
            // The first failure, in whatever layer, ends the scan.
            done.insert(i, read?);
            while let Some((info, fed)) = done.remove(&merged) {
                merge.finish(merged, fed);
                scan.layers.push(info);
                merged += 1;
            }
        })();
        if result.is_err() {
            // The other reads are not needed: stop them rather than wait for them.
            stop.cancel();
        }
        result
    });
    outcome?;
    scan.view = merge.into_view();
    Ok(Scanned { scan, cache })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::Control;
    use crate::model::{Descriptor, ImageLocation};
    use crate::pipeline::{Contents, Session, SessionOptions};
    use crate::transport::{BlobReader, RawManifest, TransportError};

    /// A source whose layer reads panic: a bug in a reader must fail the job, not the
    /// process.
    struct Panicking(Box<dyn Source>);

    struct PanicOnRead;

    impl Read for PanicOnRead {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            panic!("a reader bug")
        }
    }

    impl Source for Panicking {
        fn location(&self) -> &ImageLocation {
            self.0.location()
        }
        fn manifest(&mut self) -> Result<RawManifest, TransportError> {
            self.0.manifest()
        }
        fn manifest_by_digest(&mut self, d: &Descriptor) -> Result<RawManifest, TransportError> {
            self.0.manifest_by_digest(d)
        }
        fn blob(&mut self, _: &Descriptor) -> Result<BlobReader, TransportError> {
            Ok(Box::new(PanicOnRead))
        }
        fn is_local(&self) -> bool {
            true
        }
    }

    #[test]
    fn a_worker_panic_is_the_scans_error() {
        let dir = tempfile::tempdir().unwrap();
        let loc = ImageLocation::parse(&format!("oci:{}:t", dir.path().display())).unwrap();
        let spec = "[[layer]]\n[[layer.entry]]\npath = \"/a\"\ntext = \"a\"\n[[layer]]\n[[layer.entry]]\npath = \"/b\"\ntext = \"b\"\n";
        crate::imagespec::ImageSpec::parse(spec, "test")
            .unwrap()
            .build(&loc)
            .unwrap();
        let session = Session::new(SessionOptions::default());
        let resolved = session.resolve(&loc, None).unwrap();
        let Contents::Image(image) = resolved.contents else {
            panic!("one image")
        };
        let mut source = Panicking(resolved.source);
        let result = scan_layers(
            &mut source,
            &image,
            &[],
            false,
            dir.path(),
            &ScanLimits {
                jobs: 2,
                ..Default::default()
            },
            None,
            &Control::silent(),
        );
        match result {
            Err(Error::Internal { message, .. }) => {
                assert!(message.contains("a reader bug"), "{message}")
            }
            Err(other) => panic!("another error: {other}"),
            Ok(_) => panic!("the scan succeeded"),
        }
    }
}
