//! Uploads: blob mounts from another repository, streamed blob uploads (one `PUT`, or
//! `PATCH` chunks once the registry refuses a single request), and manifests.

use crate::control::Locked;
use std::io::{self, Read};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::blocking::Body;
use reqwest::header::{HeaderMap, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode, Url};

use crate::control::Event;
use crate::model::digest::VerifyingReader;
use crate::model::{Descriptor, Digest};
use crate::transport::{BlobReader, TransportError};

use super::challenge::{pull, push};
use super::client::{Call, Client};
use super::header_str;
use super::retry::Attempt;

/// The chunk size of a chunked upload, unless the registry asks for larger ones.
const CHUNK: u64 = 16 * 1024 * 1024;

impl Client {
    /// Mounts a blob from another repository of the same registry. `false` when the
    /// registry would not (it then expects an upload).
    pub(super) fn mount(
        &self,
        call: &Call,
        repo: &str,
        digest: &Digest,
        from: &str,
    ) -> Result<bool, TransportError> {
        let mut url = self.url(&format!("v2/{repo}/blobs/uploads/"));
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", from);
        let what = format!("mount of blob {digest}");
        self.retrying(call, || {
            let response = self.send(call, &[push(repo), pull(from)], &mut || {
                Ok(self.http.post(url.clone()).header(CONTENT_LENGTH, 0))
            })?;
            let response = self.check_transient(call, &what, response)?;
            match response.status() {
                StatusCode::CREATED => Ok(true),
                // An upload was started instead; it expires unused.
                StatusCode::ACCEPTED => Ok(false),
                status if status.is_client_error() => Ok(false),
                _ => Err(Attempt::Fail(self.status_error(call, &what, response))),
            }
        })
    }

    /// Uploads a blob, streaming it from `open` (called again for each attempt) and
    /// verifying its digest on the way.
    pub(super) fn upload(
        &self,
        call: &Call,
        repo: &str,
        desc: &Descriptor,
        open: &mut dyn FnMut() -> Result<BlobReader, TransportError>,
    ) -> Result<(), TransportError> {
        let what = format!("upload of blob {}", desc.digest);
        self.retrying_transfer(call, || {
            let (location, min_chunk) = self.start_upload(call, repo, &what)?;
            let result = self.upload_to(call, repo, desc, &location, min_chunk, open, &what);
            if result.is_err() {
                self.abandon_upload(repo, &location);
            }
            result
        })
    }

    /// Whether `repo` takes pushes from these credentials: an upload session is started
    /// and cancelled, so a destination that refuses (no credentials, no push right, no
    /// such repository) says so before any layer is read rather than after.
    pub(super) fn check_push(&self, call: &Call, repo: &str) -> Result<(), TransportError> {
        self.retrying(call, || {
            let (location, _) = self.start_upload(call, repo, "upload")?;
            self.abandon_upload(repo, &location);
            Ok(())
        })
    }

