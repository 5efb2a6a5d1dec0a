//! Content digests (`sha256:<hex>`) and readers that verify them while streaming.
//!
//! Invariant: a [`VerifyingReader`] never reports a clean end of stream for content whose
//! size or digest differs from the expected descriptor; the mismatch surfaces as an
//! [`std::io::Error`] that wraps a [`DigestMismatch`].

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use sha2::{Digest as _, Sha256, Sha512};

/// A content digest as the OCI image spec writes it: `algorithm:encoded`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

/// The digest algorithms unroot can verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Algorithm {
    /// SHA-256, the algorithm every registry supports.
    Sha256,
    /// SHA-512, allowed by the OCI image spec.
    Sha512,
}

impl Algorithm {
    fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid digest `{input}`: {reason}")]
pub struct DigestParseError {
    /// The text that was given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Digest {
    /// Parses `sha256:<64 lowercase hex>` (or sha512).
    pub fn parse(input: &str) -> Result<Digest, DigestParseError> {
        let err = |reason| DigestParseError {
            input: input.to_string(),
            reason,
        };
        let (alg, hex) = input
            .split_once(':')
            .ok_or_else(|| err("expected `algorithm:hex`"))?;
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => {
                return Err(err(
                    "unsupported algorithm (sha256 and sha512 are supported)",
                ))
            }
        };
        if hex.len() != algorithm.hex_len() {
            return Err(err("wrong length for the algorithm"));
        }
        if !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(err("the encoded part must be lowercase hexadecimal"));
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_string(),
        })
    }

    /// The SHA-256 digest of `data`.
    pub fn sha256_of(data: &[u8]) -> Digest {
        let mut h = Hasher::new(Algorithm::Sha256);
        h.update(data);
        h.finish()
    }

    /// The algorithm part.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The encoded (hex) part.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex characters, as short ids are shown by docker.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = DigestParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An incremental digest computation.
#[derive(Clone)]
pub enum Hasher {
    /// SHA-256 state.
    Sha256(Sha256),
    /// SHA-512 state.
    Sha512(Sha512),
}

impl Hasher {
    /// A fresh hasher for `algorithm`.
    pub fn new(algorithm: Algorithm) -> Hasher {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        match self {
            Hasher::Sha256(h) => Digest {
                algorithm: Algorithm::Sha256,
                hex: hex::encode(h.finalize()),
            },
            Hasher::Sha512(h) => Digest {
                algorithm: Algorithm::Sha512,
                hex: hex::encode(h.finalize()),
            },
        }
    }
}

/// Content whose size or digest is not what its descriptor promised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestMismatch {
    /// The digest of the bytes differs.
    #[error("content of {expected} has digest {actual}")]
    Digest {
        /// What the descriptor says.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// The number of bytes differs.
    #[error("content of {expected} is {actual} bytes, its descriptor says {size}")]
    Size {
        /// The digest the descriptor names.
        expected: Digest,
        /// The size the descriptor says.
        size: u64,
        /// The bytes that arrived (or arrived so far, when there were too many).
        actual: u64,
    },
}

impl DigestMismatch {
    /// Finds a mismatch wrapped in an I/O error, as [`VerifyingReader`] reports it.
    pub fn from_io(err: &io::Error) -> Option<&DigestMismatch> {
        err.get_ref()?.downcast_ref::<DigestMismatch>()
    }
}

/// A reader that hashes and counts what passes through and, at the end of the stream,
/// checks it against the expected digest and (when known) size.
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Option<Hasher>,
    expected: Digest,
    size: Option<u64>,
    seen: u64,
}

impl<R: Read> VerifyingReader<R> {
    /// Wraps `inner`; `size` is checked when given.
    pub fn new(inner: R, expected: Digest, size: Option<u64>) -> Self {
        VerifyingReader {
            inner,
            hasher: Some(Hasher::new(expected.algorithm())),
            expected,
            size,
            seen: 0,
        }
    }

