//! A client for the distribution API (the OCI distribution spec): token and basic
//! authentication, retries with backoff for idempotent requests, blob downloads that resume
//! where a dropped connection left them, and streamed uploads (one `PUT`, or chunks when the
//! registry refuses one).

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::blocking::{Body, Request, RequestBuilder, Response};
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RANGE,
};
use reqwest::{Method, StatusCode, Url};

use crate::model::digest::VerifyingReader;
use crate::model::{Descriptor, Digest, ImageLocation};
use crate::transport::auth::Credentials;
use crate::transport::{BlobReader, TransportError};

use super::{Notify, RetryPolicy};

/// Manifests larger than this are refused, as registries refuse to store them.
const MANIFEST_CAP: u64 = 4 * 1024 * 1024;
/// The chunk size of a chunked upload, unless the registry asks for larger ones.
const CHUNK: u64 = 16 * 1024 * 1024;

/// One registry, as one user sees it.
pub(super) struct Client {
    http: reqwest::blocking::Client,
    /// `http[s]://host[:port]/`.
    base: Url,
    /// The registry as the user wrote it, for messages.
    registry: String,
    /// The image location, for messages.
    location: ImageLocation,
    creds: Option<Credentials>,
    auth: Mutex<AuthState>,
    retry: RetryPolicy,
    notify: Notify,
    /// Set once the registry refused a monolithic upload.
    chunked: AtomicBool,
}

