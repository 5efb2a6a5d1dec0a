//! What a front end steers a job with: the [`Events`] it watches (steps, retries, byte
//! meters) and the [`Cancel`] token that stops it; with them, what every folder shares:
//! the one policy for a poisoned lock ([`Locked`]) and the one local-file error
//! ([`FileError`]). Every folder may use these; they use nothing of the crate but the
//! model.

mod cancel;
mod events;
mod file;
pub mod secrets;
mod sync;

pub use cancel::{panic_message, Cancel, Cancelled, Interrupted, Interruptible};
pub use events::{Event, Events, Meter, NoMeter, Silent};
pub use file::FileError;
pub use sync::Locked;

use std::sync::Arc;

/// A job's events and its cancellation token, handed down to every part of the work.
#[derive(Clone)]
pub struct Control {
    /// Where the job's events go.
    pub events: Arc<dyn Events>,
    /// The token that stops it.
    pub cancel: Cancel,
}

impl Control {
    /// Events to nowhere, never cancelled (tests, tools).
    pub fn silent() -> Control {
        Control {
            events: Arc::new(Silent),
            cancel: Cancel::new(),
        }
    }
}
