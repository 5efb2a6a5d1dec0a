//! Registries (`docker://REF`): manifests as exact bytes, blobs as streams, blob mounts,
//! and streamed uploads, through the distribution API [`client`].

use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::model::{media, Descriptor, Digest, ImageLocation, ImageRef};

use super::auth::{self, Credentials};
use super::{BlobProvider, BlobReader, OutputImage, RawManifest, Sink, Source, TransportError};

mod client;

use client::Client;

/// How to talk to registries.
#[derive(Clone, Debug)]
pub struct RegistryOptions {
    /// Credentials given on the command line; otherwise the auth files are consulted.
    pub creds: Option<Credentials>,
    /// Whether TLS is required and verified. `false`: HTTPS without verifying the
    /// certificate if the registry speaks it, else plain HTTP; registries on `localhost`,
    /// `127.0.0.1` and `[::1]` are always reached that way.
    pub tls_verify: bool,
    /// How transient failures are retried.
    pub retry: RetryPolicy,
    /// Where retry messages go.
    pub notify: Notify,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            creds: None,
            tls_verify: true,
            retry: RetryPolicy::default(),
            notify: Notify::default(),
        }
    }
}

/// Retries of idempotent requests after timeouts, dropped connections, and HTTP 408, 429,
/// 500, 502, 503 and 504: exponential backoff from `first_delay`, or what the registry's
/// `Retry-After` asks, each wait at most `max_wait`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// How many times a request is tried again (0: never).
    pub retries: u32,
    /// The wait before the first retry; it doubles for each next one.
    pub first_delay: Duration,
    /// The longest wait; a registry asking for more is given up on at once.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 4,
            first_delay: Duration::from_secs(1),
            max_wait: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1`, or `None` when the registry asks for more
    /// than `max_wait`.
    pub fn wait(&self, attempt: u32, asked: Option<Duration>) -> Option<Duration> {
        match asked {
            Some(a) if a > self.max_wait => None,
            Some(a) => Some(a),
            None => Some(
                self.first_delay
                    .saturating_mul(1 << attempt.saturating_sub(1).min(16))
                    .min(self.max_wait),
            ),
        }
    }
}

/// Receives one-line messages about retries.
#[derive(Clone, Default)]
pub struct Notify(Option<Arc<NotifyFn>>);

type NotifyFn = dyn Fn(&str) + Send + Sync;

impl Notify {
    /// Messages go to `f`.
    pub fn to(f: impl Fn(&str) + Send + Sync + 'static) -> Notify {
        Notify(Some(Arc::new(f)))
    }

    pub(crate) fn line(&self, line: &str) {
        if let Some(f) = &self.0 {
            f(line);
        }
    }
}

impl std::fmt::Debug for Notify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Notify(..)"
        } else {
            "Notify(none)"
        })
    }
}

/// A registry repository with its client.
struct Remote {
    client: Arc<Client>,
    image: ImageRef,
    location: ImageLocation,
}

impl Remote {
    fn new(
        location: ImageLocation,
        image: ImageRef,
        options: &RegistryOptions,
    ) -> Result<Remote, TransportError> {
        let creds = match &options.creds {
            Some(c) => Some(c.clone()),
            None => auth::lookup(image.registry(), image.repository()).map_err(|e| {
                TransportError::Refused {
                    location: location.to_string(),
                    reason: e.to_string(),
                }
            })?,
        };
        let client = Client::new(
            image.registry(),
            options.tls_verify && !image.is_loopback(),
            !image.is_loopback(),
            location.clone(),
            creds,
            options.retry,
            options.notify.clone(),
        )?;
        Ok(Remote {
            client: Arc::new(client),
            image,
            location,
        })
    }

    fn repo(&self) -> &str {
        self.image.repository()
    }

    /// A manifest by tag or digest, checked against the digest when one is asked for.
    fn fetch_manifest(
        &self,
        reference: &str,
        pinned: Option<&Digest>,
        what: &str,
    ) -> Result<RawManifest, TransportError> {
        let (bytes, media_type) =
            self.client
                .manifest(self.repo(), reference, media::ACCEPTED_MANIFESTS, what)?;
        let digest = match pinned {
            Some(d) => {
                let mut hasher = crate::model::digest::Hasher::new(d.algorithm());
                hasher.update(&bytes);
                let actual = hasher.finish();
                if actual != *d {
                    return Err(TransportError::Corrupt {
                        location: self.location.to_string(),
                        mismatch: crate::model::digest::DigestMismatch::Digest {
                            expected: d.clone(),
                            actual,
                        },
                    });
                }
                actual
            }
            None => Digest::sha256_of(&bytes),
        };
        Ok(RawManifest {
            bytes,
            media_type: media_type
                .map(|m| m.split(';').next().unwrap_or_default().trim().to_string()),
            digest,
        })
    }
}

/// Reads an image from a registry.
pub struct RegistrySource {
    remote: Remote,
}

impl RegistrySource {
    /// A source for `image`; credentials come from `options` or the auth files.
    pub fn new(
        location: ImageLocation,
        image: ImageRef,
        options: &RegistryOptions,
    ) -> Result<RegistrySource, TransportError> {
        Ok(RegistrySource {
            remote: Remote::new(location, image, options)?,
        })
    }
}

impl Source for RegistrySource {
    fn location(&self) -> &ImageLocation {
        &self.remote.location
    }

    fn manifest(&mut self) -> Result<RawManifest, TransportError> {
        let image = &self.remote.image;
        match (image.tag(), image.digest()) {
            (_, Some(d)) => {
                self.remote
                    .fetch_manifest(&d.to_string(), Some(d), &format!("manifest {d}"))
            }
            (Some(t), None) => self.remote.fetch_manifest(t, None, &format!("tag `{t}`")),
            (None, None) => self.remote.fetch_manifest("latest", None, "tag `latest`"),
        }
    }

    fn manifest_by_digest(&mut self, desc: &Descriptor) -> Result<RawManifest, TransportError> {
        self.remote.fetch_manifest(
            &desc.digest.to_string(),
            Some(&desc.digest),
            &format!("manifest {}", desc.digest),
        )
    }

    fn blob(&mut self, desc: &Descriptor) -> Result<BlobReader, TransportError> {
        self.remote.client.blob(self.remote.repo(), desc)
    }

    fn is_local(&self) -> bool {
        false
    }
}

/// Writes an image to a registry: blobs (skipping those present, mounting those of the
/// same registry), then the config, then the manifests by digest, and the tag last.
pub struct RegistrySink {
    remote: Remote,
    /// Manifests and indexes pushed by digest, to tag at the commit.
    pushed: std::collections::BTreeMap<Digest, Vec<u8>>,
}

impl RegistrySink {
    /// A sink for `image`; credentials come from `options` or the auth files.
    pub fn new(
        location: ImageLocation,
        image: ImageRef,
        options: &RegistryOptions,
    ) -> Result<RegistrySink, TransportError> {
        Ok(RegistrySink {
            remote: Remote::new(location, image, options)?,
            pushed: Default::default(),
        })
    }

    fn push_manifest(
        &self,
        reference: &str,
        bytes: &[u8],
        desc: &Descriptor,
    ) -> Result<(), TransportError> {
        self.remote
            .client
            .put_manifest(self.remote.repo(), reference, bytes, &desc.media_type)
    }
}

impl Sink for RegistrySink {
    fn location(&self) -> &ImageLocation {
        &self.remote.location
    }

    fn can_reuse_blobs_of(&self, source: &ImageLocation) -> bool {
        matches!(source, ImageLocation::Registry(r) if r.registry() == self.remote.image.registry())
    }

    fn put_image(
        &mut self,
        image: &OutputImage,
        blobs: &mut dyn BlobProvider,
    ) -> Result<(), TransportError> {
        let client = &self.remote.client;
        let repo = self.remote.repo();
        let mount_from = match blobs.origin() {
            ImageLocation::Registry(r)
                if r.registry() == self.remote.image.registry() && r.repository() != repo =>
            {
                Some(r.repository().to_string())
            }
            _ => None,
        };
        for layer in &image.layers {
            let digest = &layer.desc.digest;
            if client.blob_exists(repo, digest)? {
                continue;
            }
            if let Some(from) = &mount_from {
                if client.mount(repo, digest, from)? {
                    continue;
                }
            }
            client.upload(repo, &layer.desc, &mut || blobs.open(&layer.desc))?;
        }
        if !client.blob_exists(repo, &image.config_desc.digest)? {
            client.upload(repo, &image.config_desc, &mut || {
                Ok(Box::new(io::Cursor::new(image.config.clone())))
            })?;
        }
        let digest = image.manifest_desc.digest.to_string();
        self.push_manifest(&digest, &image.manifest, &image.manifest_desc)?;
        self.pushed
            .insert(image.manifest_desc.digest.clone(), image.manifest.clone());
        Ok(())
    }

    fn put_index(&mut self, index: &[u8], desc: &Descriptor) -> Result<(), TransportError> {
        self.push_manifest(&desc.digest.to_string(), index, desc)?;
        self.pushed.insert(desc.digest.clone(), index.to_vec());
        Ok(())
    }

    fn commit(&mut self, top: &Descriptor) -> Result<Digest, TransportError> {
        let r = &self.remote;
        let bytes =
            self.pushed
                .get(&top.digest)
                .cloned()
                .ok_or_else(|| TransportError::Refused {
                    location: r.location.to_string(),
                    reason: format!("{} was not written before being tagged", top.digest),
                })?;
        if let Some(d) = r.image.digest().filter(|d| **d != top.digest) {
            return Err(TransportError::Refused {
                location: r.location.to_string(),
                reason: format!(
                    "the destination pins {d}, but the converted image is {}",
                    top.digest
                ),
            });
        }
        match (r.image.tag(), r.image.digest()) {
            (Some(tag), _) => self.push_manifest(tag, &bytes, top)?,
            (None, None) => self.push_manifest("latest", &bytes, top)?,
            // A destination pinned by digest gets nothing more (the manifest is there).
            (None, Some(_)) => {}
        }
        Ok(top.digest.clone())
    }
}
