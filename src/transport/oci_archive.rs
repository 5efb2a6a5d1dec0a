//! OCI layouts packed in a tar file (`oci-archive:FILE[:TAG]`), read in place (indexed,
//! not unpacked) and written in one pass to a temporary file that is renamed into place.

use std::collections::{BTreeMap, BTreeSet};
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
pub fn open_source(
    file: &Path,
    tag: Option<&str>,
) -> Result<LayoutReader<TarStore>, TransportError> {
    let location = ImageLocation::oci_archive(file, tag);
    let store = TarStore::open(file, &location.to_string(), "OCI archive")?;
    Ok(LayoutReader::new(
        store,
        location,
        tag.map(str::to_string),
        "OCI archive",
    ))
}

/// Writes an image as a new OCI archive (an existing file is replaced only on commit).
pub struct OciArchiveSink {
    file: PathBuf,
    tag: Option<String>,
    location: ImageLocation,
    archive: Option<ArchiveWriter>,
}

impl OciArchiveSink {
    /// A sink for `oci-archive:FILE[:TAG]`.
    pub fn new(file: &Path, tag: Option<&str>) -> OciArchiveSink {
        OciArchiveSink {
            file: file.to_path_buf(),
            tag: tag.map(str::to_string),
            location: ImageLocation::oci_archive(file, tag),
            archive: None,
        }
    }

    fn archive(&mut self) -> Result<&mut ArchiveWriter, TransportError> {
        if self.archive.is_none() {
            let mut archive = ArchiveWriter::create(&self.file, &self.location)?;
            archive.bytes("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
            self.archive = Some(archive);
        }
        Ok(self.archive.as_mut().expect("just set"))
    }
}

impl Sink for OciArchiveSink {
    fn put_image(
        &mut self,
        image: &OutputImage,
        blobs: &mut dyn BlobProvider,
    ) -> Result<(), TransportError> {
        let archive = self.archive()?;
        for layer in &image.layers {
            if !archive.has(&blob_path(&layer.desc.digest)) {
                archive.blob(&layer.desc, blobs.open(&layer.desc)?)?;
            }
        }
        archive.bytes(&blob_path(&image.config_desc.digest), &image.config)?;
        archive.bytes(&blob_path(&image.manifest_desc.digest), &image.manifest)
    }

    fn put_index(&mut self, index: &[u8], desc: &Descriptor) -> Result<(), TransportError> {
        self.archive()?.bytes(&blob_path(&desc.digest), index)
    }

    fn commit(&mut self, top: &Descriptor) -> Result<Digest, TransportError> {
        let mut entry = top.clone();
        entry.annotations.insert(
            REF_NAME.to_string(),
            self.tag.as_deref().unwrap_or(DEFAULT_TAG).to_string(),
        );
        let index = ImageIndex {
            schema_version: 2,
            media_type: Some(media::OCI_INDEX.to_string()),
            manifests: vec![entry],
            annotations: BTreeMap::new(),
        };
        let mut archive = match self.archive.take() {
            Some(a) => a,
            None => {
                self.archive()?;
                self.archive.take().expect("just made")
            }
        };
        archive.bytes("index.json", &to_canonical_bytes(&index))?;
        archive.finish()?;
        Ok(top.digest.clone())
    }
}

/// A tar file being written next to its target: members are appended as they come, and the
/// file replaces the target only at [`ArchiveWriter::finish`] (dropped before, it is
/// deleted).
pub struct ArchiveWriter {
    target: PathBuf,
    location: ImageLocation,
    tmp: tempfile::NamedTempFile,
    tar: tar::Builder<BufWriter<File>>,
    written: BTreeSet<String>,
}

impl ArchiveWriter {
    /// Starts an archive that will replace `target`.
    pub fn create(
        target: &Path,
        location: &ImageLocation,
    ) -> Result<ArchiveWriter, TransportError> {
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if target.is_dir() {
            return Err(TransportError::Refused {
                location: location.to_string(),
                reason: format!("`{}` is a directory", target.display()),
            });
        }
        super::stale::sweep(&dir);
        let tmp = tempfile::Builder::new()
            .prefix(&super::stale::prefix("archive"))
            .suffix(".tar.tmp")
            .tempfile_in(&dir)
            .map_err(TransportError::io("create a file in", &dir))?;
        let out = tmp
            .reopen()
            .map_err(TransportError::io("write", tmp.path()))?;
        Ok(ArchiveWriter {
            target: target.to_path_buf(),
            location: location.clone(),
            tar: tar::Builder::new(BufWriter::with_capacity(256 * 1024, out)),
            tmp,
            written: BTreeSet::new(),
        })
    }

    /// Whether a member of that name was written.
    pub fn has(&self, name: &str) -> bool {
        self.written.contains(name)
    }

    /// Appends a small in-memory member (once per name).
    pub fn bytes(&mut self, name: &str, bytes: &[u8]) -> Result<(), TransportError> {
        if self.written.insert(name.to_string()) {
            append_bytes(&mut self.tar, name, bytes)?;
        }
        Ok(())
    }

    /// Appends a blob under `blobs/ALG/HEX`, verifying it as it streams.
    pub fn blob(&mut self, desc: &Descriptor, reader: BlobReader) -> Result<(), TransportError> {
        let name = blob_path(&desc.digest);
        if self.written.insert(name) {
            append_blob(&mut self.tar, desc, reader, &self.location)?;
        }
        Ok(())
    }

    /// Records a member appended through [`ArchiveWriter::tar`].
    pub fn mark(&mut self, name: &str) {
        self.written.insert(name.to_string());
    }

    /// The tar builder, for members of other shapes.
    pub fn tar(&mut self) -> &mut tar::Builder<BufWriter<File>> {
        &mut self.tar
    }

    /// Ends the archive and renames it onto the target.
    pub fn finish(self) -> Result<(), TransportError> {
        let target = self.target;
        let mut out = self
            .tar
            .into_inner()
            .map_err(TransportError::io("write", &target))?;
        out.flush().map_err(TransportError::io("write", &target))?;
        let file = out
            .into_inner()
            .map_err(|e| TransportError::io("write", &target)(e.into_error()))?;
        file.sync_all()
            .map_err(TransportError::io("write", &target))?;
        {
            use std::os::unix::fs::PermissionsExt;
            let _ =
                std::fs::set_permissions(self.tmp.path(), std::fs::Permissions::from_mode(0o644));
        }
        self.tmp
            .persist(&target)
            .map_err(|e| TransportError::io("write", &target)(e.error))?;
        Ok(())
    }
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
