//! OCI layouts packed in a tar file (`oci-archive:FILE[:TAG]`), read in place (indexed,
//! not unpacked) and written in one pass to a temporary file that is renamed into place.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::model::digest::VerifyingReader;
use crate::model::manifest::to_canonical_bytes;
use crate::model::{media, Descriptor, Digest, ImageIndex, ImageLocation};

use super::blobstore::{blob_path, TarStore};
use super::oci_layout::{LayoutReader, DEFAULT_TAG, REF_NAME};
use super::{BlobProvider, BlobReader, OutputImage, Sink, TransportError};

/// Opens `oci-archive:FILE[:TAG]` for reading (the archive is indexed, not unpacked).
pub fn open_source(location: ImageLocation) -> Result<LayoutReader<TarStore>, TransportError> {
    let ImageLocation::OciArchive { file, tag } = &location else {
        unreachable!("an oci-archive: location")
    };
    if !file.is_file() {
        return Err(TransportError::NotFound {
            location: location.to_string(),
            what: format!("archive `{}`", file.display()),
        });
    }
    let store = TarStore::open(file, &location.to_string(), "OCI archive")?;
    let tag = tag.clone();
    Ok(LayoutReader::new(store, location, tag, "OCI archive"))
}

/// Writes an image as a new OCI archive (an existing file is replaced only on success).
pub struct OciArchiveSink {
    location: ImageLocation,
}

impl OciArchiveSink {
    /// A sink for `oci-archive:FILE[:TAG]`.
    pub fn new(location: ImageLocation) -> OciArchiveSink {
        OciArchiveSink { location }
    }
}

impl Sink for OciArchiveSink {
    fn location(&self) -> &ImageLocation {
        &self.location
    }

    fn write(
        &mut self,
        image: &OutputImage,
        blobs: &mut dyn BlobProvider,
    ) -> Result<Digest, TransportError> {
        let ImageLocation::OciArchive { file, tag } = &self.location else {
            unreachable!("an oci-archive: location")
        };
        let tag = tag.as_deref().unwrap_or(DEFAULT_TAG);
        let location = self.location.clone();
        write_archive_atomically(file, |out| {
            let mut tar = tar::Builder::new(out);
            append_bytes(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
            for layer in &image.layers {
                let reader = blobs.open(&layer.desc)?;
                append_blob(&mut tar, &layer.desc, reader, &location)?;
            }
            append_bytes(
                &mut tar,
                &blob_path(&image.config_desc.digest),
                &image.config,
            )?;
            append_bytes(
                &mut tar,
                &blob_path(&image.manifest_desc.digest),
                &image.manifest,
            )?;
            let mut entry = image.manifest_desc.clone();
            entry
                .annotations
                .insert(REF_NAME.to_string(), tag.to_string());
            let index = ImageIndex {
                schema_version: 2,
                media_type: Some(media::OCI_INDEX.to_string()),
                manifests: vec![entry],
                annotations: BTreeMap::new(),
            };
            append_bytes(&mut tar, "index.json", &to_canonical_bytes(&index))?;
            tar.into_inner()
                .and_then(|w| w.flush())
                .map_err(TransportError::io("write", file))
        })?;
        Ok(image.manifest_desc.digest.clone())
    }
}

/// Runs `fill` on a temporary file next to `target`, then renames it to `target`; on any
/// failure the temporary file is removed and `target` is untouched.
pub fn write_archive_atomically(
    target: &Path,
    fill: impl FnOnce(&mut BufWriter<&File>) -> Result<(), TransportError>,
) -> Result<(), TransportError> {
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if target.is_dir() {
        return Err(TransportError::Refused {
            location: target.display().to_string(),
            reason: "it is a directory".into(),
        });
    }
    let tmp = tempfile::Builder::new()
        .prefix(".unroot-")
        .suffix(".tar.tmp")
        .tempfile_in(&dir)
        .map_err(TransportError::io("create a file in", &dir))?;
    {
        let mut out = BufWriter::with_capacity(256 * 1024, tmp.as_file());
        fill(&mut out)?;
        out.flush().map_err(TransportError::io("write", target))?;
    }
    tmp.as_file()
        .sync_all()
        .map_err(TransportError::io("write", target))?;
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644));
    }
    tmp.persist(target)
        .map_err(|e| TransportError::io("write", target)(e.error))?;
    Ok(())
}

/// A tar header for a regular file with fixed metadata, so archives are reproducible.
pub fn file_header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

/// Appends a small in-memory file.
pub fn append_bytes<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    bytes: &[u8],
) -> Result<(), TransportError> {
    let mut h = file_header(bytes.len() as u64);
    tar.append_data(&mut h, name, bytes)
        .map_err(TransportError::io("write archive member", name))
}

/// Appends a blob, verifying its digest and size as it streams.
fn append_blob<W: Write>(
    tar: &mut tar::Builder<W>,
    desc: &Descriptor,
    reader: BlobReader,
    location: &ImageLocation,
) -> Result<(), TransportError> {
    let mut h = file_header(desc.size);
    let verifying = VerifyingReader::new(reader, desc.digest.clone(), Some(desc.size));
    let mut checked = ErrorCapture::new(verifying);
    let result = tar.append_data(&mut h, blob_path(&desc.digest), &mut checked);
    if let Some(e) = checked.error.take() {
        return Err(TransportError::from_read(e, location));
    }
    result.map_err(TransportError::io(
        "write archive member",
        blob_path(&desc.digest),
    ))
}

/// Keeps the first read error whole, since the tar writer reports errors from its reader
/// flattened into its own.
pub struct ErrorCapture<R> {
    inner: R,
    /// The first error the inner reader gave.
    pub error: Option<io::Error>,
}

impl<R> ErrorCapture<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        ErrorCapture { inner, error: None }
    }
}

impl<R: Read> Read for ErrorCapture<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => Ok(n),
            Err(e) => {
                let copy = io::Error::new(e.kind(), e.to_string());
                self.error = Some(e);
                Err(copy)
            }
        }
    }
}
