//! Cancellation: a token that every wait of a job honours (retry sleeps, `Retry-After`,
//! requests and reads that block, the layer workers), so that a job stops within a
//! fraction of a second of being cancelled.
//!
//! Invariant: once cancelled, a token (and every child of it) stays cancelled.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// How often a wait looks at the token.
const POLL: Duration = Duration::from_millis(50);

/// A cancellation token. Clones share the flag; a [`child`](Cancel::child) is cancelled
/// with its parent, but cancelling the child leaves the parent running.
#[derive(Clone, Debug, Default)]
pub struct Cancel {
    flag: Arc<AtomicBool>,
    parent: Option<Arc<Cancel>>,
}

/// The job was cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cancelled")]
pub struct Cancelled;

/// Why work run through [`Cancel::run`] did not finish.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Interrupted {
    /// The token was cancelled first.
    #[error("cancelled")]
    Cancelled,
    /// The work panicked; the message is the panic's.
    #[error("an internal error: {0}")]
    Panicked(String),
    /// The work did not finish within its time.
    #[error("not done within {} s", .0.as_secs())]
    TimedOut(Duration),
}

impl From<Cancelled> for Interrupted {
    fn from(_: Cancelled) -> Interrupted {
        Interrupted::Cancelled
    }
}

impl Cancel {
    /// A token that is not cancelled.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// A token that is cancelled with this one, or on its own.
    pub fn child(&self) -> Cancel {
        Cancel {
            flag: Arc::new(AtomicBool::new(false)),
            parent: Some(Arc::new(self.clone())),
        }
    }

    /// Cancels this token and its children.
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }

    /// Whether this token (or a parent) was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst) || self.parent.as_ref().is_some_and(|p| p.is_cancelled())
    }

    /// `Err(Cancelled)` once cancelled.
    pub fn check(&self) -> Result<(), Cancelled> {
        if self.is_cancelled() {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }

    /// Sleeps for `duration`, or less when cancelled meanwhile.
    pub fn sleep(&self, duration: Duration) -> Result<(), Cancelled> {
        let end = Instant::now() + duration;
        loop {
            self.check()?;
            let now = Instant::now();
            if now >= end {
                return Ok(());
            }
            std::thread::sleep(POLL.min(end - now));
        }
    }

    /// Runs `work` on a thread of its own and waits for it, giving up as soon as the token
    /// is cancelled: for calls that block and cannot be interrupted otherwise (a request
    /// to a peer that went silent). Abandoned work ends on its own (its own timeouts) and
    /// its result is dropped. A panic in `work` becomes [`Interrupted::Panicked`].
    pub fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Interrupted> {
        self.run_within(None, work)
    }

    /// As [`Cancel::run`], giving up too once `limit` has passed
    /// ([`Interrupted::TimedOut`]).
    pub fn run_for<T: Send + 'static>(
        &self,
        limit: Duration,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Interrupted> {
        self.run_within(Some(limit), work)
    }

    fn run_within<T: Send + 'static>(
        &self,
        limit: Option<Duration>,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Interrupted> {
        self.check()?;
        let end = limit.map(|l| Instant::now() + l);
        let (tx, rx) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("unroot-io".into())
            .spawn(move || {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
                let _ = tx.send(result);
            })
            .map_err(|e| Interrupted::Panicked(format!("cannot start a thread: {e}")))?;
        loop {
            match rx.recv_timeout(POLL) {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(panic)) => return Err(Interrupted::Panicked(panic_message(&*panic))),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.check()?;
                    if let (Some(end), Some(limit)) = (end, limit) {
                        if Instant::now() >= end {
                            return Err(Interrupted::TimedOut(limit));
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(Interrupted::Panicked("a worker thread vanished".into()))
                }
            }
        }
    }
}

/// A reader that stops with an error once its token is cancelled.
pub struct Interruptible<R> {
    inner: R,
    cancel: Cancel,
}

impl<R> Interruptible<R> {
    /// Reads `inner` until `cancel` is cancelled.
    pub fn new(inner: R, cancel: &Cancel) -> Interruptible<R> {
        Interruptible {
            inner,
            cancel: cancel.clone(),
        }
    }
}

impl<R: std::io::Read> std::io::Read for Interruptible<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.cancel
            .check()
            .map_err(|c| std::io::Error::new(std::io::ErrorKind::Interrupted, c))?;
        self.inner.read(buf)
    }
}

/// The text of a panic's payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_follow_their_parent_only() {
        let parent = Cancel::new();
        let child = parent.child();
        child.cancel();
        assert!(child.is_cancelled());
        assert!(!parent.is_cancelled());
        let other = parent.child();
        parent.cancel();
        assert!(other.is_cancelled());
        assert_eq!(other.check(), Err(Cancelled));
    }

    #[test]
    fn a_sleep_ends_when_cancelled() {
        let token = Cancel::new();
        let t = token.clone();
        let sleeper = std::thread::spawn(move || t.sleep(Duration::from_secs(3600)));
        token.cancel();
        assert_eq!(sleeper.join().unwrap(), Err(Cancelled));
        assert_eq!(Cancel::new().sleep(Duration::from_millis(1)), Ok(()));
    }

    #[test]
    fn run_gives_up_on_blocked_work_and_reports_panics() {
        let token = Cancel::new();
        assert_eq!(token.run(|| 7), Ok(7));
        let (release, blocked) = mpsc::channel::<()>();
        let t = token.clone();
        let canceller = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            t.cancel();
        });
        // The work blocks until the channel's sender is dropped, after the run gave up.
        assert_eq!(
            token.run(move || blocked.recv().is_err()),
            Err(Interrupted::Cancelled)
        );
        drop(release);
        canceller.join().unwrap();
        let slow = Cancel::new().run_for(Duration::from_millis(100), || {
            std::thread::sleep(Duration::from_secs(5))
        });
        assert_eq!(slow, Err(Interrupted::TimedOut(Duration::from_millis(100))));
        let panicked = Cancel::new().run(|| -> u8 { panic!("boom") });
        assert_eq!(panicked, Err(Interrupted::Panicked("boom".into())));
    }
}
