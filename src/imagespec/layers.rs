//! The layers of a spec: tar entries written as the spec gives them, compressed as asked,
//! and the generated content of the benchmarks' files.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use base64::Engine;

use crate::model::digest::HashingWriter;
use crate::model::{media, Descriptor, Digest};

use super::{EntrySpec, LayerSpec, SpecError};

/// Deterministic pseudo-random bytes (xorshift), for generated file content.
pub struct Noise {
    state: u64,
    left: u64,
    /// The rest of a word cut by the end of the previous read, so the bytes do not depend
    /// on the reader's buffer sizes.
    pending: &'static [u8],
}

impl Noise {
    /// `len` bytes from `seed`.
    pub fn new(seed: u64, len: u64) -> Noise {
        Noise {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            left: len,
            pending: &[],
        }
    }
}

/// Words the generated content is made of: text-like data that compresses about as well as
/// the files of real images (around 3:1 with gzip).
const WORDS: [&[u8]; 32] = [
    b"the ",
    b"of ",
    b"and ",
    b"return ",
    b"static ",
    b"const ",
    b"int ",
    b"void ",
    b"if ",
    b"else ",
    b"for ",
    b"while ",
    b"{\n",
    b"}\n",
    b"(",
    b");\n",
    b"= ",
    b"buffer ",
    b"length ",
    b"index ",
    b"config ",
    b"server ",
    b"error ",
    b"value ",
    b"0x7f ",
    b"42 ",
    b"1024 ",
    b"// ",
    b"# ",
    b"\n",
    b"include ",
    b"struct ",
];

impl Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.left as usize);
        let mut filled = 0;
        while filled < n {
            if self.pending.is_empty() {
                self.state ^= self.state << 13;
                self.state ^= self.state >> 7;
                self.state ^= self.state << 17;
                self.pending = WORDS[(self.state >> 59) as usize];
            }
            let take = self.pending.len().min(n - filled);
            buf[filled..filled + take].copy_from_slice(&self.pending[..take]);
            self.pending = &self.pending[take..];
            filled += take;
        }
        self.left -= n as u64;
        Ok(n)
    }
}

pub(super) fn write_layer(
    spec: &LayerSpec,
    path: &Path,
    docker: bool,
) -> Result<(Descriptor, Digest, u64), SpecError> {
    let media_type = match spec.compression.as_str() {
        "gzip" if docker => media::DOCKER_LAYER_GZIP,
        "gzip" => media::OCI_LAYER_GZIP,
        "zstd" => media::OCI_LAYER_ZSTD,
        "none" if docker => "application/vnd.docker.image.rootfs.diff.tar",
        "none" => media::OCI_LAYER_TAR,
        other => {
            return Err(SpecError::Entry {
                path: "layer".into(),
                message: format!("unknown compression `{other}` (use `gzip`, `zstd` or `none`)"),
            })
        }
    };
    write_layer_parts(spec, path, media_type)
}

fn write_layer_parts(
    spec: &LayerSpec,
    path: &Path,
    media_type: &str,
) -> Result<(Descriptor, Digest, u64), SpecError> {
    // 1. The uncompressed tar, hashed as it is written.
    let tar_path = path.with_extension("tar");
    let (diff_id, tar_size) = {
        let mut out = HashingWriter::new(BufWriter::new(File::create(&tar_path)?));
        let out = match &spec.tar {
            Some(host) if !spec.entries.is_empty() => {
                return Err(SpecError::Entry {
                    path: host.display().to_string(),
                    message: "a layer has either `tar` or entries".into(),
                })
            }
            Some(host) => {
                io::copy(&mut File::open(host)?, &mut out)?;
                out
            }
            None => {
                let mut tar = tar::Builder::new(out);
                for entry in &spec.entries {
                    append(&mut tar, entry)?;
                }
                tar.into_inner()?
            }
        };
        let (mut w, digest, size) = out.finish();
        w.flush()?;
        (digest, size)
    };
    // 2. Compressed as asked.
    let mut input = File::open(&tar_path)?;
    let out = HashingWriter::new(BufWriter::new(File::create(path)?));
    let out = match spec.compression.as_str() {
        "gzip" if spec.multi_member => {
            // Split the tar in two gzip members at a block boundary.
            let half = (tar_size / 2) / 512 * 512;
            let mut first = flate2::GzBuilder::new()
                .mtime(0)
                .operating_system(255)
                .write(out, flate2::Compression::fast());
            io::copy(&mut (&mut input).take(half), &mut first)?;
            let out = first.finish()?;
            let mut second = flate2::GzBuilder::new()
                .mtime(0)
                .operating_system(255)
                .write(out, flate2::Compression::fast());
            io::copy(&mut input, &mut second)?;
            second.finish()?
        }
        "gzip" => {
            let mut gz = flate2::GzBuilder::new()
                .mtime(0)
                .operating_system(255)
                .write(out, flate2::Compression::fast());
            io::copy(&mut input, &mut gz)?;
            gz.finish()?
        }
        "zstd" => {
            let mut z = zstd::stream::write::Encoder::new(out, 3)?;
            io::copy(&mut input, &mut z)?;
            z.finish()?
        }
        _ => {
            let mut out = out;
            io::copy(&mut input, &mut out)?;
            out
        }
    };
    let (mut w, digest, size) = out.finish();
    w.flush()?;
    std::fs::remove_file(&tar_path)?;
    Ok((Descriptor::new(media_type, digest, size), diff_id, tar_size))
}

