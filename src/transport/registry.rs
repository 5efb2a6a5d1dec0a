//! Registries (`docker://REF`), through `oci-client`'s raw calls: manifests as exact bytes,
//! blobs as streams, blob mounts, and streamed monolithic uploads.
//!
//! The rest of unroot is synchronous; this module owns the async runtime and bridges blob
//! streams to [`std::io::Read`] through bounded channels, so memory stays bounded.

use std::io::{self, Read};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{DigestError, OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

use crate::model::digest::VerifyingReader;
use crate::model::{media, Descriptor, Digest, ImageLocation, ImageRef};

use super::auth::{self, Credentials};
use super::{BlobProvider, BlobReader, OutputImage, RawManifest, Sink, Source, TransportError};

/// How to talk to registries.
#[derive(Clone, Debug)]
pub struct RegistryOptions {
    /// Credentials given on the command line; otherwise the auth files are consulted.
    pub creds: Option<Credentials>,
    /// Whether TLS is required and verified. `false` allows plain HTTP. Registries on
    /// `localhost`, `127.0.0.1` and `[::1]` are always reached over plain HTTP.
    pub tls_verify: bool,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            creds: None,
            tls_verify: true,
        }
    }
}

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("unroot-net")
            .enable_all()
            .build()
            .expect("the async runtime starts")
    })
}

/// A registry repository with its client and credentials.
struct Remote {
    client: Arc<Client>,
    image: ImageRef,
    reference: Reference,
    auth: RegistryAuth,
    had_credentials: bool,
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
        let had_credentials = creds.is_some();
        let auth = match creds {
            Some(c) => RegistryAuth::Basic(c.username, c.password),
            None => RegistryAuth::Anonymous,
        };
        let reference = to_oci_reference(&image);
        let protocol = if !options.tls_verify || image.is_loopback() {
            ClientProtocol::HttpsExcept(vec![reference.resolve_registry().to_string()])
        } else {
            ClientProtocol::Https
        };
        let config = ClientConfig {
            protocol,
            use_monolithic_push: true,
            platform_resolver: None,
            connect_timeout: Some(Duration::from_secs(30)),
            read_timeout: Some(Duration::from_secs(300)),
            user_agent: concat!("unroot/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        Ok(Remote {
            client: Arc::new(Client::new(config)),
            image,
            reference,
            auth,
            had_credentials,
            location,
        })
    }

    fn error(&self, what: &str, e: OciDistributionError) -> TransportError {
        map_error(&self.image, &self.location, self.had_credentials, what, e)
    }

    fn fetch_manifest(
        &self,
        reference: &Reference,
        what: &str,
    ) -> Result<RawManifest, TransportError> {
        let (bytes, digest) = runtime()
            .block_on(self.client.pull_manifest_raw(
                reference,
                &self.auth,
                media::ACCEPTED_MANIFESTS,
            ))
            .map_err(|e| self.error(what, e))?;
        let computed = Digest::sha256_of(&bytes);
        let digest = Digest::parse(&digest).unwrap_or(computed);
        Ok(RawManifest {
            bytes: bytes.to_vec(),
            media_type: None,
            digest,
        })
    }
}

fn to_oci_reference(image: &ImageRef) -> Reference {
    let registry = image.registry().to_string();
    let repository = image.repository().to_string();
    match (image.tag(), image.digest()) {
        (Some(t), Some(d)) => {
            Reference::with_tag_and_digest(registry, repository, t.to_string(), d.to_string())
        }
        (None, Some(d)) => Reference::with_digest(registry, repository, d.to_string()),
        (Some(t), None) => Reference::with_tag(registry, repository, t.to_string()),
        (None, None) => Reference::with_tag(registry, repository, "latest".to_string()),
    }
}

