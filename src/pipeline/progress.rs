//! Progress: one-line messages as a conversion goes, and byte meters for the transfers
//! (layer reads, uploads), which a terminal front end shows as bars.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Receives progress as a conversion goes.
pub trait Progress {
    /// A step begins or ends (one line).
    fn message(&mut self, line: &str);

    /// A stage that moves `total` bytes in all begins (reading the layers, writing the
    /// image); the meters that follow count towards it.
    fn stage(&mut self, label: &str, total: u64) {
        let _ = (label, total);
    }

    /// A transfer of `total` bytes begins (one layer or blob); its bytes go to the meter.
    fn meter(&mut self, label: &str, total: u64) -> Arc<dyn Meter> {
        let _ = (label, total);
        Arc::new(NoMeter)
    }
}

/// Counts the bytes of one transfer; shared with the thread that moves them.
pub trait Meter: Send + Sync {
    /// `bytes` more were moved.
    fn add(&self, bytes: u64);
    /// The transfer ended (done or abandoned).
    fn finish(&self);
}

/// A meter that counts nothing.
pub struct NoMeter;

impl Meter for NoMeter {
    fn add(&self, _bytes: u64) {}
    fn finish(&self) {}
}

/// Progress that goes nowhere.
pub struct Silent;

impl Progress for Silent {
    fn message(&mut self, _line: &str) {}
}

/// A reader that reports what passes through it to a meter, and stops with an error once
/// `cancel` is set (another transfer failed, so this one is not needed).
pub(crate) struct Metered<R> {
    inner: R,
    meter: Arc<dyn Meter>,
    cancel: Option<Arc<AtomicBool>>,
}

impl<R> Metered<R> {
    pub(crate) fn new(inner: R, meter: Arc<dyn Meter>) -> Self {
        Metered {
            inner,
            meter,
            cancel: None,
        }
    }

    pub(crate) fn cancellable(mut self, cancel: Arc<AtomicBool>) -> Self {
        self.cancel = Some(cancel);
        self
    }
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
        {
            return Err(io::Error::other("stopped: another transfer failed"));
        }
        let n = self.inner.read(buf)?;
        self.meter.add(n as u64);
        Ok(n)
    }
}

impl<R> Drop for Metered<R> {
    fn drop(&mut self) {
        self.meter.finish();
    }
}
