//! When a registry request is tried again, and how failures are classified: by HTTP
//! status, by the I/O error kinds and by the types of the errors the HTTP and TLS
//! libraries return, never by the words of their messages.

use std::cell::Cell;
use std::io;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::StatusCode;

use crate::control::{Control, Event};
use crate::transport::TransportError;

use super::header_str;

/// Retries of idempotent requests after timeouts, dropped connections, and HTTP 408, 429,
/// 500, 502, 503 and 504: exponential backoff from `first_delay`, or what the registry's
/// `Retry-After` asks, each wait at most `max_wait`. The attempts of one small request
/// (a manifest, a token, a blob check; not a blob's transfer) and the waits between them
/// share `budget`: a registry that accepts and never answers holds a run that long, not
/// `retries + 1` times the read timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// How many times a request is tried again (0: never).
    pub retries: u32,
    /// The wait before the first retry; it doubles for each next one.
    pub first_delay: Duration,
    /// The longest wait; a registry asking for more is given up on at once.
    pub max_wait: Duration,
    /// How long all the attempts of one small request may take together (`None`: no
    /// limit but the attempts').
    pub budget: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 4,
            first_delay: Duration::from_secs(1),
            max_wait: Duration::from_secs(60),
            budget: Some(Duration::from_secs(120)),
        }
    }
}

thread_local! {
    /// When the budget of the small request being tried on this thread ends.
    static BUDGET_ENDS: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// How long the small request being tried on this thread has left of its budget, if it
/// has one: an attempt waits for its answer no longer than that.
pub(super) fn budget_left() -> Option<Duration> {
    BUDGET_ENDS
        .with(Cell::get)
        .map(|end| end.saturating_duration_since(Instant::now()))
}

/// The budget of a small request, in force on this thread until dropped (a request
/// nested in another keeps the earlier end when it is sooner).
struct BudgetScope(Option<Instant>);

impl BudgetScope {
    fn enter(end: Option<Instant>) -> BudgetScope {
        let before = BUDGET_ENDS.with(Cell::get);
        let end = match (before, end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        BUDGET_ENDS.with(|c| c.set(end));
        BudgetScope(before)
    }
}

impl Drop for BudgetScope {
    fn drop(&mut self) {
        BUDGET_ENDS.with(|c| c.set(self.0));
    }
}

/// Whether a request's attempts share the policy's budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Size {
    /// A small request: its attempts share the budget.
    Small,
    /// A blob's transfer: each attempt is held to the pace instead.
    Transfer,
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

    /// Runs `op` until it succeeds, fails for good, or the policy is spent; the waits
    /// between attempts end early when the job is cancelled.
    pub(super) fn run<T>(
        &self,
        control: &Control,
        size: Size,
        mut op: impl FnMut() -> Result<T, Attempt>,
    ) -> Result<T, TransportError> {
        let started = Instant::now();
        let ends = self
            .budget
            .filter(|_| size == Size::Small)
            .map(|b| started + b);
        let _scope = BudgetScope::enter(ends);
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let (error, after) = match op() {
                Ok(v) => return Ok(v),
                Err(Attempt::Fail(e)) => return Err(e),
                Err(Attempt::Retry { error, after }) => (error, after),
            };
            let within_budget = |wait: Duration| ends.is_none_or(|end| Instant::now() + wait < end);
            let wait = match self.wait(attempts, after) {
                Some(wait) if attempts <= self.retries && within_budget(wait) => wait,
                // Retries are off: the error as it is.
                Some(_) if self.retries == 0 => return Err(error),
                Some(wait) => {
                    return Err(TransportError::GaveUp {
                        attempts,
                        seconds: started.elapsed().as_secs(),
                        asked_to_wait: None,
                        budget: (attempts <= self.retries && !within_budget(wait))
                            .then(|| self.budget.map(|b| b.as_secs()))
                            .flatten(),
                        last: Box::new(error),
                    })
                }
                None => {
                    return Err(TransportError::GaveUp {
                        attempts,
                        seconds: started.elapsed().as_secs(),
                        asked_to_wait: after.filter(|a| *a > self.max_wait).map(|a| a.as_secs()),
                        budget: None,
                        last: Box::new(error),
                    })
                }
            };
            control.events.event(&Event::Retry {
                error: &error,
                wait,
                attempt: attempts + 1,
                attempts: self.retries + 1,
            });
            control
                .cancel
                .sleep(wait)
                .map_err(|_| TransportError::Cancelled)?;
        }
    }
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

/// 408, 429 and the 5xx answers that mean "not now".
pub(super) fn is_transient_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

/// `Retry-After` in seconds or as an HTTP date.
pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
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

/// What a request that got no answer ran into, read from the error types in its chain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Failure {
    /// A timeout, a reset, or a connection closed mid-answer: another attempt may pass.
    pub transient: bool,
    /// The TLS layer failed (a certificate, or a handshake).
    pub tls: bool,
    /// The peer answered the TLS handshake with something that is not TLS (plain HTTP).
    pub not_tls: bool,
    /// Nothing listens there.
    pub refused: bool,
}

