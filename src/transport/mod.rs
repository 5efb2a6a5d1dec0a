//! Transports: where images are read from ([`Source`]) and written to ([`Sink`]).
//!
//! Invariants: a source never modifies what it reads; a sink makes the image visible
//! (tag, `index.json`, archive file) only after every blob it refers to is in place, and
//! leaves nothing behind when it fails.

use std::io::{self, Read};
use std::path::PathBuf;

use crate::control::Control;
use crate::model::digest::DigestMismatch;
use crate::model::manifest::ManifestError;
use crate::model::{Descriptor, Digest, ImageLocation};
use auth::AuthError;

pub mod auth;
pub mod blobstore;
pub mod docker_archive;
pub mod oci_archive;
pub mod oci_layout;
pub mod registry;
pub mod stale;

/// A manifest as fetched: bytes exactly as stored, what the transport said its type is,
/// and its digest (verified when the reference pinned one).
#[derive(Clone, Debug)]
pub struct RawManifest {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// The media type the transport reported, if any.
    pub media_type: Option<String>,
    /// The digest of the bytes.
    pub digest: Digest,
}

/// A blob's bytes, not yet verified.
pub type BlobReader = Box<dyn Read + Send>;

/// Where an image is read from.
pub trait Source {
    /// The location it reads, for messages.
    fn location(&self) -> &ImageLocation;

    /// The manifest (or index) the location names.
    fn manifest(&mut self) -> Result<RawManifest, TransportError>;

    /// A manifest named by digest, e.g. an index entry.
    fn manifest_by_digest(&mut self, desc: &Descriptor) -> Result<RawManifest, TransportError>;

    /// A blob's bytes. They are not verified here: callers verify what they read.
    fn blob(&mut self, desc: &Descriptor) -> Result<BlobReader, TransportError>;

    /// Whether reading a blob again is cheap (local files) rather than a download.
    fn is_local(&self) -> bool;

    /// The name a local source records for the image it read (a layout's `ref.name`, a
    /// docker archive's `RepoTags` entry), however the tag or reference was spelt; a
    /// registry's name is its location.
    fn recorded_name(&self) -> Option<String> {
        None
    }
}

/// One layer of an image to write.
#[derive(Clone, Debug)]
pub struct OutputLayer {
    /// Its descriptor in the manifest.
    pub desc: Descriptor,
    /// The digest of its uncompressed tar.
    pub diff_id: Digest,
    /// The size of its uncompressed tar.
    pub uncompressed_size: u64,
}

/// A complete image to write: manifest, config and layers.
#[derive(Clone, Debug)]
pub struct OutputImage {
    /// The manifest's bytes.
    pub manifest: Vec<u8>,
    /// The manifest's descriptor (media type, digest, size).
    pub manifest_desc: Descriptor,
    /// The config's bytes.
    pub config: Vec<u8>,
    /// The config's descriptor.
    pub config_desc: Descriptor,
    /// The layers, base first.
    pub layers: Vec<OutputLayer>,
}

/// Gives a sink the bytes of the layers it must copy.
pub trait BlobProvider {
    /// Opens a layer blob (verified by the caller or the sink as it is written).
    fn open(&mut self, desc: &Descriptor) -> Result<BlobReader, TransportError>;

    /// Where the base layers come from, so that a registry sink can mount them.
    fn origin(&self) -> &ImageLocation;

    /// Whether the blob was made by this conversion (so no other repository has it to
    /// mount).
    fn is_new(&self, desc: &Descriptor) -> bool {
        let _ = desc;
        false
    }
}

/// Where an image is written to. A sink may be prepared on one thread while the caller
/// works on another, so it is `Send`.
pub trait Sink: Send {
    /// Whether the sink can take blobs of `source` without their bytes (the same
    /// registry, by mounting), so the caller need not keep a copy of them.
    fn can_reuse_blobs_of(&self, source: &ImageLocation) -> bool {
        let _ = source;
        false
    }