fn map_error(
    image: &ImageRef,
    location: &ImageLocation,
    had_credentials: bool,
    what: &str,
    e: OciDistributionError,
) -> TransportError {
    let loc = location.to_string();
    let unauthorized = || TransportError::Unauthorized {
        registry: image.registry().to_string(),
        location: loc.clone(),
        had_credentials,
    };
    let not_found = || TransportError::NotFound {
        location: loc.clone(),
        what: what.to_string(),
    };
    match e {
        OciDistributionError::UnauthorizedError { .. } => unauthorized(),
        OciDistributionError::AuthenticationFailure(_) => TransportError::Unauthorized {
            registry: image.registry().to_string(),
            location: loc.clone(),
            had_credentials: true,
        },
        OciDistributionError::ImageManifestNotFoundError(_) => not_found(),
        OciDistributionError::RegistryError { envelope, .. } => {
            let first = envelope.errors.first();
            match first.map(|e| &e.code) {
                Some(
                    OciErrorCode::ManifestUnknown
                    | OciErrorCode::NameUnknown
                    | OciErrorCode::BlobUnknown
                    | OciErrorCode::NotFound,
                ) => not_found(),
                Some(OciErrorCode::Unauthorized) => unauthorized(),
                Some(OciErrorCode::Denied) => TransportError::Denied {
                    location: loc,
                    message: first.map(|e| e.message.clone()).unwrap_or_default(),
                },
                _ => TransportError::Registry {
                    location: loc,
                    message: envelope
                        .errors
                        .iter()
                        .map(|e| format!("{:?}: {}", e.code, e.message))
                        .collect::<Vec<_>>()
                        .join("; "),
                },
            }
        }
        OciDistributionError::ServerError { code, message, .. } => match code {
            401 => unauthorized(),
            403 => TransportError::Denied {
                location: loc,
                message: one_line(&message),
            },
            404 => not_found(),
            _ => TransportError::Registry {
                location: loc,
                message: format!("HTTP {code}: {}", one_line(&message)),
            },
        },
        OciDistributionError::RequestError(err) => {
            // The chain reads "error sending request for url (...): client error (Connect):
            // <what really happened>"; keep what happened.
            let mut parts: Vec<String> = Vec::new();
            let mut source: Option<&dyn std::error::Error> = Some(&err);
            while let Some(s) = source {
                let text = s.to_string();
                let generic = text.starts_with("error sending request")
                    || text.starts_with("client error")
                    || parts.last().is_some_and(|p| p.contains(&text));
                if !generic {
                    parts.push(text);
                }
                source = s.source();
            }
            let message = if parts.is_empty() {
                err.to_string()
            } else {
                parts.join(": ")
            };
            let lower = message.to_lowercase();
            let tls = [
                "tls",
                "certificate",
                "ssl",
                "handshake",
                "corrupt message",
                "invalidcontenttype",
            ]
            .iter()
            .any(|k| lower.contains(k));
            TransportError::Connect {
                registry: image.registry().to_string(),
                message,
                tls,
            }
        }
        OciDistributionError::DigestError(d) => TransportError::Registry {
            location: loc,
            message: format!("a digest did not verify: {d}"),
        },
        other => TransportError::Registry {
            location: loc,
            message: one_line(&other.to_string()),
        },
    }
}

fn one_line(s: &str) -> String {
    let s = s.trim();
    let s = s.lines().next().unwrap_or_default();
    if s.len() > 300 {
        format!(
            "{}...",
            &s[..s
                .char_indices()
                .take_while(|(i, _)| *i < 300)
                .last()
                .map_or(0, |(i, _)| i)]
        )
    } else if s.is_empty() {
        "(no message)".to_string()
    } else {
        s.to_string()
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
        let what = match (self.remote.image.tag(), self.remote.image.digest()) {
            (_, Some(d)) => format!("manifest {d}"),
            (Some(t), None) => format!("tag `{t}`"),
            (None, None) => "manifest".to_string(),
        };
        self.remote
            .fetch_manifest(&self.remote.reference.clone(), &what)
    }

    fn manifest_by_digest(&mut self, desc: &Descriptor) -> Result<RawManifest, TransportError> {
        let reference = self
            .remote
            .reference
            .clone_with_digest(desc.digest.to_string());
        let raw = self
            .remote
            .fetch_manifest(&reference, &format!("manifest {}", desc.digest))?;
        if raw.digest != desc.digest {
            return Err(TransportError::Corrupt {
                location: self.remote.location.to_string(),
                mismatch: crate::model::digest::DigestMismatch::Digest {
                    expected: desc.digest.clone(),
                    actual: raw.digest,
                },
            });
        }
        Ok(raw)
    }

    fn blob(&mut self, desc: &Descriptor) -> Result<BlobReader, TransportError> {
        let remote = &self.remote;
        let digest = desc.digest.to_string();
        let client = remote.client.clone();
        let reference = remote.reference.clone();
        runtime()
            .block_on(async {
                // Make sure credentials are registered for this registry before the pull.
                client
                    .store_auth_if_needed(reference.resolve_registry(), &remote.auth)
                    .await;
                client.pull_blob_stream(&reference, digest.as_str()).await
            })
            .map(|sized| {
                let (tx, rx) = mpsc::channel(16);
                let mut stream = sized.stream;
                runtime().spawn(async move {
                    use futures_util::StreamExt;
                    while let Some(item) = stream.next().await {
                        if tx.send(item).await.is_err() {
                            break;
                        }
                    }
                });
                Box::new(ChannelReader {
                    rx,
                    current: Bytes::new(),
                    done: false,
                }) as BlobReader
            })
            .map_err(|e| remote.error(&format!("blob {}", desc.digest), e))
    }

    fn is_local(&self) -> bool {
        false
    }
}