/// Classifies an error by walking its chain of sources. `io::Error` hides the error it
/// wraps from `source()` (it returns the inner error's source), and the TLS stream wraps
/// its errors in two of them, so each one's inner errors are looked at too.
pub(super) fn classify(error: &(dyn std::error::Error + 'static)) -> Failure {
    let mut failure = Failure::default();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = next {
        look_at(e, &mut failure);
        next = e.source();
    }
    if failure.tls {
        // A broken handshake is not fixed by trying again.
        failure.transient = false;
    }
    failure
}

/// Notes what one error of a chain says, with the errors nested inside an `io::Error`.
fn look_at(e: &(dyn std::error::Error + 'static), failure: &mut Failure) {
    if let Some(r) = e.downcast_ref::<reqwest::Error>() {
        failure.transient |= r.is_timeout();
    }
    if let Some(h) = e.downcast_ref::<hyper::Error>() {
        failure.transient |= h.is_incomplete_message() || h.is_timeout();
    }
    if let Some(t) = e.downcast_ref::<rustls::Error>() {
        failure.tls = true;
        failure.not_tls |= matches!(t, rustls::Error::InvalidMessage(_));
    }
    if let Some(io) = e.downcast_ref::<io::Error>() {
        match io.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::TimedOut => failure.transient = true,
            io::ErrorKind::ConnectionRefused => failure.refused = true,
            _ => {}
        }
        if let Some(inner) = io.get_ref() {
            look_at(inner, failure);
        }
    }
}

/// What really happened, without the HTTP library's generic wrappers: the messages of the
/// chain, each once.
pub(super) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        // The HTTP client's own layers only say which step failed; their sources say why.
        let wrapper = (s.downcast_ref::<reqwest::Error>().is_some()
            || s.downcast_ref::<hyper_util::client::legacy::Error>()
                .is_some())
            && s.source().is_some();
        let text = s.to_string();
        if !wrapper && !parts.last().is_some_and(|p| p.contains(&text)) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn failures_are_classified_by_type() {
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert!(classify(&reset).transient);
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let f = classify(&refused);
        assert!(f.refused && !f.transient);
        // A TLS error wrapped in two I/O errors, as the TLS stream returns it.
        let handshake = io::Error::other(io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        ));
        let f = classify(&handshake);
        assert!(f.tls && f.not_tls && !f.transient);
        let cert = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let f = classify(&cert);
        assert!(f.tls && !f.not_tls);
        // Words in a message mean nothing.
        let words = io::Error::other("tls handshake: connection reset by peer");
        assert_eq!(classify(&words), Failure::default());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy::default();
        assert_eq!(p.wait(1, None), Some(Duration::from_secs(1)));
        assert_eq!(p.wait(3, None), Some(Duration::from_secs(4)));
        assert_eq!(p.wait(30, None), Some(Duration::from_secs(60)));
        assert_eq!(
            p.wait(1, Some(Duration::from_secs(5))),
            Some(Duration::from_secs(5))
        );
        assert_eq!(p.wait(1, Some(Duration::from_secs(61))), None);
    }
}