    /// Gets ready for an image whose blobs include `blobs` (of `origin`), while the rest
    /// of the image is still being made: a registry finds which it has and mounts those of
    /// the same registry. Nothing becomes visible.
    fn prepare(
        &mut self,
        blobs: &[Descriptor],
        origin: &ImageLocation,
    ) -> Result<(), TransportError> {
        let _ = (blobs, origin);
        Ok(())
    }

    /// Writes an image's blobs and its manifest; nothing is visible under the tag yet.
    fn put_image(
        &mut self,
        image: &OutputImage,
        blobs: &mut dyn BlobProvider,
    ) -> Result<(), TransportError>;

    /// Writes an index whose manifests were put before; nothing is visible yet.
    fn put_index(&mut self, index: &[u8], desc: &Descriptor) -> Result<(), TransportError>;

    /// Makes `top` (a manifest or index put before) visible under the location's tag and
    /// ends the write. Returns the digest under which the image is known at the destination
    /// (the manifest's; the config's for docker archives). A sink dropped before its commit
    /// removes what it can of what it wrote.
    fn commit(&mut self, top: &Descriptor) -> Result<Digest, TransportError>;

    /// Writes one image and tags it: blobs first, the manifest and tag last.
    fn write(
        &mut self,
        image: &OutputImage,
        blobs: &mut dyn BlobProvider,
    ) -> Result<Digest, TransportError> {
        self.put_image(image, blobs)?;
        self.commit(&image.manifest_desc)
    }
}

/// Opens a source for a location; registries are reached through `pool`, and `control`
/// is the job's (its events and cancellation).
pub fn open_source(
    location: &ImageLocation,
    pool: &registry::RegistryPool,
    control: &Control,
) -> Result<Box<dyn Source>, TransportError> {
    Ok(match location {
        ImageLocation::Registry(r) => Box::new(registry::RegistrySource::new(
            pool,
            location.clone(),
            r.clone(),
            control,
        )?),
        ImageLocation::OciLayout { dir, tag } => {
            Box::new(oci_layout::open_source(dir, tag.as_deref())?)
        }
        ImageLocation::OciArchive { file, tag } => {
            Box::new(oci_archive::open_source(file, tag.as_deref())?)
        }
        ImageLocation::DockerArchive { file, reference } => Box::new(
            docker_archive::DockerArchiveSource::open(file, reference.as_deref())?,
        ),
    })
}

/// Opens a sink for a location.
pub fn open_sink(
    location: &ImageLocation,
    pool: &registry::RegistryPool,
    control: &Control,
) -> Result<Box<dyn Sink>, TransportError> {
    check_writable(location)?;
    Ok(match location {
        ImageLocation::Registry(r) => {
            let sink = registry::RegistrySink::new(pool, location.clone(), r.clone(), control)?;
            sink.check_push()?;
            Box::new(sink)
        }
        ImageLocation::OciLayout { dir, tag } => {
            Box::new(oci_layout::OciLayoutSink::new(dir, tag.as_deref()))
        }
        ImageLocation::OciArchive { file, tag } => {
            Box::new(oci_archive::OciArchiveSink::new(file, tag.as_deref()))
        }
        ImageLocation::DockerArchive { file, reference } => Box::new(
            docker_archive::DockerArchiveSink::new(file, reference.as_deref()),
        ),
    })
}

/// Checks, before any layer is read, that a local destination can be written where its
/// files will go: a file is made and removed in the layout (when it exists) or in the
/// nearest existing directory above the layout or archive. A registry's push access is
/// checked by its sink (an upload started and cancelled).
fn check_writable(location: &ImageLocation) -> Result<(), TransportError> {
    let target = match location {
        ImageLocation::Registry(_) => return Ok(()),
        ImageLocation::OciLayout { dir, .. } if dir.is_dir() => dir.clone(),
        ImageLocation::OciLayout { dir: path, .. }
        | ImageLocation::OciArchive { file: path, .. }
        | ImageLocation::DockerArchive { file: path, .. } => {
            let mut dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            while !dir.exists() {
                match dir.parent() {
                    Some(p) if !p.as_os_str().is_empty() => dir = p.to_path_buf(),
                    _ => {
                        dir = PathBuf::from(".");
                        break;
                    }
                }
            }
            dir
        }
    };
    tempfile::Builder::new()
        .prefix(&stale::prefix("probe"))
        .tempfile_in(&target)
        .map(drop)
        .map_err(TransportError::io("create a file in", &target))
}

