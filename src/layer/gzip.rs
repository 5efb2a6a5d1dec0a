//! gzip (RFC 1952) without its CRC-32: layers are read through their digest and diff_id,
//! which catch every damaged byte the CRC would, so the inflate thread only inflates.
//! Several members in a row (as parallel compressors write) are one stream.
//!
//! Invariant: a member's header is checked (magic, method, reserved flags) and its trailer's
//! size field must match what the member inflated to; anything after the last member that
//! is not another member is an error.

use std::io::{self, BufRead, Read};

use flate2::bufread::DeflateDecoder;

/// Inflates a gzip stream of one or more members.
pub struct GzipDecoder<R: BufRead> {
    state: State<R>,
}

enum State<R: BufRead> {
    /// Between members: the next bytes are a header, or the end.
    Header(R),
    /// Inside a member's deflate data; `out` counts what it inflated to.
    Body {
        inflate: DeflateDecoder<R>,
        out: u64,
    },
    /// The end was reached.
    Done,
    /// A read failed; the reader is gone.
    Failed,
}

impl<R: BufRead> GzipDecoder<R> {
    /// A decoder over `inner`, which must start with a gzip header.
    pub fn new(inner: R) -> GzipDecoder<R> {
        GzipDecoder {
            state: State::Header(inner),
        }
    }
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_string())
}

fn read_exact<R: BufRead>(r: &mut R, buf: &mut [u8], what: &str) -> io::Result<()> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the gzip stream ends inside a member's {what}"),
        ),
        _ => e,
    })
}

/// Skips a zero-terminated field (a file name or comment), however long, without keeping it.
fn skip_zero_terminated<R: BufRead>(r: &mut R) -> io::Result<()> {
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the gzip stream ends inside a member's header",
            ));
        }
        match buf.iter().position(|&b| b == 0) {
            Some(i) => {
                r.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                r.consume(n);
            }
        }
    }
}

/// Reads a member header; `Ok(false)` at the end of the stream.
fn read_header<R: BufRead>(r: &mut R) -> io::Result<bool> {
    let head = r.fill_buf()?;
    if head.is_empty() {
        return Ok(false);
    }
    if head[0] != 0x1f || head.get(1).is_some_and(|&b| b != 0x8b) {
        return Err(invalid(
            "data after the last gzip member is not another member",
        ));
    }
    let mut fixed = [0u8; 10];
    read_exact(r, &mut fixed, "header")?;
    if fixed[1] != 0x8b {
        return Err(invalid(
            "data after the last gzip member is not another member",
        ));
    }
    if fixed[2] != 8 {
        return Err(invalid(
            "a gzip member uses a compression method other than deflate",
        ));
    }
    let flags = fixed[3];
    if flags & 0xe0 != 0 {
        return Err(invalid("a gzip member header sets reserved flags"));
    }
    if flags & 0x04 != 0 {
        let mut len = [0u8; 2];
        read_exact(r, &mut len, "header")?;
        let mut extra = r.take(u64::from(u16::from_le_bytes(len)));
        let skipped = io::copy(&mut extra, &mut io::sink())?;
        if skipped < u64::from(u16::from_le_bytes(len)) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the gzip stream ends inside a member's header",
            ));
        }
    }
    if flags & 0x08 != 0 {
        skip_zero_terminated(r)?;
    }
    if flags & 0x10 != 0 {
        skip_zero_terminated(r)?;
    }
    if flags & 0x02 != 0 {
        let mut crc = [0u8; 2];
        read_exact(r, &mut crc, "header")?;
    }
    Ok(true)
}

impl<R: BufRead> Read for GzipDecoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match std::mem::replace(&mut self.state, State::Failed) {
                State::Done => {
                    self.state = State::Done;
                    return Ok(0);
                }
                State::Failed => return Err(invalid("the gzip stream failed before")),
                State::Header(mut r) => {
                    if read_header(&mut r)? {
                        self.state = State::Body {
                            inflate: DeflateDecoder::new(r),
                            out: 0,
                        };
                    } else {
                        self.state = State::Done;
                    }
                }
                State::Body { mut inflate, out } => {
                    let n = inflate.read(buf)?;
                    if n > 0 {
                        self.state = State::Body {
                            inflate,
                            out: out + n as u64,
                        };
                        return Ok(n);
                    }
                    // The member's deflate data ended: its trailer is CRC-32 and size.
                    let mut r = inflate.into_inner();
                    let mut trailer = [0u8; 8];
                    read_exact(&mut r, &mut trailer, "trailer")?;
                    let isize = u32::from_le_bytes(trailer[4..].try_into().expect("4 bytes"));
                    if u64::from(isize) != out & 0xffff_ffff {
                        return Err(invalid(
                            "a gzip member inflates to another size than its trailer says",
                        ));
                    }
                    self.state = State::Header(r);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn inflate(data: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        GzipDecoder::new(io::BufReader::with_capacity(7, data)).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn inflates_members_with_every_header_field() {
        let text: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let mut two = gzip(&text[..1000]);
        two.extend(gzip(&text[1000..]));
        assert_eq!(inflate(&two).unwrap(), text);
        // A member with every optional field: an extra field, a name, a comment and a
        // header CRC (built by hand: encoders rarely write them all).
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        raw.write_all(b"hello").unwrap();
        let raw = raw.finish().unwrap();
        let mut member = vec![0x1f, 0x8b, 8, 0x04 | 0x08 | 0x10 | 0x02, 0, 0, 0, 0, 0, 3];
        member.extend_from_slice(&[3, 0, 1, 2, 3]);
        member.extend_from_slice(b"layer.tar\0a comment\0");
        member.extend_from_slice(&[0xab, 0xcd]);
        member.extend_from_slice(&raw);
        member.extend_from_slice(&[0, 0, 0, 0]);
        member.extend_from_slice(&5u32.to_le_bytes());
        assert_eq!(inflate(&member).unwrap(), b"hello");
        assert_eq!(inflate(b"").unwrap(), b"");
    }

    #[test]
    fn refuses_what_is_not_gzip_or_not_whole() {
        let good = gzip(b"some layer bytes");
        let mut trailing = good.clone();
        trailing.extend_from_slice(b"garbage");
        assert!(inflate(&trailing)
            .unwrap_err()
            .to_string()
            .contains("not another member"));
        let mut wrong_size = good.clone();
        let n = wrong_size.len();
        wrong_size[n - 4] ^= 1;
        assert!(inflate(&wrong_size)
            .unwrap_err()
            .to_string()
            .contains("another size"));
        let cut = &good[..good.len() - 3];
        assert_eq!(
            inflate(cut).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        let mut reserved = good.clone();
        reserved[3] |= 0x80;
        assert!(inflate(&reserved)
            .unwrap_err()
            .to_string()
            .contains("reserved"));
        // The CRC-32 is not checked: the layer's diff_id is.
        let mut crc = good;
        let n = crc.len();
        crc[n - 8] ^= 0xff;
        assert_eq!(inflate(&crc).unwrap(), b"some layer bytes");
    }
}