#[derive(Default)]
struct AuthState {
    challenge: Option<Challenge>,
    /// Bearer tokens by the scopes they were asked for, with the time to renew them.
    tokens: HashMap<String, (String, Instant)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// How one attempt of an operation ended, when it did not succeed.
pub(super) enum Attempt {
    /// A transient failure: the operation may be tried again, after `after` if the
    /// registry said so.
    Retry {
        error: TransportError,
        after: Option<Duration>,
    },
    /// A failure that another attempt will not fix.
    Fail(TransportError),
}

impl From<TransportError> for Attempt {
    fn from(e: TransportError) -> Attempt {
        Attempt::Fail(e)
    }
}

/// The access a request needs, as token scopes.
fn pull(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

fn push(repo: &str) -> String {
    format!("repository:{repo}:pull,push")
}

impl Client {
    pub(super) fn new(
        registry: &str,
        verify_tls: bool,
        announce_http: bool,
        location: ImageLocation,
        creds: Option<Credentials>,
        retry: RetryPolicy,
        notify: Notify,
    ) -> Result<Client, TransportError> {
        // Docker Hub's API lives on another host than its name.
        let host = match registry {
            "docker.io" | "index.docker.io" => "registry-1.docker.io",
            other => other,
        };
        let connect_error = |e: reqwest::Error| TransportError::Connect {
            registry: registry.to_string(),
            message: e.to_string(),
            tls: false,
        };
        let http = reqwest::blocking::Client::builder()
            .user_agent(concat!("unroot/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            // For a request and its answer, and then per read of the answer's body; an
            // upload (sent whole within its request) gets a time that grows with its size.
            .timeout(Duration::from_secs(300))
            // A peer that stops acknowledging what is sent is given up on, whatever the
            // request's own time.
            .tcp_user_timeout(Duration::from_secs(120))
            .redirect(reqwest::redirect::Policy::limited(10))
            .tls_danger_accept_invalid_certs(!verify_tls)
            .build()
            .map_err(connect_error)?;
        let url = |scheme: &str| {
            Url::parse(&format!("{scheme}://{host}/")).map_err(|e| TransportError::Refused {
                location: location.to_string(),
                reason: format!("`{registry}` is not a valid registry address: {e}"),
            })
        };
        // Without verification, as skopeo does: HTTPS if the registry speaks it (whatever
        // its certificate), else plain HTTP.
        let base = if verify_tls || speaks_https(&http, &url("https")?) {
            url("https")?
        } else {
            if announce_http {
                notify.line(&format!(
                    "{registry} does not answer HTTPS: using plain HTTP (--tls-verify=false)"
                ));
            }
            url("http")?
        };
        Ok(Client {
            http,
            base,
            registry: registry.to_string(),
            location,
            creds,
            auth: Mutex::default(),
            retry,
            notify,
            chunked: AtomicBool::new(false),
        })
    }

    fn url(&self, path: &str) -> Url {
        self.base.join(path).expect("registry paths are valid URLs")
    }

    // ---- errors ----

    fn unauthorized(&self) -> TransportError {
        TransportError::Unauthorized {
            registry: self.registry.clone(),
            location: self.location.to_string(),
            had_credentials: self.creds.is_some(),
        }
    }

    /// The error for an unexpected answer: the registry's error codes when it sent them.
    fn status_error(&self, what: &str, response: Response) -> TransportError {
        let status = response.status();
        let body = read_capped(response, 64 * 1024).unwrap_or_default();
        let errors = parse_errors(&body);
        let first = errors.first().map(|(code, _)| code.as_str());
        let not_found = || TransportError::NotFound {
            location: self.location.to_string(),
            what: what.to_string(),
        };
        match (status.as_u16(), first) {
            (401, _) | (_, Some("UNAUTHORIZED")) => self.unauthorized(),
            (_, Some("MANIFEST_UNKNOWN" | "NAME_UNKNOWN" | "BLOB_UNKNOWN" | "NOT_FOUND"))
            | (404, None) => not_found(),
            (403, _) | (_, Some("DENIED")) => TransportError::Denied {
                location: self.location.to_string(),
                message: errors
                    .first()
                    .map(|(_, m)| m.clone())
                    .unwrap_or_else(|| one_line(&String::from_utf8_lossy(&body))),
            },
            _ => TransportError::Registry {
                location: self.location.to_string(),
                message: if errors.is_empty() {
                    format!(
                        "HTTP {} to {what}: {}",
                        status.as_u16(),
                        one_line(&String::from_utf8_lossy(&body))
                    )
                } else {
                    format!(
                        "HTTP {} to {what}: {}",
                        status.as_u16(),
                        errors
                            .iter()
                            .map(|(c, m)| format!("{c}: {m}"))
                            .collect::<Vec<_>>()
                            .join("; ")
                    )
                },
            },
        }
    }

    /// The error for an unexpected answer to a write: a missing repository is one the
    /// registry will not create on push.
    fn push_error(&self, repo: &str, what: &str, response: Response) -> TransportError {
        match self.status_error(what, response) {
            TransportError::NotFound { .. } => TransportError::Refused {
                location: self.location.to_string(),
                reason: format!(
                    "the registry has no repository `{repo}` for the {what} and does not create one on push: create it first (a project in Harbor, a repository in ECR or Quay), or write elsewhere"
                ),
            },
            other => other,
        }
    }

    /// A request that got no answer: retried when the failure looks transient.
    fn request_failure(&self, e: reqwest::Error) -> Attempt {
        let transient = is_transient(&e);
        let message = error_chain(&e);
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
        let error = TransportError::Connect {
            registry: self.registry.clone(),
            message,
            tls,
        };
        if transient && !tls {
            Attempt::Retry { error, after: None }
        } else {
            Attempt::Fail(error)
        }
    }

    /// Turns a transient status into a retry, after what `Retry-After` asks.
    fn check_transient(&self, what: &str, response: Response) -> Result<Response, Attempt> {
        let status = response.status();
        if is_transient_status(status) {
            let after = retry_after(response.headers());
            return Err(Attempt::Retry {
                error: self.status_error(what, response),
                after,
            });
        }
        Ok(response)
    }

    // ---- authentication ----

    /// Sends a request with the credentials its scopes need, answering one authentication
    /// challenge. `build` is called again for the second request.
    fn send(
        &self,
        scopes: &[String],
        build: &mut dyn FnMut() -> Result<RequestBuilder, Attempt>,
    ) -> Result<Response, Attempt> {
        let mut challenged = false;
        loop {
            let request = build()?.build().map_err(|e| self.request_failure(e))?;
            let request = self.authorize(request, scopes)?;
            let response = self
                .http
                .execute(request)
                .map_err(|e| self.request_failure(e))?;
            if response.status() == StatusCode::UNAUTHORIZED && !challenged {
                if let Some(challenge) = parse_challenge(response.headers()) {
                    challenged = true;
                    let mut state = self.auth.lock().expect("not poisoned");
                    let key = scopes.join(" ");
                    // A token that was refused is not asked for again from the cache.
                    state.tokens.remove(&key);
                    let repeat = state.challenge.as_ref() != Some(&challenge)
                        || matches!(challenge, Challenge::Bearer { .. });
                    state.challenge = Some(challenge);
                    drop(state);
                    if repeat && (self.creds.is_some() || self.bearer()) {
                        continue;
                    }
                }
            }
            return Ok(response);
        }
    }

    fn bearer(&self) -> bool {
        matches!(
            self.auth.lock().expect("not poisoned").challenge,
            Some(Challenge::Bearer { .. })
        )
    }

    /// Adds the credentials the challenge asks for, to requests for the registry itself
    /// only (an upload location on another host gets none).
    fn authorize(&self, mut request: Request, scopes: &[String]) -> Result<Request, Attempt> {
        use base64::Engine;
        if request.url().origin() != self.base.origin() {
            return Ok(request);
        }
        let challenge = self.auth.lock().expect("not poisoned").challenge.clone();
        let value = match challenge {
            None => return Ok(request),
            Some(Challenge::Basic) => match &self.creds {
                Some(c) => format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{}:{}", c.username, c.password))
                ),
                None => return Ok(request),
            },
            Some(Challenge::Bearer { realm, service }) => {
                format!("Bearer {}", self.token(&realm, service.as_deref(), scopes)?)
            }
        };
        let mut value = HeaderValue::from_str(&value).map_err(|_| {
            Attempt::Fail(TransportError::Registry {
                location: self.location.to_string(),
                message: "a token that is not a valid header value".to_string(),
            })
        })?;
        value.set_sensitive(true);
        request.headers_mut().insert(AUTHORIZATION, value);
        Ok(request)
    }

    /// A bearer token for `scopes`, from the cache or the token service.
    fn token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<String, Attempt> {
        let key = scopes.join(" ");
        if let Some((t, renew)) = self.auth.lock().expect("not poisoned").tokens.get(&key) {
            if Instant::now() < *renew {
                return Ok(t.clone());
            }
        }
        let realm_url = Url::parse(realm).map_err(|e| {
            Attempt::Fail(TransportError::Registry {
                location: self.location.to_string(),
                message: format!("its token service `{realm}` is not a valid URL: {e}"),
            })
        })?;
        let mut url = realm_url.clone();
        {
            let mut query = url.query_pairs_mut();
            if let Some(s) = service {
                query.append_pair("service", s);
            }
            for scope in scopes {
                query.append_pair("scope", scope);
            }
        }
        let request = match &self.creds {
            // An identity token is exchanged with the OAuth2 form (a POST).
            Some(c) if c.is_identity_token() => {
                let mut form = Url::parse("unroot:form").expect("a valid URL");
                form.query_pairs_mut()
                    .append_pair("grant_type", "refresh_token")
                    .append_pair("service", service.unwrap_or_default())
                    .append_pair("scope", &scopes.join(" "))
                    .append_pair("client_id", "unroot")
                    .append_pair("refresh_token", &c.password);
                self.http
                    .post(realm_url)
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(form.query().unwrap_or_default().to_string())
            }
            Some(c) => self
                .http
                .get(url)
                .basic_auth(&c.username, Some(&c.password)),
            None => self.http.get(url),
        };
        let response = request.send().map_err(|e| self.request_failure(e))?;
        let response = self.check_transient("its token service", response)?;
        if matches!(response.status().as_u16(), 401 | 403) {
            return Err(Attempt::Fail(self.unauthorized()));
        }
        if !response.status().is_success() {
            return Err(Attempt::Fail(
                self.status_error("its token service", response),
            ));
        }
        let body = read_capped(response, 1024 * 1024).map_err(|e| self.request_failure(e))?;
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let token = parsed["token"]
            .as_str()
            .or_else(|| parsed["access_token"].as_str())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Attempt::Fail(TransportError::Registry {
                    location: self.location.to_string(),
                    message: format!("its token service `{realm}` answered without a token"),
                })
            })?
            .to_string();
        // Tokens live `expires_in` seconds (60 when not said, as the token spec has it);
        // they are renewed a little before, so a long upload never starts with a stale one.
        let lifetime = parsed["expires_in"].as_u64().unwrap_or(60).max(10);
        let renew = Instant::now() + Duration::from_secs(lifetime - lifetime / 6);
        self.auth
            .lock()
            .expect("not poisoned")
            .tokens
            .insert(key, (token.clone(), renew));
        Ok(token)
    }

    // ---- retries ----

    /// Runs `op` until it succeeds, fails for good, or the retry policy is spent.
    pub(super) fn retrying<T>(
        &self,
        mut op: impl FnMut() -> Result<T, Attempt>,
    ) -> Result<T, TransportError> {
        let started = Instant::now();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let (error, after) = match op() {
                Ok(v) => return Ok(v),
                Err(Attempt::Fail(e)) => return Err(e),
                Err(Attempt::Retry { error, after }) => (error, after),
            };
            let wait = match self.retry.wait(attempts, after) {
                Some(wait) if attempts <= self.retry.retries => wait,
                // Retries are off: the error as it is.
                Some(_) if attempts == 1 => return Err(error),
                _ => {
                    return Err(TransportError::GaveUp {
                        attempts,
                        seconds: started.elapsed().as_secs(),
                        asked_to_wait: after
                            .filter(|a| *a > self.retry.max_wait)
                            .map(|a| a.as_secs()),
                        last: Box::new(error),
                    })
                }
            };
            self.notify.line(&format!(
                "{error}; trying again in {:.1} s (attempt {} of {})",
                wait.as_secs_f64(),
                attempts + 1,
                self.retry.retries + 1
            ));
            std::thread::sleep(wait);
        }
    }

