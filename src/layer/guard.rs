//! A guard in front of the tar parser: it follows the archive's headers as the bytes pass
//! (as the `tar` crate will read them) and refuses an extension header whose body is larger
//! than any real image needs, before the parser reads that body into memory. A 1 MB layer
//! can otherwise hold a gigabyte-long "file name" of zeros.
//!
//! Invariant: the bytes pass through unchanged; the guard only ever adds an error.

use std::io::{self, Read};

/// The largest GNU long name or long link target (`L`, `K`) accepted: Linux paths stop at
/// 4 KiB.
pub const NAME_CAP: u64 = 16 * 1024;
/// The largest PAX extended header (`x`, `g`) accepted: records of paths, owners, times and
/// extended attributes (SELinux labels, capabilities) take a few KiB.
pub const PAX_CAP: u64 = 4 * 1024 * 1024;

const BLOCK: u64 = 512;

/// An extension header larger than its cap.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the header at byte {offset} starts a {what} of {size} bytes; more than {cap} are refused, as no real image needs them")]
pub struct Oversized {
    /// Where the header starts in the tar stream.
    pub offset: u64,
    /// `GNU long name`, `GNU long link target`, `PAX extended header`, ...
    pub what: &'static str,
    /// The size the header gives.
    pub size: u64,
    /// The cap.
    pub cap: u64,
}

impl Oversized {
    /// Finds the refusal in an I/O error, as the guard returns it.
    pub fn from_io(e: &io::Error) -> Option<&Oversized> {
        e.get_ref()?.downcast_ref::<Oversized>()
    }
}

enum State {
    /// Collecting a 512-byte header.
    Header,
    /// Passing `left` bytes of an entry's body (padding included).
    Body { left: u64 },
    /// Keeping a PAX header's records (for the `size` of the next entry), then its padding.
    Pax { left: u64, pad: u64 },
    /// Passing the GNU sparse extension blocks that follow a header, then its body.
    Sparse { body: u64 },
    /// After the end of the archive (a zero block): nothing more is checked.
    Done,
}

/// Wraps the tar stream read by the parser.
pub struct TarGuard<R> {
    inner: R,
    state: State,
    block: Vec<u8>,
    pax: Vec<u8>,
    /// The size the last PAX header gives the next entry.
    next_size: Option<u64>,
    /// Bytes passed so far.
    pos: u64,
    /// Where the current header started.
    header_at: u64,
}

impl<R: Read> TarGuard<R> {
    /// A guard over `inner`, which starts at a header.
    pub fn new(inner: R) -> TarGuard<R> {
        TarGuard {
            inner,
            state: State::Header,
            block: Vec::with_capacity(BLOCK as usize),
            pax: Vec::new(),
            next_size: None,
            pos: 0,
            header_at: 0,
        }
    }