    /// Reads and discards everything left, which runs the final check.
    pub fn finish(mut self) -> io::Result<u64> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(self.seen)
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.seen += n as u64;
            if let Some(size) = self.size {
                if self.seen > size {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        DigestMismatch::Size {
                            expected: self.expected.clone(),
                            size,
                            actual: self.seen,
                        },
                    ));
                }
            }
            if let Some(h) = self.hasher.as_mut() {
                h.update(&buf[..n]);
            }
            // With the size known, the check runs on the last byte: a reader that stops at
            // the size (an HTTP body of that length) never asks for the end of the stream.
            if self.size == Some(self.seen) {
                self.check_digest()?;
            }
            return Ok(n);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        if self.hasher.is_some() {
            if let Some(size) = self.size {
                if self.seen != size {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        DigestMismatch::Size {
                            expected: self.expected.clone(),
                            size,
                            actual: self.seen,
                        },
                    ));
                }
            }
            self.check_digest()?;
        }
        Ok(0)
    }
}

impl<R> VerifyingReader<R> {
    /// Compares the digest of what was read with the expected one (once).
    fn check_digest(&mut self) -> io::Result<()> {
        let Some(h) = self.hasher.take() else {
            return Ok(());
        };
        let actual = h.finish();
        if actual != self.expected {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                DigestMismatch::Digest {
                    expected: self.expected.clone(),
                    actual,
                },
            ));
        }
        Ok(())
    }
}

/// A writer that hashes and counts what passes through to `inner`.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`, hashing with SHA-256.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Hasher::new(Algorithm::Sha256),
            written: 0,
        }
    }

    /// The inner writer, the digest and the byte count.
    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, self.hasher.finish(), self.written)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes and counts what passes through, without judging it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
    read: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`, hashing with SHA-256.
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Hasher::new(Algorithm::Sha256),
            read: 0,
        }
    }

    /// The digest and byte count of what was read.
    pub fn finish(self) -> (Digest, u64) {
        (self.hasher.finish(), self.read)
    }

    /// The wrapped reader.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_prints() {
        let d = Digest::parse(EMPTY).unwrap();
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(d, Digest::sha256_of(b""));
        assert_eq!(d.short(), "e3b0c44298fc");
    }

    #[test]
    fn rejects_bad_digests() {
        let upper = format!("sha256:{}", EMPTY["sha256:".len()..].to_uppercase());
        for (bad, why) in [
            ("sha256", "expected `algorithm:hex`"),
            (
                "md5:abcd",
                "unsupported algorithm (sha256 and sha512 are supported)",
            ),
            ("sha256:abc", "wrong length for the algorithm"),
            (
                upper.as_str(),
                "the encoded part must be lowercase hexadecimal",
            ),
        ] {
            let e = Digest::parse(bad).unwrap_err();
            assert_eq!((e.input.as_str(), e.reason), (bad, why));
        }
    }

    #[test]
    fn verifying_reader_accepts_good_and_rejects_bad() {
        let d = Digest::sha256_of(b"hello");
        let ok = VerifyingReader::new(&b"hello"[..], d.clone(), Some(5));
        assert_eq!(ok.finish().unwrap(), 5);

        let err = VerifyingReader::new(&b"hellO"[..], d.clone(), Some(5))
            .finish()
            .unwrap_err();
        assert!(matches!(
            DigestMismatch::from_io(&err),
            Some(DigestMismatch::Digest { .. })
        ));

        let err = VerifyingReader::new(&b"hell"[..], d.clone(), Some(5))
            .finish()
            .unwrap_err();
        assert!(matches!(
            DigestMismatch::from_io(&err),
            Some(DigestMismatch::Size { actual: 4, .. })
        ));

        // With the size known, the read that brings the last byte reports a bad digest:
        // a consumer that stops at the size (an HTTP body) still sees it.
        let mut exact = VerifyingReader::new(&b"hellO"[..], d.clone(), Some(5));
        let mut buf = [0u8; 5];
        let err = exact.read(&mut buf).unwrap_err();
        assert!(matches!(
            DigestMismatch::from_io(&err),
            Some(DigestMismatch::Digest { .. })
        ));
        let mut exact = VerifyingReader::new(&b"hello"[..], d.clone(), Some(5));
        assert_eq!(exact.read(&mut buf).unwrap(), 5);

        let err = VerifyingReader::new(&b"hello!"[..], d, Some(5))
            .finish()
            .unwrap_err();
        assert!(matches!(
            DigestMismatch::from_io(&err),
            Some(DigestMismatch::Size { actual: 6, .. })
        ));
    }
}