    /// One attempt of an upload to a session that was started.
    #[allow(clippy::too_many_arguments)] // The upload's parts, each used once.
    fn upload_to(
        &self,
        call: &Call,
        repo: &str,
        desc: &Descriptor,
        location: &Url,
        min_chunk: u64,
        open: &mut dyn FnMut() -> Result<BlobReader, TransportError>,
        what: &str,
    ) -> Result<(), Attempt> {
        let reader = open()?;
        if self.chunked.load(Ordering::Relaxed) {
            return self.upload_chunks(call, repo, desc, location.clone(), reader, min_chunk, what);
        }
        let slot = ReadError::default();
        let body = Body::sized(
            slot.wrap(VerifyingReader::new(
                reader,
                desc.digest.clone(),
                Some(desc.size),
            )),
            desc.size,
        );
        let mut body = Some(body);
        let url = with_digest(location, &desc.digest);
        let response = self.send(call, &[push(repo)], &mut || {
            let body = body.take().ok_or_else(|| {
                // The stream is spent: a second challenge needs a new attempt.
                Attempt::Retry {
                    error: self.unauthorized(call),
                    after: None,
                }
            })?;
            Ok(self
                .http
                .put(url.clone())
                .timeout(upload_timeout(desc.size))
                .header(CONTENT_TYPE, "application/octet-stream")
                .body(body))
        });
        if let Some(e) = slot.take() {
            return Err(Attempt::Fail(TransportError::from_read(e, &call.location)));
        }
        let response = self.check_transient(call, what, response?)?;
        match response.status() {
            StatusCode::CREATED | StatusCode::NO_CONTENT | StatusCode::ACCEPTED => Ok(()),
            StatusCode::PAYLOAD_TOO_LARGE => {
                // This and every later blob go up in chunks, starting now.
                self.chunked.store(true, Ordering::Relaxed);
                call.control.events.event(&Event::ChunkedUploads {
                    registry: &self.registry,
                    size: desc.size,
                });
                self.abandon_upload(repo, location);
                let (location, min_chunk) = self.start_upload(call, repo, what)?;
                let result = self.upload_chunks(
                    call,
                    repo,
                    desc,
                    location.clone(),
                    open()?,
                    min_chunk,
                    what,
                );
                if result.is_err() {
                    self.abandon_upload(repo, &location);
                }
                result
            }
            _ => Err(Attempt::Fail(self.push_error(call, repo, what, response))),
        }
    }

    /// Ends an upload session that will not be completed (`DELETE`, as the distribution
    /// API allows), so the registry does not keep its partial data. Best effort, and quick
    /// (also after a cancellation): with the credentials already at hand, a few seconds at
    /// most; a registry that refuses or is gone expires the session on its own.
    fn abandon_upload(&self, repo: &str, location: &Url) {
        let Ok(request) = self
            .http
            .delete(location.clone())
            .timeout(Duration::from_secs(5))
            .build()
        else {
            return;
        };
        let request = match self.cached_authorization(request, &[push(repo)]) {
            Some(r) => r,
            None => return,
        };
        let _ = self.http.execute(request);
    }

    /// Starts an upload session: its URL, and the smallest chunk the registry takes.
    fn start_upload(&self, call: &Call, repo: &str, what: &str) -> Result<(Url, u64), Attempt> {
        let url = self.url(&format!("v2/{repo}/blobs/uploads/"));
        let response = self.send(call, &[push(repo)], &mut || {
            Ok(self.http.post(url.clone()).header(CONTENT_LENGTH, 0))
        })?;
        let response = self.check_transient(call, what, response)?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(Attempt::Fail(self.push_error(call, repo, what, response)));
        }
        let min_chunk = header_str(response.headers(), "oci-chunk-min-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok((
            upload_location(call, &url, response.headers(), what)?,
            min_chunk,
        ))
    }

    /// The chunked upload: `PATCH`es of consecutive ranges, then a `PUT` with the digest.
    #[allow(clippy::too_many_arguments)] // The upload's parts, each used once.
    fn upload_chunks(
        &self,
        call: &Call,
        repo: &str,
        desc: &Descriptor,
        mut location: Url,
        reader: BlobReader,
        min_chunk: u64,
        what: &str,
    ) -> Result<(), Attempt> {
        let chunk = CHUNK.max(min_chunk);
        let slot = ReadError::default();
        let shared = Arc::new(Mutex::new(slot.wrap(VerifyingReader::new(
            reader,
            desc.digest.clone(),
            Some(desc.size),
        ))));
        let mut offset = 0u64;
        while offset < desc.size {
            let len = chunk.min(desc.size - offset);
            let mut body = Some(Body::sized(
                SharedTake {
                    inner: shared.clone(),
                    left: len,
                },
                len,
            ));
            let url = location.clone();
            let response = self.send(call, &[push(repo)], &mut || {
                let body = body.take().ok_or_else(|| Attempt::Retry {
                    error: self.unauthorized(call),
                    after: None,
                })?;
                Ok(self
                    .http
                    .patch(url.clone())
                    .timeout(upload_timeout(len))
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header("content-range", format!("{}-{}", offset, offset + len - 1))
                    .body(body))
            });
            if let Some(e) = slot.take() {
                return Err(Attempt::Fail(TransportError::from_read(e, &call.location)));
            }
            let response = self.check_transient(call, what, response?)?;
            if response.status() != StatusCode::ACCEPTED {
                return Err(Attempt::Fail(self.push_error(call, repo, what, response)));
            }
            location = upload_location(call, &url, response.headers(), what)?;
            offset += len;
        }
        // The verifier checks the digest once it has seen the end.
        let mut rest = Vec::new();
        shared
            .locked()
            .read_to_end(&mut rest)
            .map_err(|e| Attempt::Fail(TransportError::from_read(e, &call.location)))?;
        // Registries may copy the whole blob to its place before they answer.
        let url = with_digest(&location, &desc.digest);
        let response = self.send(call, &[push(repo)], &mut || {
            Ok(self
                .http
                .put(url.clone())
                .timeout(upload_timeout(desc.size))
                .header(CONTENT_LENGTH, 0))
        })?;
        let response = self.check_transient(call, what, response)?;
        match response.status() {
            StatusCode::CREATED | StatusCode::NO_CONTENT => Ok(()),
            _ => Err(Attempt::Fail(self.push_error(call, repo, what, response))),
        }
    }

    /// Puts a manifest or index under a tag or its digest.
    pub(super) fn put_manifest(
        &self,
        call: &Call,
        repo: &str,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<(), TransportError> {
        let url = self.url(&format!("v2/{repo}/manifests/{reference}"));
        let what = "manifest upload";
        self.retrying(call, || {
            let response = self.send(call, &[push(repo)], &mut || {
                Ok(self
                    .http
                    .request(Method::PUT, url.clone())
                    .header(CONTENT_TYPE, media_type)
                    .body(bytes.to_vec()))
            })?;
            let response = self.check_transient(call, what, response)?;
            match response.status() {
                StatusCode::CREATED | StatusCode::OK | StatusCode::NO_CONTENT => Ok(()),
                _ => Err(Attempt::Fail(self.push_error(call, repo, what, response))),
            }
        })
    }
}