    /// Follows `bytes`, which were just read.
    fn follow(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match &mut self.state {
                State::Done => return Ok(()),
                State::Header => {
                    if self.block.is_empty() {
                        self.header_at = self.pos;
                    }
                    let take = (BLOCK as usize - self.block.len()).min(bytes.len());
                    self.block.extend_from_slice(&bytes[..take]);
                    self.pos += take as u64;
                    bytes = &bytes[take..];
                    if self.block.len() == BLOCK as usize {
                        let header = std::mem::take(&mut self.block);
                        self.state = self.after_header(&header)?;
                        self.block = header;
                        self.block.clear();
                    }
                }
                State::Body { left } => {
                    let take = (*left).min(bytes.len() as u64);
                    *left -= take;
                    self.pos += take;
                    bytes = &bytes[take as usize..];
                    if *left == 0 {
                        self.state = State::Header;
                    }
                }
                State::Pax { left, pad } => {
                    let take = (*left).min(bytes.len() as u64) as usize;
                    self.pax.extend_from_slice(&bytes[..take]);
                    *left -= take as u64;
                    self.pos += take as u64;
                    bytes = &bytes[take..];
                    if *left == 0 {
                        let pad = *pad;
                        self.next_size = pax_size(&self.pax);
                        self.pax.clear();
                        self.state = if pad == 0 {
                            State::Header
                        } else {
                            State::Body { left: pad }
                        };
                    }
                }
                State::Sparse { body } => {
                    let take = (BLOCK as usize - self.block.len()).min(bytes.len());
                    self.block.extend_from_slice(&bytes[..take]);
                    self.pos += take as u64;
                    bytes = &bytes[take..];
                    if self.block.len() == BLOCK as usize {
                        let more = self.block[504] != 0;
                        let body = *body;
                        self.block.clear();
                        if !more {
                            self.state = body_state(body);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// What follows a complete header.
    fn after_header(&mut self, h: &[u8]) -> io::Result<State> {
        if h.iter().all(|&b| b == 0) {
            return Ok(State::Done);
        }
        let Some(size) = header_size(&h[124..136]) else {
            // The parser refuses a size it cannot read; nothing to follow after that.
            return Ok(State::Done);
        };
        let kind = h[156];
        let recognized = &h[257..263] == b"ustar\0" || &h[257..265] == b"ustar  \0";
        let refuse = |what, cap| {
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                Oversized {
                    offset: self.header_at,
                    what,
                    size,
                    cap,
                },
            ))
        };
        match kind {
            b'L' if size > NAME_CAP => return refuse("GNU long name", NAME_CAP),
            b'K' if size > NAME_CAP => return refuse("GNU long link target", NAME_CAP),
            b'x' | b'X' if size > PAX_CAP => return refuse("PAX extended header", PAX_CAP),
            b'g' if size > PAX_CAP => return refuse("PAX global header", PAX_CAP),
            _ => {}
        }
        let padded = size.div_ceil(BLOCK) * BLOCK;
        Ok(match kind {
            b'x' if recognized => {
                // Its records may give the next entry another size than its header.
                self.pax.clear();
                if size == 0 {
                    State::Header
                } else {
                    State::Pax {
                        left: size,
                        pad: padded - size,
                    }
                }
            }
            b'L' | b'K' | b'g' => body_state(padded),
            _ => {
                // A file entry: a PAX `size` (of the header before) wins over its own.
                let size = self.next_size.take().unwrap_or(size);
                let padded = size.div_ceil(BLOCK).saturating_mul(BLOCK);
                if kind == b'S' && h[482] != 0 {
                    State::Sparse { body: padded }
                } else {
                    body_state(padded)
                }
            }
        })
    }
}

fn body_state(left: u64) -> State {
    if left == 0 {
        State::Header
    } else {
        State::Body { left }
    }
}

/// A header's size field: octal, or base-256 when its first bit is set.
fn header_size(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let text: Vec<u8> = field
        .iter()
        .copied()
        .take_while(|&b| b != 0)
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(std::str::from_utf8(&text).ok()?, 8).ok()
}

/// The `size` record of PAX records (`LEN size=N\n` ...), the last one winning.
fn pax_size(records: &[u8]) -> Option<u64> {
    let mut rest = records;
    let mut size = None;
    while !rest.is_empty() {
        let space = rest.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
        if len <= space || len > rest.len() {
            return size;
        }
        let record = &rest[space + 1..len];
        if let Some(value) = record.strip_prefix(b"size=") {
            let value = value.strip_suffix(b"\n").unwrap_or(value);
            size = std::str::from_utf8(value).ok()?.parse().ok();
        }
        rest = &rest[len..];
    }
    size
}

impl<R: Read> Read for TarGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.follow(&buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: tar::EntryType, size: u64) -> tar::Header {
        crate::testkit::tar_header(kind, size, 0o644)
    }

    /// Reads every entry of `archive` through the guard, as the layer reader does.
    fn entries(archive: &[u8]) -> io::Result<Vec<String>> {
        let mut a = tar::Archive::new(TarGuard::new(archive));
        let mut names = Vec::new();
        for e in a.entries()? {
            let mut e = e?;
            names.push(String::from_utf8_lossy(&e.path_bytes()).into_owned());
            io::copy(&mut e, &mut io::sink())?;
        }
        Ok(names)
    }

    #[test]
    fn long_names_pax_records_and_sparse_files_pass() {
        let mut b = tar::Builder::new(Vec::new());
        let long = format!("usr/{}/f", "d".repeat(300));
        b.append_data(&mut header(tar::EntryType::Regular, 3), &long, &b"abc"[..])
            .unwrap();
        // A PAX header giving the next entry a size its own header does not.
        let records = b"16 size=1000000\n";
        b.append_data(
            &mut header(tar::EntryType::XHeader, records.len() as u64),
            "PaxHeaders/big",
            &records[..],
        )
        .unwrap();
        let mut big = header(tar::EntryType::Regular, 0);
        big.set_path("big").unwrap();
        big.set_cksum();
        b.append(&big, io::repeat(7).take(1_000_000)).unwrap();
        b.append_data(&mut header(tar::EntryType::Regular, 2), "after", &b"hi"[..])
            .unwrap();
        let archive = b.into_inner().unwrap();
        assert_eq!(entries(&archive).unwrap(), [long.as_str(), "big", "after"]);
    }

    #[test]
    fn oversized_extensions_are_refused_before_their_body() {
        for (kind, size, what) in [
            (tar::EntryType::GNULongName, NAME_CAP + 1, "GNU long name"),
            (
                tar::EntryType::GNULongLink,
                NAME_CAP + 1,
                "GNU long link target",
            ),
            (tar::EntryType::XHeader, PAX_CAP + 1, "PAX extended header"),
            (
                tar::EntryType::XGlobalHeader,
                PAX_CAP + 1,
                "PAX global header",
            ),
        ] {
            let mut b = tar::Builder::new(Vec::new());
            b.append_data(&mut header(tar::EntryType::Regular, 1), "first", &b"x"[..])
                .unwrap();
            // Only the header: the guard must refuse before the body is there.
            let mut archive = b.into_inner().unwrap();
            archive.truncate(1024);
            let mut h = header(kind, size);
            h.set_path("././@LongLink").unwrap();
            h.set_cksum();
            archive.extend_from_slice(h.as_bytes());
            let err = entries(&archive).unwrap_err();
            let oversized = Oversized::from_io(&err).unwrap_or_else(|| panic!("{err}"));
            assert_eq!(
                (oversized.offset, oversized.what, oversized.size),
                (1024, what, size)
            );
        }
    }

    #[test]
    fn sizes_in_octal_base_256_and_pax() {
        assert_eq!(header_size(b"00000001750\0"), Some(1000));
        assert_eq!(header_size(b"        \0\0\0\0"), Some(0));
        let mut b256 = [0u8; 12];
        b256[0] = 0x80;
        b256[11] = 0x01;
        b256[10] = 0x02;
        assert_eq!(header_size(&b256), Some(0x0201));
        assert_eq!(header_size(b"0000000009x\0"), None);
        assert_eq!(pax_size(b"12 uid=1000\n16 size=1000000\n"), Some(1_000_000));
        assert_eq!(pax_size(b"12 uid=1000\n"), None);
    }
}