/// Why reading or writing an image failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The manifest, tag, repository or blob does not exist.
    #[error("{what} not found at {location}")]
    NotFound {
        /// The location asked.
        location: String,
        /// What was missing.
        what: String,
        /// Whether the location is a local file or directory (not a registry).
        local: bool,
    },
    /// The registry wants credentials, or refused the ones given.
    #[error("{registry} refused access to {location} (HTTP 401 unauthorized){}", if *.had_credentials { ": the credentials were not accepted" } else { ": it needs credentials" })]
    Unauthorized {
        /// The registry host.
        registry: String,
        /// The location asked.
        location: String,
        /// Whether credentials were sent.
        had_credentials: bool,
    },
    /// The registry understood but refused (HTTP 403, `DENIED`).
    #[error("{location}: access denied: {message}")]
    Denied {
        /// The location asked.
        location: String,
        /// The registry's words.
        message: String,
    },
    /// The registry answered with an error.
    #[error("{location}: the registry answered {message}")]
    Registry {
        /// The location asked.
        location: String,
        /// Status and message.
        message: String,
    },
    /// The registry could not be reached.
    #[error("cannot reach {registry}: {message}")]
    Connect {
        /// The registry host.
        registry: String,
        /// What failed.
        message: String,
        /// Whether it looked like a TLS problem.
        tls: bool,
    },
    /// A registry's answer broke off while it was being read.
    #[error("{location}: the transfer broke off: {message}")]
    BrokenOff {
        /// The location read.
        location: String,
        /// What the connection said.
        message: String,
    },
    /// A local file operation failed.
    #[error(transparent)]
    Io(#[from] crate::control::FileError),
    /// The tag is not in the layout or archive.
    #[error("{location} has no image tagged `{tag}`; it has: {}", list(available))]
    NoSuchTag {
        /// The layout or archive.
        location: String,
        /// The tag asked for.
        tag: String,
        /// The tags it has.
        available: Vec<String>,
    },
    /// No tag was given and the layout or archive holds several images.
    #[error("{location} holds {} images, so it needs a tag; it has: {}", available.len(), list(available))]
    Ambiguous {
        /// The layout or archive.
        location: String,
        /// The tags it has.
        available: Vec<String>,
    },
    /// The layout or archive is malformed.
    #[error("{location} is not a valid {kind}: {reason}")]
    Invalid {
        /// The layout or archive.
        location: String,
        /// What it should have been.
        kind: &'static str,
        /// What is wrong.
        reason: String,
        /// Whether the location is a local file or directory (not a registry).
        local: bool,
    },
    /// A blob's bytes do not match its descriptor.
    #[error("{location}: {mismatch}")]
    Corrupt {
        /// Where it was read.
        location: String,
        /// What did not match.
        mismatch: DigestMismatch,
        /// Whether the location is a local file or directory (not a registry).
        local: bool,
    },
    /// A manifest cannot be used.
    #[error("{location}: {source}")]
    Manifest {
        /// Where it was read.
        location: String,
        /// Why.
        source: ManifestError,
    },
    /// A registry kept failing with errors that retrying could have fixed.
    #[error("{last} (gave up after {attempts} {} in {seconds} s{}{})", if *.attempts == 1 { "attempt" } else { "attempts" }, match .asked_to_wait { Some(s) => format!("; it asked to wait {s} s more"), None => String::new() }, match .budget { Some(s) => format!("; another would pass the {s} s retry budget"), None => String::new() })]
    GaveUp {
        /// How many times it was tried.
        attempts: u32,
        /// How long it was tried.
        seconds: u64,
        /// A `Retry-After` longer than unroot waits, in seconds.
        asked_to_wait: Option<u64>,
        /// The budget of the request's attempts, in seconds, when another attempt would
        /// have passed it.
        budget: Option<u64>,
        /// The last error.
        last: Box<TransportError>,
    },
    /// The destination cannot be written as asked.
    #[error("cannot write {location}: {reason}")]
    Refused {
        /// The destination.
        location: String,
        /// Why.
        reason: String,
    },
    /// The credentials for a registry could not be had.
    #[error("no credentials for {registry}: {source}")]
    Credentials {
        /// The registry.
        registry: String,
        /// Why.
        source: AuthError,
    },
    /// The registry's token service would have the credentials in plain text.
    #[error("{registry} sends logins to the token service `{realm}`, which is not HTTPS: the credentials were not sent")]
    Insecure {
        /// The registry.
        registry: String,
        /// The token service.
        realm: String,
    },
    /// The job was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// A worker of the transfer failed in a way it should not (a panic).
    #[error("{message}")]
    Internal {
        /// What happened.
        message: String,
    },
}