    // ---- the API ----

    /// A manifest or index by tag or digest: its bytes and the content type the registry
    /// gave. The caller computes and checks its digest.
    pub(super) fn manifest(
        &self,
        repo: &str,
        reference: &str,
        accept: &[&str],
        what: &str,
    ) -> Result<(Vec<u8>, Option<String>), TransportError> {
        let url = self.url(&format!("v2/{repo}/manifests/{reference}"));
        let accept = accept.join(", ");
        self.retrying(|| {
            let response = self.send(&[pull(repo)], &mut || {
                Ok(self.http.get(url.clone()).header(ACCEPT, &accept))
            })?;
            let response = self.check_transient(what, response)?;
            if response.status() != StatusCode::OK {
                return Err(Attempt::Fail(self.status_error(what, response)));
            }
            let media_type = header_str(response.headers(), CONTENT_TYPE.as_str());
            let bytes =
                read_capped(response, MANIFEST_CAP + 1).map_err(|e| self.request_failure(e))?;
            if bytes.len() as u64 > MANIFEST_CAP {
                return Err(Attempt::Fail(TransportError::Registry {
                    location: self.location.to_string(),
                    message: format!("a {what} larger than 4 MiB, which no registry stores"),
                }));
            }
            Ok((bytes, media_type))
        })
    }

