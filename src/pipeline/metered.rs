//! A reader that counts what passes through it on a meter, and stops once its token is
//! cancelled (the job was, or another transfer of it failed).

use std::io::{self, Read};
use std::sync::Arc;

use crate::control::{Cancel, Meter};

/// Counts bytes on a meter; stops with an error once `cancel` is set.
pub(crate) struct Metered<R> {
    inner: R,
    meter: Arc<dyn Meter>,
    cancel: Option<Cancel>,
}

impl<R> Metered<R> {
    pub(crate) fn new(inner: R, meter: Arc<dyn Meter>) -> Self {
        Metered {
            inner,
            meter,
            cancel: None,
        }
    }

    pub(crate) fn cancellable(mut self, cancel: Cancel) -> Self {
        self.cancel = Some(cancel);
        self
    }
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(cancel) = &self.cancel {
            cancel.check().map_err(|_| {
                io::Error::other("stopped: the job was cancelled or another transfer failed")
            })?;
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