fn list(tags: &[String]) -> String {
    if tags.is_empty() {
        "no tagged images".to_string()
    } else {
        tags.iter()
            .map(|t| format!("`{t}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl TransportError {
    /// A suggestion for the user, when one helps.
    pub fn hint(&self) -> Option<String> {
        match self {
            TransportError::Unauthorized {
                registry,
                had_credentials,
                ..
            } => Some(if *had_credentials {
                format!("check the user and password for `{registry}` (`--creds USER:PASS`, or the entry in your auth file)")
            } else {
                format!("pass `--creds USER:PASS`, or log in with `docker login {registry}` or `skopeo login {registry}`")
            }),
            TransportError::Connect {
                tls: true,
                registry,
                ..
            } => Some(format!(
                "if `{registry}` serves plain HTTP, or a certificate this machine does not trust, pass `--tls-verify=false` (or add its CA to the system's trusted certificates)"
            )),
            TransportError::NotFound { local: false, .. } => Some(
                "check the repository name and tag (`skopeo list-tags docker://REPO` lists tags)"
                    .to_string(),
            ),
            TransportError::NotFound { local: true, what, .. } => Some(if what.starts_with("blob ") || what.starts_with("manifest ") {
                "the layout or archive is incomplete (its index names what it does not hold): write it again, e.g. with `skopeo copy`".to_string()
            } else {
                LOCAL_KINDS.to_string()
            }),
            TransportError::Corrupt { local: true, .. } => Some(
                "a file of the image was changed or damaged after it was written: write the image again (e.g. with `skopeo copy`)".to_string(),
            ),
            TransportError::Invalid { local: true, .. } => Some(format!(
                "{LOCAL_KINDS}; if it is one, write it again (e.g. with `skopeo copy`)"
            )),
            TransportError::NoSuchTag {
                location,
                available,
                tag,
            } => available.first().map(|t| {
                // The location as typed, without the tag it asked for.
                let base = location.strip_suffix(&format!(":{tag}")).unwrap_or(location);
                format!("name one, e.g. `{base}:{t}`")
            }),
            TransportError::Ambiguous {
                location,
                available,
            } => available
                .first()
                .map(|t| format!("name one, e.g. `{location}:{t}`")),
            TransportError::Credentials { source: AuthError::BadFile { path, .. }, .. } => Some(format!(
                "fix `{path}` (it must be JSON as `docker login` or `podman login` write it), or point `REGISTRY_AUTH_FILE` at another file"
            )),
            TransportError::Credentials { source: AuthError::Helper { helper, .. }, .. } => Some(format!(
                "check that `docker-credential-{helper}` is on PATH and logged in, or pass `--creds USER:PASS`"
            )),
            TransportError::Insecure { registry, .. } => Some(format!(
                "anyone on the network could read them; ask the registry's operator to serve its token service over HTTPS, or pass `--tls-verify=false` if you trust the network to `{registry}`"
            )),
            TransportError::BrokenOff { .. } => Some(
                "the registry or the network failed mid-transfer: try again, or allow more retries with `--retries N`".to_string(),
            ),
            TransportError::GaveUp { last, .. } => Some(last.hint().unwrap_or_else(|| {
                "the registry is failing or overloaded: try again later, or allow more with `--retries N`".to_string()
            })),
            _ => None,
        }
    }

    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> TransportError {
        let file = crate::control::FileError::of(op, &path.into());
        move |source| TransportError::Io(file(source))
    }
}

/// What each local transport names, for a path that is missing or is not what it says.
const LOCAL_KINDS: &str = "check the path: `oci:DIR` is a directory holding an OCI layout (`index.json`), `oci-archive:FILE` and `docker-archive:FILE` are tar files";

/// Reads a blob fully into memory, verifying it; for manifests and configs only, which are
/// small (capped at 4 MiB as registries cap manifests).
pub fn read_small_blob(
    reader: BlobReader,
    desc: &Descriptor,
    location: &ImageLocation,
) -> Result<Vec<u8>, TransportError> {
    const CAP: u64 = 4 * 1024 * 1024;
    if desc.size > CAP {
        return Err(TransportError::Invalid {
            location: location.to_string(),
            kind: "image",
            reason: format!(
                "{} claims {} bytes, more than the 4 MiB a config may have",
                desc.digest, desc.size
            ),
            local: location.is_local(),
        });
    }
    let mut buf = Vec::with_capacity(desc.size as usize);
    let mut verifying =
        crate::model::digest::VerifyingReader::new(reader, desc.digest.clone(), Some(desc.size));
    verifying
        .read_to_end(&mut buf)
        .map_err(|e| TransportError::from_read(e, location))?;
    Ok(buf)
}

impl TransportError {
    /// Turns an error met while reading a blob stream back into the transport error it
    /// carries (registry streams wrap theirs), a digest mismatch, or an I/O error.
    pub fn from_read(e: io::Error, location: &ImageLocation) -> TransportError {
        if let Some(m) = DigestMismatch::from_io(&e) {
            return TransportError::Corrupt {
                location: location.to_string(),
                mismatch: m.clone(),
                local: location.is_local(),
            };
        }
        if e.get_ref()
            .is_some_and(|inner| inner.is::<TransportError>())
        {
            let inner = e.into_inner().expect("checked above");
            return *inner.downcast::<TransportError>().expect("checked above");
        }
        if !location.is_local() {
            // A registry's stream that broke off is the registry's (or the network's)
            // failure, not a local file's.
            return TransportError::BrokenOff {
                location: location.to_string(),
                message: e.to_string(),
            };
        }
        TransportError::Io(crate::control::FileError {
            op: "read from",
            path: PathBuf::from(location.to_string()),
            source: e,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read that fails is the registry's failure for a registry (exit 1, retried by the
    /// bot), a local file's for a local location (exit 3).
    #[test]
    fn a_failed_read_is_the_registry_s_or_the_file_s_by_where_it_was_read() {
        let registry = ImageLocation::parse("registry.example/app:v1").unwrap();
        let e = TransportError::from_read(io::Error::other("body error"), &registry);
        assert!(
            matches!(&e, TransportError::BrokenOff { location, .. } if *location == registry.to_string()),
            "{e:?}"
        );
        assert_eq!(
            crate::Error::from(e).exit_code(),
            crate::error::exit::FAILURE
        );
        let layout = ImageLocation::parse("oci:/images/app:v1").unwrap();
        let e = TransportError::from_read(io::Error::other("disk error"), &layout);
        assert!(matches!(e, TransportError::Io(_)), "{e:?}");
        assert_eq!(crate::Error::from(e).exit_code(), crate::error::exit::LOCAL);
    }
}
