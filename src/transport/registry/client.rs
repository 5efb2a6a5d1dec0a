//! A client for the distribution API (the OCI distribution spec), one per registry and
//! set of credentials, shared by every job of a session: its connections and tokens are
//! reused. What a call is about (the image location for messages, the job's events and
//! cancellation) comes with each call as a [`Call`].
//!
//! The client is split along its seams: [`super::auth`] answers challenges,
//! [`super::retry`] decides what is tried again, [`super::download`] and
//! [`super::upload`] move the bytes.

use crate::control::Locked;
use std::io::Read;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::blocking::{Request, Response};
use reqwest::Url;

use crate::control::{secrets, Control, Event, Interrupted};
use crate::model::ImageLocation;
use crate::transport::auth::Credentials;
use crate::transport::TransportError;

use super::challenge::AuthState;
use super::pace::Paced;
use super::retry::{
    budget_left, classify, error_chain, is_transient_status, retry_after, Attempt, RetryPolicy,
    Size,
};
use super::{one_line, parse_errors, read_capped, Pace};

/// One registry, as one user sees it.
pub(super) struct Client {
    pub(super) http: reqwest::blocking::Client,
    /// `http[s]://host[:port]/`.
    pub(super) base: Url,
    /// The registry as the user wrote it, for messages.
    pub(super) registry: String,
    pub(super) creds: Option<Credentials>,
    /// Whether TLS is required for this registry (the user did not opt out, and it is not
    /// on the loopback): credentials then never go over plain HTTP.
    pub(super) tls_required: bool,
    pub(super) auth: Mutex<AuthState>,
    pub(super) retry: RetryPolicy,
    pub(super) pace: Pace,
    /// Set once the registry refused a monolithic upload.
    pub(super) chunked: AtomicBool,
    /// Until when the registry asked every client to wait (a 429 with `Retry-After`):
    /// the client is shared by every job of a session, so one job's answer holds them all.
    pub(super) hold: Mutex<Option<std::time::Instant>>,
}

/// What one call is about: the image (for messages) and the job that makes it.
#[derive(Clone)]
pub(super) struct Call {
    pub(super) location: ImageLocation,
    pub(super) control: Control,
}