fn append<W: Write>(tar: &mut tar::Builder<W>, e: &EntrySpec) -> Result<(), SpecError> {
    let err = |message: String| SpecError::Entry {
        path: e.path.clone(),
        message,
    };
    let name: Vec<u8> = if e.raw {
        e.path.as_bytes().to_vec()
    } else {
        e.path.trim_start_matches('/').as_bytes().to_vec()
    };
    let kind = e.kind.as_deref().unwrap_or("file");
    if !e.xattrs.is_empty() {
        let mut records = Vec::new();
        for (k, v) in &e.xattrs {
            let value = base64::engine::general_purpose::STANDARD
                .decode(v)
                .map_err(|_| err(format!("xattr `{k}` is not base64")))?;
            let mut body = format!("SCHILY.xattr.{k}=").into_bytes();
            body.extend_from_slice(&value);
            body.push(b'\n');
            let mut len = body.len() + 2;
            while len.to_string().len() + 1 + body.len() != len {
                len = len.to_string().len() + 1 + body.len();
            }
            records.extend_from_slice(format!("{len} ").as_bytes());
            records.extend_from_slice(&body);
        }
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_size(records.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        tar.append_data(&mut h, "PaxHeader", records.as_slice())?;
    }
    let mut h = tar::Header::new_gnu();
    h.set_uid(e.uid);
    h.set_gid(e.gid);
    h.set_mtime(1_700_000_000);
    let write_raw = |tar: &mut tar::Builder<W>,
                     h: &mut tar::Header,
                     data: &mut dyn Read|
     -> Result<(), SpecError> {
        if e.raw {
            // Bypass the builder's path checks: write the name bytes straight into the header.
            let field = &mut h.as_old_mut().name;
            if name.len() > field.len() {
                return Err(err("raw names must fit in 100 bytes".into()));
            }
            field.fill(0);
            field[..name.len()].copy_from_slice(&name);
            h.set_cksum();
            tar.append(h, data)?;
        } else {
            tar.append_data(h, Path::new(OsStr::from_bytes(&name)), data)?;
        }
        Ok(())
    };
    match kind {
        "file" => {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(e.mode.unwrap_or(0o644));
            let text = match (&e.text, &e.base64) {
                (Some(_), Some(_)) => {
                    return Err(err("give one of `text`, `base64`, `host` and `size`".into()))
                }
                (Some(t), None) => Some(t.clone().into_bytes()),
                (None, Some(b)) => Some(
                    base64::engine::general_purpose::STANDARD
                        .decode(b)
                        .map_err(|_| err("`base64` is not base64".into()))?,
                ),
                (None, None) => None,
            };
            let mut data: Box<dyn Read> = match (&text, &e.host, e.size) {
                (Some(t), None, None) => Box::new(io::Cursor::new(t.clone())),
                (None, Some(p), None) => {
                    let f = File::open(p).map_err(|x| err(format!("`{}`: {x}", p.display())))?;
                    h.set_size(f.metadata()?.len());
                    Box::new(f)
                }
                (None, None, Some(n)) => Box::new(Noise::new(e.seed.unwrap_or(n), n)),
                (None, None, None) => Box::new(io::empty()),
                _ => return Err(err("give one of `text`, `base64`, `host` and `size`".into())),
            };
            let len = match (&text, e.size) {
                (Some(t), _) => t.len() as u64,
                (_, Some(n)) => n,
                _ => h.size().unwrap_or(0),
            };
            h.set_size(len);
            write_raw(tar, &mut h, &mut data)
        }
        "dir" => {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(e.mode.unwrap_or(0o755));
            h.set_size(0);
            write_raw(tar, &mut h, &mut io::empty())
        }
        "fifo" => {
            h.set_entry_type(tar::EntryType::Fifo);
            h.set_mode(e.mode.unwrap_or(0o644));
            h.set_size(0);
            write_raw(tar, &mut h, &mut io::empty())
        }
        "symlink" | "hardlink" => {
            let target = e
                .target
                .as_deref()
                .ok_or_else(|| err("links need a `target`".into()))?;
            h.set_entry_type(if kind == "symlink" {
                tar::EntryType::Symlink
            } else {
                tar::EntryType::Link
            });
            h.set_mode(
                e.mode
                    .unwrap_or(if kind == "symlink" { 0o777 } else { 0o644 }),
            );
            h.set_size(0);
            tar.append_link(&mut h, Path::new(OsStr::from_bytes(&name)), target)?;
            Ok(())
        }
        "whiteout" | "opaque" => {
            let p = Path::new(OsStr::from_bytes(&name));
            let marker = if kind == "opaque" {
                p.join(".wh..wh..opq")
            } else {
                let file = p
                    .file_name()
                    .ok_or_else(|| err("a whiteout needs a file name".into()))?;
                let mut n = b".wh.".to_vec();
                n.extend_from_slice(file.as_bytes());
                p.with_file_name(OsStr::from_bytes(&n))
            };
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_size(0);
            tar.append_data(&mut h, marker, io::empty())?;
            Ok(())
        }
        other => Err(err(format!("unknown entry type `{other}`"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_does_not_depend_on_read_sizes() {
        let mut a = Vec::new();
        Noise::new(7, 10_000).read_to_end(&mut a).unwrap();
        let mut b = Vec::new();
        let mut n = Noise::new(7, 10_000);
        let mut buf = [0u8; 3];
        loop {
            let k = n.read(&mut buf).unwrap();
            if k == 0 {
                break;
            }
            b.extend_from_slice(&buf[..k]);
        }
        assert_eq!(a.len(), 10_000);
        assert_eq!(a, b);
    }
}
