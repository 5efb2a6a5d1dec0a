//! Downloads: manifests as exact bytes (capped), and blobs as streams that resume with a
//! `Range` request where a dropped connection left them.

use std::io::{self, Read};
use std::sync::Arc;

use reqwest::blocking::Response;
use reqwest::header::{ACCEPT, CONTENT_TYPE, RANGE};
use reqwest::{StatusCode, Url};

use crate::control::Event;
use crate::model::{Descriptor, Digest};
use crate::transport::{BlobReader, TransportError};

use super::challenge::{pull, push};
use super::client::{Call, Client};
use super::header_str;
use super::pace::Paced;
use super::retry::{error_chain, Attempt};

/// Manifests larger than this are refused, as registries refuse to store them.
const MANIFEST_CAP: u64 = 4 * 1024 * 1024;

impl Client {
    /// A manifest or index by tag or digest: its bytes and the content type the registry
    /// gave. The caller computes and checks its digest.
    pub(super) fn manifest(
        &self,
        call: &Call,
        repo: &str,
        reference: &str,
        accept: &[&str],
        what: &str,
    ) -> Result<(Vec<u8>, Option<String>), TransportError> {
        let url = self.url(&format!("v2/{repo}/manifests/{reference}"));
        let accept = accept.join(", ");
        self.retrying(call, || {
            let response = self.send(call, &[pull(repo)], &mut || {
                Ok(self.http.get(url.clone()).header(ACCEPT, &accept))
            })?;
            let response = self.check_transient(call, what, response)?;
            if response.status() != StatusCode::OK {
                return Err(Attempt::Fail(self.status_error(call, what, response)));
            }
            let media_type = header_str(response.headers(), CONTENT_TYPE.as_str());
            let bytes = self.read_body(call, response, MANIFEST_CAP + 1)?;
            if bytes.len() as u64 > MANIFEST_CAP {
                return Err(Attempt::Fail(TransportError::Registry {
                    location: call.location.to_string(),
                    message: format!("a {what} larger than 4 MiB, which no registry stores"),
                }));
            }
            Ok((bytes, media_type))
        })
    }

    /// Whether the repository has a blob.
    pub(super) fn blob_exists(
        &self,
        call: &Call,
        repo: &str,
        digest: &Digest,
    ) -> Result<bool, TransportError> {
        let url = self.url(&format!("v2/{repo}/blobs/{digest}"));
        let what = format!("blob {digest}");
        self.retrying(call, || {
            let response =
                self.send(call, &[push(repo)], &mut || Ok(self.http.head(url.clone())))?;
            let response = self.check_transient(call, &what, response)?;
            match response.status() {
                StatusCode::OK => Ok(true),
                StatusCode::NOT_FOUND => Ok(false),
                _ => Err(Attempt::Fail(self.status_error(call, &what, response))),
            }
        })
    }

    /// A blob's bytes as a stream that resumes after a dropped connection.
    pub(super) fn blob(
        self: &Arc<Self>,
        call: &Call,
        repo: &str,
        desc: &Descriptor,
    ) -> Result<BlobReader, TransportError> {
        let url = self.url(&format!("v2/{repo}/blobs/{}", desc.digest));
        let what = format!("blob {}", desc.digest);
        let scopes = vec![pull(repo)];
        let response = self.retrying(call, || self.blob_request(call, &url, &scopes, &what, 0))?;
        Ok(Box::new(BlobStream {
            client: self.clone(),
            call: call.clone(),
            url,
            scopes,
            what,
            response: Paced::new(response, &self.pace),
            received: 0,
            expected: desc.size,
            resumes: 0,
        }))
    }

    /// `GET` of a blob from byte `from` on; the answer is positioned at `from`.
    fn blob_request(
        &self,
        call: &Call,
        url: &Url,
        scopes: &[String],
        what: &str,
        from: u64,
    ) -> Result<Response, Attempt> {
        let response = self.send(call, scopes, &mut || {
            let request = self.http.get(url.clone());
            Ok(if from > 0 {
                request.header(RANGE, format!("bytes={from}-"))
            } else {
                request
            })
        })?;
        let mut response = self.check_transient(call, what, response)?;
        match response.status() {
            StatusCode::OK => {
                // A registry that ignores ranges sends it all again: skip what was read.
                if from > 0 {
                    let skipped = io::copy(&mut (&mut response).take(from), &mut io::sink())
                        .map_err(|e| Attempt::Retry {
                            error: self.io_error(what, e),
                            after: None,
                        })?;
                    if skipped < from {
                        return Err(Attempt::Retry {
                            error: self.io_error(what, io::ErrorKind::UnexpectedEof.into()),
                            after: None,
                        });
                    }
                }
                Ok(response)
            }
            StatusCode::PARTIAL_CONTENT => {
                let range = header_str(response.headers(), "content-range").unwrap_or_default();
                if range.starts_with(&format!("bytes {from}-")) {
                    Ok(response)
                } else {
                    Err(Attempt::Fail(TransportError::Registry {
                        location: call.location.to_string(),
                        message: format!("the range `{range}` for {what}, asked from byte {from}"),
                    }))
                }
            }
            _ => Err(Attempt::Fail(self.status_error(call, what, response))),
        }
    }

    fn io_error(&self, what: &str, e: io::Error) -> TransportError {
        TransportError::Connect {
            registry: self.registry.clone(),
            message: format!("reading {what}: {}", error_chain(&e)),
            tls: false,
        }
    }
}

/// A blob download that asks for the rest with a `Range` request when the connection drops.
struct BlobStream {
    client: Arc<Client>,
    call: Call,
    url: Url,
    scopes: Vec<String>,
    what: String,
    response: Paced<Response>,
    received: u64,
    expected: u64,
    resumes: u32,
}

impl Read for BlobStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let failure = match self.response.read(buf) {
                Ok(0) if !buf.is_empty() && self.received < self.expected => {
                    io::Error::new(io::ErrorKind::UnexpectedEof, "the connection ended early")
                }
                Ok(n) => {
                    self.received += n as u64;
                    if n > 0 {
                        // Each resume that brings bytes earns the budget back.
                        self.resumes = 0;
                    }
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Every byte the descriptor promised is in: the verifier has the last word.
                Err(_) if self.received >= self.expected => return Ok(0),
                Err(e) => e,
            };
            let client = &self.client;
            if self.resumes >= client.retry.retries {
                return Err(failure);
            }
            self.resumes += 1;
            let wait = client.retry.wait(self.resumes, None).unwrap_or_default();
            self.call.control.events.event(&Event::Resume {
                what: &self.what,
                error: &error_chain(&failure),
                received: self.received,
                expected: self.expected,
                wait,
            });
            self.call
                .control
                .cancel
                .sleep(wait)
                .map_err(|_| io::Error::other(TransportError::Cancelled))?;
            let from = self.received;
            let call = &self.call;
            let response = client
                .retrying(call, || {
                    client.blob_request(call, &self.url, &self.scopes, &self.what, from)
                })
                .map_err(io::Error::other)?;
            self.response = Paced::new(response, &client.pace);
        }
    }
}