impl Client {
    /// A client for `registry`. Without `verify_tls`, HTTPS is used if the registry speaks
    /// it (whatever its certificate), else plain HTTP, as skopeo does; `announce_http`
    /// says so through the events of the call that made the client.
    pub(super) fn new(
        registry: &str,
        verify_tls: bool,
        announce_http: bool,
        creds: Option<Credentials>,
        retry: RetryPolicy,
        pace: Pace,
        call: &Call,
    ) -> Result<Client, TransportError> {
        // Docker Hub's API lives on another host than its name.
        let host = match registry {
            "docker.io" | "index.docker.io" => "registry-1.docker.io",
            other => other,
        };
        // The process's TLS provider; the first client installs it (later calls find it).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::blocking::Client::builder()
            .user_agent(concat!("unroot/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            // For a request's answer, and then per read of the answer's body; an upload
            // (sent whole within its request) gets a time that grows with its size.
            .timeout(pace.read_timeout)
            // A peer that stops acknowledging what is sent is given up on, whatever the
            // request's own time.
            .tcp_user_timeout(Duration::from_secs(120))
            .redirect(reqwest::redirect::Policy::limited(10))
            .tls_danger_accept_invalid_certs(!verify_tls)
            .build()
            .map_err(|e| TransportError::Connect {
                registry: registry.to_string(),
                message: error_chain(&e),
                tls: false,
            })?;
        let url = |scheme: &str| {
            Url::parse(&format!("{scheme}://{host}/")).map_err(|e| TransportError::Refused {
                location: call.location.to_string(),
                reason: format!("`{registry}` is not a valid registry address: {e}"),
            })
        };
        let base = if verify_tls || speaks_https(&http, &url("https")?, &call.control)? {
            url("https")?
        } else {
            if announce_http {
                call.control.events.event(&Event::PlainHttp { registry });
            }
            url("http")?
        };
        if let Some(c) = &creds {
            use base64::Engine;
            // As they are sent: the password, and `user:password` in base64 (Basic).
            secrets::register(&c.password);
            secrets::register(
                &base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", c.username, c.password)),
            );
        }
        Ok(Client {
            http,
            base,
            registry: registry.to_string(),
            creds,
            tls_required: verify_tls,
            auth: Mutex::default(),
            retry,
            pace,
            chunked: AtomicBool::new(false),
            hold: Mutex::new(None),
        })
    }

    pub(super) fn url(&self, path: &str) -> Url {
        self.base.join(path).expect("registry paths are valid URLs")
    }

    /// Runs the small request `op` (a manifest, a token, a check) under the retry policy
    /// and its budget, with the call's events and cancellation.
    pub(super) fn retrying<T>(
        &self,
        call: &Call,
        op: impl FnMut() -> Result<T, Attempt>,
    ) -> Result<T, TransportError> {
        self.retry.run(&call.control, Size::Small, op)
    }

    /// Runs a blob's transfer `op` under the retry policy; each attempt is held to the
    /// pace, not to the small requests' budget.
    pub(super) fn retrying_transfer<T>(
        &self,
        call: &Call,
        op: impl FnMut() -> Result<T, Attempt>,
    ) -> Result<T, TransportError> {
        self.retry.run(&call.control, Size::Transfer, op)
    }

    /// Sends one request and waits for its answer, giving up when the job is cancelled
    /// (a peer that never answers cannot hold a cancelled job); a request with nothing to
    /// send gets its answer's headers within the deadline.
    pub(super) fn execute(&self, call: &Call, request: Request) -> Result<Response, Attempt> {
        self.wait_for_hold(call)?;
        let http = self.http.clone();
        let has_body = request.body().is_some();
        let work = move || http.execute(request);
        let result = match (has_body, budget_left()) {
            (true, None) => call.control.cancel.run(work),
            (true, Some(left)) => call.control.cancel.run_for(left, work),
            (false, _) => call.control.cancel.run_for(self.small_deadline(), work),
        };
        match result {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(self.request_failure(e)),
            Err(e) => Err(self.interrupted(e)),
        }
    }

    /// Reads at most `cap` bytes of an answer's body, under the speed floor and within
    /// the deadline, giving up when the job is cancelled.
    pub(super) fn read_body(
        &self,
        call: &Call,
        response: Response,
        cap: u64,
    ) -> Result<Vec<u8>, Attempt> {
        let pace = self.pace;
        let work = move || -> std::io::Result<Vec<u8>> {
            let mut bytes = Vec::new();
            Paced::new(response, &pace)
                .take(cap)
                .read_to_end(&mut bytes)?;
            Ok(bytes)
        };
        match call.control.cancel.run_for(self.small_deadline(), work) {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(e)) => {
                let failure = classify(&e);
                let error = TransportError::Connect {
                    registry: self.registry.clone(),
                    message: error_chain(&e),
                    tls: failure.tls,
                };
                Err(if failure.transient {
                    Attempt::Retry { error, after: None }
                } else {
                    Attempt::Fail(error)
                })
            }
            Err(e) => Err(self.interrupted(e)),
        }
    }

    /// How long a small answer may take: `--request-deadline`, or what is left of the
    /// retry budget of the request it belongs to when that is less.
    fn small_deadline(&self) -> Duration {
        budget_left().map_or(self.pace.deadline, |left| left.min(self.pace.deadline))
    }

    /// The attempt's end when waiting on its work stopped.
    fn interrupted(&self, e: Interrupted) -> Attempt {
        match e {
            Interrupted::Cancelled => Attempt::Fail(TransportError::Cancelled),
            Interrupted::Panicked(message) => Attempt::Fail(TransportError::Internal { message }),
            Interrupted::TimedOut(limit) => Attempt::Retry {
                error: TransportError::Connect {
                    registry: self.registry.clone(),
                    message: format!(
                        "no whole answer within {} s (`--request-deadline`, or what was left of `--retry-budget`)",
                        limit.as_secs()
                    ),
                    tls: false,
                },
                after: None,
            },
        }
    }

    // ---- errors ----

    pub(super) fn unauthorized(&self, call: &Call) -> TransportError {
        TransportError::Unauthorized {
            registry: self.registry.clone(),
            location: call.location.to_string(),
            had_credentials: self.creds.is_some(),
        }
    }

    /// The error for an unexpected answer: the registry's error codes when it sent them.
    /// The registry's words are cut to one line each and never include what was sent.
    pub(super) fn status_error(
        &self,
        call: &Call,
        what: &str,
        response: Response,
    ) -> TransportError {
        let status = response.status();
        let body = read_capped(response, 64 * 1024).unwrap_or_default();
        // The registry's words may echo what was sent (an `Authorization` header).
        let body = secrets::redact(&String::from_utf8_lossy(&body)).into_bytes();
        let errors = parse_errors(&body);
        let first = errors.first().map(|(code, _)| code.as_str());
        let location = call.location.to_string();
        match (status.as_u16(), first) {
            (401, _) | (_, Some("UNAUTHORIZED")) => self.unauthorized(call),
            (_, Some("MANIFEST_UNKNOWN" | "NAME_UNKNOWN" | "BLOB_UNKNOWN" | "NOT_FOUND"))
            | (404, None) => TransportError::NotFound {
                location,
                what: what.to_string(),
                local: false,
            },
            (403, _) | (_, Some("DENIED")) => TransportError::Denied {
                location,
                message: errors
                    .first()
                    .map(|(_, m)| m.clone())
                    .unwrap_or_else(|| one_line(&String::from_utf8_lossy(&body))),
            },
            _ => {
                let detail = if errors.is_empty() {
                    one_line(&String::from_utf8_lossy(&body))
                } else {
                    errors
                        .iter()
                        .map(|(c, m)| format!("{c}: {m}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                };
                TransportError::Registry {
                    location,
                    message: format!("HTTP {} to {what}: {detail}", status.as_u16()),
                }
            }
        }
    }

    /// The error for an unexpected answer to a write: a missing repository is one the
    /// registry will not create on push.
    pub(super) fn push_error(
        &self,
        call: &Call,
        repo: &str,
        what: &str,
        response: Response,
    ) -> TransportError {
        match self.status_error(call, what, response) {
            TransportError::NotFound { .. } => TransportError::Refused {
                location: call.location.to_string(),
                reason: format!(
                    "the registry has no repository `{repo}` for the {what} and does not create one on push: create it first (a project in Harbor, a repository in ECR or Quay), or write elsewhere"
                ),
            },
            other => other,
        }
    }

    /// A request that got no answer: retried when the failure looks transient.
    pub(super) fn request_failure(&self, e: reqwest::Error) -> Attempt {
        let failure = classify(&e);
        let error = TransportError::Connect {
            registry: self.registry.clone(),
            message: error_chain(&e),
            tls: failure.tls,
        };
        if failure.transient {
            Attempt::Retry { error, after: None }
        } else {
            Attempt::Fail(error)
        }
    }

    /// Waits out a `Retry-After` the registry gave any job of the session.
    fn wait_for_hold(&self, call: &Call) -> Result<(), Attempt> {
        let until = *self.hold.locked();
        if let Some(wait) = until.and_then(|u| u.checked_duration_since(std::time::Instant::now()))
        {
            call.control
                .cancel
                .sleep(wait.min(self.retry.max_wait))
                .map_err(|_| Attempt::Fail(TransportError::Cancelled))?;
        }
        Ok(())
    }

    /// Turns a transient status into a retry, after what `Retry-After` asks; a 429's wait
    /// holds every request to the registry, of every job.
    pub(super) fn check_transient(
        &self,
        call: &Call,
        what: &str,
        response: Response,
    ) -> Result<Response, Attempt> {
        let status = response.status();
        if is_transient_status(status) {
            let after = retry_after(response.headers());
            if let Some(wait) = after.filter(|_| status.as_u16() == 429) {
                let until = std::time::Instant::now() + wait.min(self.retry.max_wait);
                let mut hold = self.hold.locked();
                *hold = Some(hold.map_or(until, |h| h.max(until)));
            }
            return Err(Attempt::Retry {
                error: self.status_error(call, what, response),
                after,
            });
        }
        Ok(response)
    }
}

/// Whether a registry answers HTTPS (any HTTP status will do). Only a refused connection
/// or a peer that answers the TLS handshake with something that is not TLS means it does
/// not: on a timeout or any other failure HTTPS is kept, and the real request reports it.
fn speaks_https(
    http: &reqwest::blocking::Client,
    base: &Url,
    control: &Control,
) -> Result<bool, TransportError> {
    let probe = http
        .get(base.join("v2/").expect("a valid path"))
        .timeout(Duration::from_secs(10));
    match control.cancel.run(move || probe.send()) {
        Ok(Ok(_)) => Ok(true),
        Ok(Err(e)) => {
            let failure = classify(&e);
            Ok(!(failure.refused || failure.not_tls))
        }
        Err(Interrupted::Cancelled) => Err(TransportError::Cancelled),
        Err(Interrupted::Panicked(message)) => Err(TransportError::Internal { message }),
        // Not answering in time is no proof it does not speak HTTPS.
        Err(Interrupted::TimedOut(_)) => Ok(true),
    }
}