    /// Whether the repository has a blob.
    pub(super) fn blob_exists(&self, repo: &str, digest: &Digest) -> Result<bool, TransportError> {
        let url = self.url(&format!("v2/{repo}/blobs/{digest}"));
        let what = format!("blob {digest}");
        self.retrying(|| {
            let response = self.send(&[push(repo)], &mut || Ok(self.http.head(url.clone())))?;
            let response = self.check_transient(&what, response)?;
            match response.status() {
                StatusCode::OK => Ok(true),
                StatusCode::NOT_FOUND => Ok(false),
                _ => Err(Attempt::Fail(self.status_error(&what, response))),
            }
        })
    }

    /// A blob's bytes as a stream that resumes after a dropped connection.
    pub(super) fn blob(
        self: &Arc<Self>,
        repo: &str,
        desc: &Descriptor,
    ) -> Result<BlobReader, TransportError> {
        let url = self.url(&format!("v2/{repo}/blobs/{}", desc.digest));
        let what = format!("blob {}", desc.digest);
        let scopes = vec![pull(repo)];
        let response = self.retrying(|| self.blob_request(&url, &scopes, &what, 0))?;
        Ok(Box::new(BlobStream {
            client: self.clone(),
            url,
            scopes,
            what,
            response,
            received: 0,
            expected: desc.size,
            resumes: 0,
        }))
    }

