//! gzip compression on every core: the stream is cut into blocks of a fixed size, each
//! compressed as a gzip member of its own on a worker thread, and the members written in
//! order. A gzip reader reads the members as one stream.
//!
//! Invariant: the output depends only on the input bytes, the block size and the level,
//! never on the number of threads or their timing, so the same layer always has the same
//! digest.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver};

use flate2::{Compression, GzBuilder};

/// The size of the blocks compressed independently: large enough that restarting the
/// dictionary costs little (the benchmark's new layer is 0.6% larger than one member),
/// small enough to spread a few MiB over the cores and to keep few bytes in flight.
pub const BLOCK: usize = 256 * 1024;

/// A writer that gzip-compresses what it is given into `inner`, a block per thread.
pub struct ParallelGzip<W: Write> {
    inner: W,
    level: u32,
    block: Vec<u8>,
    pending: VecDeque<Receiver<io::Result<Vec<u8>>>>,
    workers: usize,
}

impl<W: Write> ParallelGzip<W> {
    /// Compresses at `level` into `inner`.
    pub fn new(inner: W, level: u32) -> ParallelGzip<W> {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(8));
        ParallelGzip {
            inner,
            level,
            block: Vec::with_capacity(BLOCK),
            pending: VecDeque::new(),
            workers,
        }
    }

    /// Hands the current block to a worker, writing finished members first when enough
    /// are in flight.
    fn submit(&mut self) -> io::Result<()> {
        while self.pending.len() >= self.workers {
            self.write_oldest()?;
        }
        let block = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK));
        let level = self.level;
        let (tx, rx) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("unroot-gzip".into())
            .spawn(move || {
                let _ = tx.send(member(&block, level));
            })?;
        self.pending.push_back(rx);
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        if let Some(rx) = self.pending.pop_front() {
            let compressed = rx
                .recv()
                .map_err(|_| io::Error::other("a compression thread stopped"))??;
            self.inner.write_all(&compressed)?;
        }
        Ok(())
    }

    /// Compresses what is left and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        if !self.block.is_empty() || self.pending.is_empty() {
            self.submit()?;
        }
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        Ok(self.inner)
    }
}

/// One gzip member of `data`, with a fixed header (no name, no time, OS unknown).
fn member(data: &[u8], level: u32) -> io::Result<Vec<u8>> {
    let mut gz = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::with_capacity(data.len() / 2), Compression::new(level));
    gz.write_all(data)?;
    gz.finish()
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(BLOCK - self.block.len());
        self.block.extend_from_slice(&buf[..n]);
        if self.block.len() == BLOCK {
            self.submit()?;
        }
        Ok(n)
    }

    /// Members are written as they are done; a flush does not cut a block short (that
    /// would make the output depend on when it was asked).
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn members_read_back_as_one_stream_whatever_the_thread_count() {
        let data: Vec<u8> = (0..(3 * BLOCK + 12345) as u32)
            .map(|i| (i % 253) as u8 ^ (i / 7919) as u8)
            .collect();
        let compress = |workers: usize| {
            let mut gz = ParallelGzip::new(Vec::new(), 3);
            gz.workers = workers;
            for piece in data.chunks(100_000) {
                gz.write_all(piece).unwrap();
            }
            gz.finish().unwrap()
        };
        let one = compress(1);
        assert_eq!(
            compress(4),
            one,
            "the output does not depend on the threads"
        );
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(one.as_slice())
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
        // Empty input is one empty member, a valid gzip stream.
        let empty = ParallelGzip::new(Vec::new(), 3).finish().unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(empty.as_slice())
            .read_to_end(&mut back)
            .unwrap();
        assert!(back.is_empty());
    }
}