/// A blocking reader over a blob stream delivered by the runtime through a bounded channel.
struct ChannelReader {
    rx: mpsc::Receiver<Result<Bytes, io::Error>>,
    current: Bytes,
    done: bool,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            if self.done {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => {
                    // oci-client checks the digest at the end of the stream too; unroot's
                    // own verifier (which sees every byte) reports that mismatch precisely.
                    if e.get_ref().is_some_and(|inner| inner.is::<DigestError>()) {
                        self.done = true;
                        return Ok(0);
                    }
                    return Err(e);
                }
                None => {
                    self.done = true;
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Writes an image to a registry: blobs (skipping those present, mounting those of the
/// same registry), then the config, then the manifest under the tag.
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

    fn blob_exists(&self, digest: &Digest) -> Result<bool, TransportError> {
        let r = &self.remote;
        runtime()
            .block_on(async {
                r.client
                    .store_auth_if_needed(r.reference.resolve_registry(), &r.auth)
                    .await;
                r.client
                    .blob_exists(&r.reference, &digest.to_string())
                    .await
            })
            .map_err(|e| r.error(&format!("blob {digest}"), e))
    }

    fn mount(&self, digest: &Digest, from: &ImageRef) -> bool {
        let r = &self.remote;
        let source = to_oci_reference(from);
        runtime()
            .block_on(
                r.client
                    .mount_blob(&r.reference, &source, &digest.to_string()),
            )
            .is_ok()
    }

    fn upload(&self, desc: &Descriptor, reader: BlobReader) -> Result<(), TransportError> {
        let r = &self.remote;
        let (tx, rx) = mpsc::channel::<Result<Bytes, OciDistributionError>>(8);
        let read_error: Arc<Mutex<Option<io::Error>>> = Arc::default();
        let slot = read_error.clone();
        let expected = desc.digest.clone();
        let size = desc.size;
        let feeder = runtime().spawn_blocking(move || {
            let mut verifying = VerifyingReader::new(reader, expected, Some(size));
            loop {
                let mut buf = vec![0u8; 256 * 1024];
                match fill(&mut verifying, &mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        buf.truncate(n);
                        if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let copy = io::Error::new(e.kind(), e.to_string());
                        *slot.lock().expect("not poisoned") = Some(e);
                        let _ = tx.blocking_send(Err(OciDistributionError::IoError(copy)));
                        break;
                    }
                }
            }
        });
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let pushed = runtime().block_on(async {
            r.client
                .store_auth_if_needed(r.reference.resolve_registry(), &r.auth)
                .await;
            r.client
                .push_blob_stream(
                    &r.reference,
                    stream,
                    &desc.digest.to_string(),
                    Some(desc.size),
                )
                .await
        });
        let _ = runtime().block_on(feeder);
        if let Some(e) = read_error.lock().expect("not poisoned").take() {
            return Err(TransportError::from_read(e, &r.location));
        }
        pushed
            .map(|_| ())
            .map_err(|e| r.error(&format!("upload of blob {}", desc.digest), e))
    }
}

fn fill(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

impl RegistrySink {
    /// Pushes a manifest or index by digest (invisible until tagged), or under `reference`.
    fn push_manifest(
        &self,
        reference: &Reference,
        bytes: &[u8],
        desc: &Descriptor,
    ) -> Result<(), TransportError> {
        let r = &self.remote;
        let content_type = desc
            .media_type
            .parse()
            .expect("media types are valid header values");
        runtime()
            .block_on(
                r.client
                    .push_manifest_raw(reference, bytes.to_vec(), content_type),
            )
            .map_err(|e| r.error("manifest upload", e))?;
        Ok(())
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
        let mount_from = match blobs.origin() {
            ImageLocation::Registry(r) if r.registry() == self.remote.image.registry() => {
                Some(r.clone())
            }
            _ => None,
        };
        for layer in &image.layers {
            if self.blob_exists(&layer.desc.digest)? {
                continue;
            }
            if let Some(from) = &mount_from {
                if from.repository() != self.remote.image.repository()
                    && self.mount(&layer.desc.digest, from)
                {
                    continue;
                }
            }
            let reader = blobs.open(&layer.desc)?;
            self.upload(&layer.desc, reader)?;
        }
        if !self.blob_exists(&image.config_desc.digest)? {
            self.upload(
                &image.config_desc,
                Box::new(io::Cursor::new(image.config.clone())),
            )?;
        }
        let by_digest = self
            .remote
            .reference
            .clone_with_digest(image.manifest_desc.digest.to_string());
        self.push_manifest(&by_digest, &image.manifest, &image.manifest_desc)?;
        self.pushed
            .insert(image.manifest_desc.digest.clone(), image.manifest.clone());
        Ok(())
    }

    fn put_index(&mut self, index: &[u8], desc: &Descriptor) -> Result<(), TransportError> {
        let by_digest = self
            .remote
            .reference
            .clone_with_digest(desc.digest.to_string());
        self.push_manifest(&by_digest, index, desc)?;
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
        match (r.image.tag(), r.image.digest()) {
            (Some(_), _) | (None, None) => self.push_manifest(&r.reference.clone(), &bytes, top)?,
            // A destination pinned by digest gets nothing more (the manifest is there).
            (None, Some(d)) if *d == top.digest => {}
            (None, Some(d)) => {
                return Err(TransportError::Refused {
                    location: r.location.to_string(),
                    reason: format!(
                        "the destination pins {d}, but the converted image is {}",
                        top.digest
                    ),
                })
            }
        }
        Ok(top.digest.clone())
    }
}