    /// `GET` of a blob from byte `from` on; the answer is positioned at `from`.
    fn blob_request(
        &self,
        url: &Url,
        scopes: &[String],
        what: &str,
        from: u64,
    ) -> Result<Response, Attempt> {
        let response = self.send(scopes, &mut || {
            let request = self.http.get(url.clone());
            Ok(if from > 0 {
                request.header(RANGE, format!("bytes={from}-"))
            } else {
                request
            })
        })?;
        let mut response = self.check_transient(what, response)?;
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
                        location: self.location.to_string(),
                        message: format!("the range `{range}` for {what}, asked from byte {from}"),
                    }))
                }
            }
            _ => Err(Attempt::Fail(self.status_error(what, response))),
        }
    }

    fn io_error(&self, what: &str, e: io::Error) -> TransportError {
        TransportError::Connect {
            registry: self.registry.clone(),
            message: format!("reading {what}: {e}"),
            tls: false,
        }
    }

    /// Mounts a blob from another repository of the same registry. `false` when the
    /// registry would not (it then expects an upload).
    pub(super) fn mount(
        &self,
        repo: &str,
        digest: &Digest,
        from: &str,
    ) -> Result<bool, TransportError> {
        let mut url = self.url(&format!("v2/{repo}/blobs/uploads/"));
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string())
            .append_pair("from", from);
        let what = format!("mount of blob {digest}");
        self.retrying(|| {
            let response = self.send(&[push(repo), pull(from)], &mut || {
                Ok(self.http.post(url.clone()).header(CONTENT_LENGTH, 0))
            })?;
            let response = self.check_transient(&what, response)?;
            match response.status() {
                StatusCode::CREATED => Ok(true),
                // An upload was started instead; it expires unused.
                StatusCode::ACCEPTED => Ok(false),
                status if status.is_client_error() => Ok(false),
                _ => Err(Attempt::Fail(self.status_error(&what, response))),
            }
        })
    }

    /// Uploads a blob, streaming it from `open` (called again for each attempt) and
    /// verifying its digest on the way.
    pub(super) fn upload(
        &self,
        repo: &str,
        desc: &Descriptor,
        open: &mut dyn FnMut() -> Result<BlobReader, TransportError>,
    ) -> Result<(), TransportError> {
        let what = format!("upload of blob {}", desc.digest);
        self.retrying(|| {
            let (location, min_chunk) = self.start_upload(repo, &what)?;
            let reader = open()?;
            if self.chunked.load(Ordering::Relaxed) {
                return self.upload_chunks(repo, desc, location, reader, min_chunk, &what);
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
            let url = with_digest(&location, &desc.digest);
            let response = self.send(&[push(repo)], &mut || {
                let body = body.take().ok_or_else(|| {
                    // The stream is spent: a second challenge needs a new attempt.
                    Attempt::Retry {
                        error: self.unauthorized(),
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
                return Err(Attempt::Fail(TransportError::from_read(e, &self.location)));
            }
            let response = self.check_transient(&what, response?)?;
            match response.status() {
                StatusCode::CREATED | StatusCode::NO_CONTENT | StatusCode::ACCEPTED => Ok(()),
                StatusCode::PAYLOAD_TOO_LARGE => {
                    // This and every later blob go up in chunks, starting now.
                    self.chunked.store(true, Ordering::Relaxed);
                    self.notify.line(&format!(
                        "{}: the registry refused a single upload of {} bytes; uploading in chunks",
                        self.registry, desc.size
                    ));
                    let (location, min_chunk) = self.start_upload(repo, &what)?;
                    self.upload_chunks(repo, desc, location, open()?, min_chunk, &what)
                }
                _ => Err(Attempt::Fail(self.push_error(repo, &what, response))),
            }
        })
    }

    /// Starts an upload session: its URL, and the smallest chunk the registry takes.
    fn start_upload(&self, repo: &str, what: &str) -> Result<(Url, u64), Attempt> {
        let url = self.url(&format!("v2/{repo}/blobs/uploads/"));
        let response = self.send(&[push(repo)], &mut || {
            Ok(self.http.post(url.clone()).header(CONTENT_LENGTH, 0))
        })?;
        let response = self.check_transient(what, response)?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(Attempt::Fail(self.push_error(repo, what, response)));
        }
        let min_chunk = header_str(response.headers(), "oci-chunk-min-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        Ok((
            self.upload_location(&url, response.headers(), what)?,
            min_chunk,
        ))
    }

    fn upload_location(&self, base: &Url, headers: &HeaderMap, what: &str) -> Result<Url, Attempt> {
        let location = header_str(headers, LOCATION.as_str()).ok_or_else(|| {
            Attempt::Fail(TransportError::Registry {
                location: self.location.to_string(),
                message: format!("no upload location for the {what}"),
            })
        })?;
        base.join(&location).map_err(|e| {
            Attempt::Fail(TransportError::Registry {
                location: self.location.to_string(),
                message: format!("an invalid upload location `{location}`: {e}"),
            })
        })
    }

    /// The chunked upload: `PATCH`es of consecutive ranges, then a `PUT` with the digest.
    fn upload_chunks(
        &self,
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
            let response = self.send(&[push(repo)], &mut || {
                let body = body.take().ok_or_else(|| Attempt::Retry {
                    error: self.unauthorized(),
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
                return Err(Attempt::Fail(TransportError::from_read(e, &self.location)));
            }
            let response = self.check_transient(what, response?)?;
            if response.status() != StatusCode::ACCEPTED {
                return Err(Attempt::Fail(self.push_error(repo, what, response)));
            }
            location = self.upload_location(&url, response.headers(), what)?;
            offset += len;
        }
        // The verifier checks the digest once it has seen the end.
        let mut rest = Vec::new();
        shared
            .lock()
            .expect("not poisoned")
            .read_to_end(&mut rest)
            .map_err(|e| Attempt::Fail(TransportError::from_read(e, &self.location)))?;
        // Registries may copy the whole blob to its place before they answer.
        let url = with_digest(&location, &desc.digest);
        let response = self.send(&[push(repo)], &mut || {
            Ok(self
                .http
                .put(url.clone())
                .timeout(upload_timeout(desc.size))
                .header(CONTENT_LENGTH, 0))
        })?;
        let response = self.check_transient(what, response)?;
        match response.status() {
            StatusCode::CREATED | StatusCode::NO_CONTENT => Ok(()),
            _ => Err(Attempt::Fail(self.push_error(repo, what, response))),
        }
    }

    /// Puts a manifest or index under a tag or its digest.
    pub(super) fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<(), TransportError> {
        let url = self.url(&format!("v2/{repo}/manifests/{reference}"));
        let what = "manifest upload";
        self.retrying(|| {
            let response = self.send(&[push(repo)], &mut || {
                Ok(self
                    .http
                    .request(Method::PUT, url.clone())
                    .header(CONTENT_TYPE, media_type)
                    .body(bytes.to_vec()))
            })?;
            let response = self.check_transient(what, response)?;
            match response.status() {
                StatusCode::CREATED | StatusCode::OK | StatusCode::NO_CONTENT => Ok(()),
                _ => Err(Attempt::Fail(self.push_error(repo, what, response))),
            }
        })
    }
}

/// Whether a registry answers HTTPS (any HTTP status will do). Only a refused connection
/// or a peer that answers the TLS handshake in plain text means it does not: on a timeout
/// or any other failure HTTPS is kept, and the real request reports it.
fn speaks_https(http: &reqwest::blocking::Client, base: &Url) -> bool {
    let probe = base.join("v2/").expect("a valid path");
    match http.get(probe).timeout(Duration::from_secs(10)).send() {
        Ok(_) => true,
        Err(e) => {
            let text = error_chain(&e).to_lowercase();
            let plain = [
                "connection refused",
                "invalidcontenttype",
                "corrupt message",
            ]
            .iter()
            .any(|k| text.contains(k));
            !plain
        }
    }
}

/// A blob download that asks for the rest with a `Range` request when the connection drops.
struct BlobStream {
    client: Arc<Client>,
    url: Url,
    scopes: Vec<String>,
    what: String,
    response: Response,
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
            client.notify.line(&format!(
                "{}: {} after {} of {} bytes; resuming in {:.1} s",
                self.what,
                error_chain(&failure),
                self.received,
                self.expected,
                wait.as_secs_f64()
            ));
            std::thread::sleep(wait);
            let from = self.received;
            self.response = client
                .retrying(|| client.blob_request(&self.url, &self.scopes, &self.what, from))
                .map_err(io::Error::other)?;
        }
    }
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
        self.0.lock().expect("not poisoned").take()
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
            let mut slot = self.slot.0.lock().expect("not poisoned");
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
        let n = self
            .inner
            .lock()
            .expect("not poisoned")
            .read(&mut buf[..max])?;
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

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn read_capped(response: Response, cap: u64) -> Result<Vec<u8>, reqwest::Error> {
    let mut bytes = Vec::new();
    let mut limited = response.take(cap);
    match limited.read_to_end(&mut bytes) {
        Ok(_) => Ok(bytes),
        Err(e) => match e
            .into_inner()
            .map(|inner| inner.downcast::<reqwest::Error>())
        {
            Some(Ok(e)) => Err(*e),
            // Errors of the body are reqwest's; anything else ends the body as read.
            _ => Ok(bytes),
        },
    }
}

/// The registry's error envelope: `{"errors": [{"code": ..., "message": ...}]}`.
fn parse_errors(body: &[u8]) -> Vec<(String, String)> {
    let value: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    value["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    (
                        e["code"].as_str().unwrap_or("UNKNOWN").to_string(),
                        one_line(e["message"].as_str().unwrap_or_default()),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// 408, 429 and the 5xx answers that mean "not now".
fn is_transient_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

/// Timeouts, resets and connections closed mid-answer; not refusals, name lookups or TLS.
fn is_transient(e: &reqwest::Error) -> bool {
    if e.is_timeout() {
        return true;
    }
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            if matches!(
                io.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::TimedOut
            ) {
                return true;
            }
        }
        let text = s.to_string().to_lowercase();
        if text.contains("connection closed before message completed")
            || text.contains("connection reset")
            || text.contains("broken pipe")
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// What really happened, without the HTTP library's generic wrappers.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        let text = s.to_string();
        let generic = text.starts_with("error sending request")
            || text.starts_with("client error")
            || text.starts_with("error decoding response body")
            || text.starts_with("request or response body error")
            || parts.last().is_some_and(|p| p.contains(&text));
        if !generic {
            parts.push(text);
        }
        source = s.source();
    }
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}

/// `Retry-After` in seconds or as an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = header_str(headers, "retry-after")?;
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = chrono::DateTime::parse_from_rfc2822(&value)
        .ok()?
        .timestamp();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    Some(Duration::from_secs(when.saturating_sub(now).max(0) as u64))
}

/// The first challenge of `WWW-Authenticate` that unroot can answer.
fn parse_challenge(headers: &HeaderMap) -> Option<Challenge> {
    for value in headers.get_all("www-authenticate") {
        let Ok(value) = value.to_str() else { continue };
        let (scheme, params) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            let params = auth_params(params);
            let realm = params.get("realm")?.clone();
            return Some(Challenge::Bearer {
                realm,
                service: params.get("service").cloned(),
            });
        }
    }
    None
}

/// `key="value", key=value` pairs of a challenge; values may hold commas inside quotes.
fn auth_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, next)) = chars.next() {
                            value.push(next);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        out.insert(key, value);
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

pub(super) fn one_line(s: &str) -> String {
    let s = s.trim();
    let s = s.lines().next().unwrap_or_default();
    if s.len() > 300 {
        let cut = s
            .char_indices()
            .take_while(|(i, _)| *i < 300)
            .last()
            .map_or(0, |(i, _)| i);
        format!("{}...", &s[..cut])
    } else if s.is_empty() {
        "(no message)".to_string()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_with_commas_in_quotes() {
        let p = auth_params(
            r#"realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(p["realm"], "https://auth.example/token");
        assert_eq!(p["service"], "registry.example");
        assert_eq!(p["scope"], "repository:a/b:pull,push");
        let p = auth_params(r#"realm=https://x/t, service="s\"q""#);
        assert_eq!(p["realm"], "https://x/t");
        assert_eq!(p["service"], "s\"q");
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn error_envelopes_parse() {
        let e = parse_errors(br#"{"errors":[{"code":"DENIED","message":"no\nway"}]}"#);
        assert_eq!(e, vec![("DENIED".to_string(), "no".to_string())]);
        assert!(parse_errors(b"<html>").is_empty());
    }
}
