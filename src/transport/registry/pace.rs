//! How slow a registry may be before unroot gives up on a request: a read that gets
//! nothing for a while, a transfer slower than a floor over a window (as curl's
//! `--speed-limit` and `--speed-time`), and a deadline for small answers (manifests,
//! tokens) as a whole. A slow but working link survives the defaults; a peer that went
//! silent, or answers one byte a second, does not.

use std::io::{self, Read};
use std::time::{Duration, Instant};

/// The limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pace {
    /// The longest wait for an answer's headers, or for the next bytes of its body.
    pub read_timeout: Duration,
    /// The slowest transfer kept going, in bytes per second...
    pub speed_limit: u64,
    /// ...averaged over this window.
    pub speed_time: Duration,
    /// The longest a request without a body to send (a manifest, a token, a check) may
    /// take, headers and body together.
    pub deadline: Duration,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            read_timeout: Duration::from_secs(60),
            speed_limit: 1024,
            speed_time: Duration::from_secs(30),
            deadline: Duration::from_secs(120),
        }
    }
}

/// A transfer slower than the pace allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the transfer was slower than {limit} B/s for {seconds} s (`--speed-limit`, `--speed-time`)"
)]
pub struct TooSlow {
    /// The floor, in bytes per second.
    pub limit: u64,
    /// The window, in seconds.
    pub seconds: u64,
}

/// A body read under the speed floor.
pub(super) struct Paced<R> {
    inner: R,
    limit: u64,
    window: Duration,
    started: Instant,
    bytes: u64,
}

impl<R> Paced<R> {
    pub(super) fn new(inner: R, pace: &Pace) -> Paced<R> {
        Paced {
            inner,
            limit: pace.speed_limit,
            window: pace.speed_time,
            started: Instant::now(),
            bytes: 0,
        }
    }
}

impl<R: Read> Read for Paced<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 || self.limit == 0 {
            return Ok(n);
        }
        self.bytes += n as u64;
        let elapsed = self.started.elapsed();
        if elapsed >= self.window {
            if (self.bytes as f64) < self.limit as f64 * elapsed.as_secs_f64() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    TooSlow {
                        limit: self.limit,
                        seconds: self.window.as_secs(),
                    },
                ));
            }
            self.started = Instant::now();
            self.bytes = 0;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One byte per read, each read taking `delay`.
    struct Trickle {
        left: usize,
        delay: Duration,
    }

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.left == 0 || buf.is_empty() {
                return Ok(0);
            }
            std::thread::sleep(self.delay);
            self.left -= 1;
            buf[0] = b'x';
            Ok(1)
        }
    }

    #[test]
    fn a_trickle_under_the_floor_fails_and_a_fast_body_passes() {
        let pace = Pace {
            speed_limit: 100,
            speed_time: Duration::from_millis(200),
            ..Pace::default()
        };
        let slow = Trickle {
            left: 1000,
            delay: Duration::from_millis(20),
        };
        let err = io::copy(&mut Paced::new(slow, &pace), &mut io::sink()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(err.to_string().contains("slower than 100 B/s"), "{err}");
        let fast = io::repeat(1).take(1 << 20);
        assert_eq!(
            io::copy(&mut Paced::new(fast, &pace), &mut io::sink()).unwrap(),
            1 << 20
        );
    }
}