fn upload_location(
    call: &Call,
    base: &Url,
    headers: &HeaderMap,
    what: &str,
) -> Result<Url, Attempt> {
    let invalid = |message: String| {
        Attempt::Fail(TransportError::Registry {
            location: call.location.to_string(),
            message,
        })
    };
    let location = header_str(headers, LOCATION.as_str())
        .ok_or_else(|| invalid(format!("no upload location for the {what}")))?;
    base.join(&location)
        .map_err(|e| invalid(format!("an invalid upload location `{location}`: {e}")))
}

/// Keeps the first error a wrapped reader returns, so that a failed upload reports the
/// reading side (a corrupt blob) rather than the HTTP library's view of it.
#[derive(Clone, Default)]
struct ReadError(Arc<Mutex<Option<io::Error>>>);

impl ReadError {
    fn wrap<R: Read>(&self, inner: R) -> Recording<R> {
        Recording {
            inner,
            slot: self.clone(),
        }
    }

    fn take(&self) -> Option<io::Error> {
        self.0.locked().take()
    }
}

struct Recording<R> {
    inner: R,
    slot: ReadError,
}

impl<R: Read> Read for Recording<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            let copy = io::Error::new(e.kind(), e.to_string());
            let mut slot = self.slot.0.locked();
            if slot.is_none() {
                *slot = Some(e);
            }
            copy
        })
    }
}

/// At most `left` bytes of a reader shared between chunk requests.
struct SharedTake<R> {
    inner: Arc<Mutex<R>>,
    left: u64,
}

impl<R: Read> Read for SharedTake<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.locked().read(&mut buf[..max])?;
        self.left -= n as u64;
        Ok(n)
    }
}

fn with_digest(location: &Url, digest: &Digest) -> Url {
    let mut url = location.clone();
    url.query_pairs_mut()
        .append_pair("digest", &digest.to_string());
    url
}

/// The time an upload of `size` bytes may take: five minutes plus what it takes at
/// 64 KiB/s (half a megabit), so that slow links finish; dead peers are caught sooner by
/// the TCP user timeout.
fn upload_timeout(size: u64) -> Duration {
    Duration::from_secs(300 + size / (64 * 1024))
}
