//! Events: what a job tells its front end as it goes. The CLI prints them (a line each, or
//! bars on a terminal); a server can log them per job or count them.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::model::{human_bytes, Digest, ImageLocation};

/// One step of a job, or something that happened on the way.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// The source's manifest (or index) is being fetched.
    Resolving {
        /// The source.
        location: &'a ImageLocation,
    },
    /// One platform of an index is being worked on.
    Platform {
        /// `os/arch[/variant]`.
        platform: &'a str,
        /// `true` for a conversion, `false` for an analysis.
        converting: bool,
    },
    /// A layer is being read.
    ReadingLayer {
        /// Its position, from 0.
        index: usize,
        /// How many layers the image has.
        count: usize,
        /// Its digest.
        digest: &'a Digest,
        /// Its compressed size.
        size: u64,
    },
    /// A layer's scan is taken from the layer cache: it is not read.
    LayerFromCache {
        /// Its position, from 0.
        index: usize,
        /// How many layers the image has.
        count: usize,
        /// Its digest.
        digest: &'a Digest,
    },
    /// The new layer is being written.
    WritingLayer {
        /// Its entries.
        entries: usize,
    },
    /// A layer with owners above 65535 is being rewritten (`--remap-ids`).
    RewritingLayer {
        /// Its position, from 0.
        index: usize,
        /// Its digest.
        digest: &'a Digest,
        /// How many of its entries have such owners.
        out_of_range: u64,
    },
    /// An image's blobs and manifest are being written.
    WritingImage {
        /// Where to.
        destination: &'a ImageLocation,
    },
    /// A dry run got to where the image would be written, and writes nothing.
    WouldWrite {
        /// Where it would go.
        destination: &'a ImageLocation,
    },
    /// `verify` starts the image's process.
    Running {
        /// As whom (`image user`, `arbitrary uid`).
        as_: &'a str,
        /// The uid.
        uid: u32,
        /// The gid.
        gid: u32,
    },
    /// An index is being written.
    WritingIndex {
        /// How many platforms it lists.
        platforms: usize,
        /// Where to.
        destination: &'a ImageLocation,
    },
    /// A registry request failed in a way that may pass; it is tried again.
    Retry {
        /// What failed.
        error: &'a dyn std::error::Error,
        /// The wait before the next attempt.
        wait: Duration,
        /// The attempt that comes next, from 2.
        attempt: u32,
        /// How many attempts there are in all.
        attempts: u32,
    },
    /// A download was cut short; it resumes from where it stopped.
    Resume {
        /// What is being downloaded (`blob sha256:...`).
        what: &'a str,
        /// Why it stopped.
        error: &'a str,
        /// Bytes received.
        received: u64,
        /// Bytes expected.
        expected: u64,
        /// The wait before resuming.
        wait: Duration,
    },
    /// A registry does not speak HTTPS and was allowed not to (`--tls-verify=false`).
    PlainHttp {
        /// The registry.
        registry: &'a str,
    },
    /// A registry refused a single-request upload; uploads to it go in chunks now.
    ChunkedUploads {
        /// The registry.
        registry: &'a str,
        /// The size of the refused upload.
        size: u64,
    },
}

impl fmt::Display for Event<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Event::Resolving { location } => write!(f, "resolving {location}"),
            Event::Platform {
                platform,
                converting,
            } => write!(
                f,
                "{} {platform}",
                if converting { "converting" } else { "analyzing" }
            ),
            Event::LayerFromCache {
                index,
                count,
                digest,
            } => write!(
                f,
                "layer {}/{count} {} from the layer cache",
                index + 1,
                digest.short()
            ),
            Event::ReadingLayer {
                index,
                count,
                digest,
                size,
            } => write!(
                f,
                "reading layer {}/{count} {} ({})",
                index + 1,
                digest.short(),
                human_bytes(size)
            ),
            Event::WritingLayer { entries } => {
                write!(f, "building the new layer ({entries} entries)")
            }
            Event::RewritingLayer {
                index,
                digest,
                out_of_range,
            } => write!(
                f,
                "rewriting layer {} {} ({out_of_range} entries owned by ids above 65535)",
                index + 1,
                digest.short()
            ),
            Event::WritingImage { destination } => {
                write!(f, "writing the image to {destination}")
            }
            Event::WouldWrite { destination } => {
                write!(f, "would write the image to {destination} (--dry-run: nothing is written)")
            }
            Event::Running { as_, uid, gid } => {
                write!(f, "running as the {as_} ({uid}:{gid}) under a restrictive runtime")
            }
            Event::WritingIndex {
                platforms,
                destination,
            } => write!(
                f,
                "writing the index of {platforms} platforms to {destination}"
            ),
            Event::Retry {
                error,
                wait,
                attempt,
                attempts,
            } => write!(
                f,
                "{error}; trying again in {:.1} s (attempt {attempt} of {attempts})",
                wait.as_secs_f64()
            ),
            Event::Resume {
                what,
                error,
                received,
                expected,
                wait,
            } => write!(
                f,
                "{what}: {error} after {received} of {expected} bytes; resuming in {:.1} s",
                wait.as_secs_f64()
            ),
            Event::PlainHttp { registry } => write!(
                f,
                "{registry} does not answer HTTPS: using plain HTTP (--tls-verify=false)"
            ),
            Event::ChunkedUploads { registry, size } => write!(
                f,
                "{registry}: the registry refused a single upload of {size} bytes; uploading in chunks"
            ),
        }
    }
}

/// Receives a job's events. Shared by the threads of the job, so every method takes
/// `&self`.
pub trait Events: Send + Sync {
    /// Something happened.
    fn event(&self, event: &Event<'_>);

    /// A stage that moves `total` bytes in all begins (reading the layers); the meters
    /// that follow count towards it.
    fn stage(&self, label: &str, total: u64) {
        let _ = (label, total);
    }

    /// A transfer of `total` bytes begins (one layer or blob); its bytes go to the meter.
    fn meter(&self, label: &str, total: u64) -> Arc<dyn Meter> {
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

/// Events that go nowhere.
pub struct Silent;

impl Events for Silent {
    fn event(&self, _event: &Event<'_>) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_as_one_line_each() {
        let digest = Digest::sha256_of(b"layer");
        let location = ImageLocation::parse("oci:/x:v1").unwrap();
        let error = std::io::Error::other("HTTP 503");
        let lines: Vec<String> = [
            Event::Resolving {
                location: &location,
            },
            Event::ReadingLayer {
                index: 0,
                count: 2,
                digest: &digest,
                size: 1536,
            },
            Event::Retry {
                error: &error,
                wait: Duration::from_millis(1500),
                attempt: 2,
                attempts: 5,
            },
            Event::Platform {
                platform: "linux/arm64",
                converting: true,
            },
        ]
        .iter()
        .map(|e| e.to_string())
        .collect();
        assert_eq!(
            lines,
            [
                "resolving oci:/x:v1".to_string(),
                format!("reading layer 1/2 {} (1.5 KiB)", digest.short()),
                "HTTP 503; trying again in 1.5 s (attempt 2 of 5)".to_string(),
                "converting linux/arm64".to_string(),
            ]
        );
    }
}
