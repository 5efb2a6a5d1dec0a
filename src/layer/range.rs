//! A byte range of a file, read without a shared cursor.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

/// Reads a byte range of a file without moving a shared cursor (`pread`), so several
/// readers can share one open file.
pub struct RangeReader<F> {
    file: F,
    pos: u64,
    end: u64,
}

impl<F: std::borrow::Borrow<File>> RangeReader<F> {
    /// Reads `len` bytes of `file` from `offset`.
    pub fn new(file: F, offset: u64, len: u64) -> RangeReader<F> {
        RangeReader {
            file,
            pos: offset,
            end: offset + len,
        }
    }
}

impl<F: std::borrow::Borrow<File>> Read for RangeReader<F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min((self.end - self.pos) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.borrow().read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file ended before the range did",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}
