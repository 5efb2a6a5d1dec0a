//! OCI image layout directories (`oci:DIR[:TAG]`), read and written.
//!
//! Writes are atomic: blobs first (each via a temporary file and a rename), `index.json`
//! last via a rename. A layout that did not exist is built in a temporary directory and
//! renamed into place; on failure nothing new is left behind.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::model::digest::VerifyingReader;
use crate::model::manifest::to_canonical_bytes;
use crate::model::{media, Descriptor, Digest, ImageIndex, ImageLocation, Manifest};

use super::blobstore::{blob_path, DirStore, FileStore};
use super::{BlobProvider, BlobReader, OutputImage, RawManifest, Sink, Source, TransportError};

/// The annotation that names a tag in a layout's `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Reads images from the files of a layout, wherever they are stored.
pub struct LayoutReader<S> {
    store: S,
    location: ImageLocation,
    tag: Option<String>,
    kind: &'static str,
}

impl<S: FileStore> LayoutReader<S> {
    /// A reader over `store`; `kind` names the format in messages.
    pub fn new(store: S, location: ImageLocation, tag: Option<String>, kind: &'static str) -> Self {
        LayoutReader {
            store,
            location,
            tag,
            kind,
        }
    }

    fn invalid(&self, reason: impl Into<String>) -> TransportError {
        TransportError::Invalid {
            location: self.location.to_string(),
            kind: self.kind,
            reason: reason.into(),
        }
    }

    /// The location read, for messages.
    pub fn location(&self) -> &ImageLocation {
        &self.location
    }

    /// The parsed `index.json`.
    pub fn index(&self) -> Result<ImageIndex, TransportError> {
        let Some((mut r, len)) = self.store.open("index.json")? else {
            return Err(self.invalid("it has no `index.json`"));
        };
        if len > 16 * 1024 * 1024 {
            return Err(self.invalid("`index.json` is larger than 16 MiB"));
        }
        let mut bytes = Vec::new();
        r.read_to_end(&mut bytes)
            .map_err(|e| TransportError::from_read(e, &self.location))?;
        match Manifest::parse(&bytes, Some(media::OCI_INDEX)) {
            Ok(Manifest::Index(i)) => Ok(i),
            Ok(Manifest::Image(_)) => Err(self.invalid("`index.json` is not an image index")),
            Err(e) => Err(self.invalid(format!("`index.json`: {e}"))),
        }
    }

    /// The tags the layout holds, in index order.
    pub fn tags(index: &ImageIndex) -> Vec<String> {
        index
            .manifests
            .iter()
            .filter_map(|d| d.annotations.get(REF_NAME).cloned())
            .collect()
    }

    /// The index entry the location names.
    pub fn select(&self) -> Result<Descriptor, TransportError> {
        let index = self.index()?;
        match &self.tag {
            Some(tag) => index
                .manifests
                .iter()
                .find(|d| {
                    d.annotations.get(REF_NAME).is_some_and(|n| {
                        n == tag || n.rsplit_once(':').is_some_and(|(_, t)| t == tag)
                    })
                })
                .cloned()
                .ok_or_else(|| TransportError::NoSuchTag {
                    location: self.location.to_string(),
                    tag: tag.clone(),
                    available: Self::tags(&index),
                }),
            None => match index.manifests.as_slice() {
                [only] => Ok(only.clone()),
                [] => Err(self.invalid("it holds no images")),
                _ => Err(TransportError::Ambiguous {
                    location: self.location.to_string(),
                    available: Self::tags(&index),
                }),
            },
        }
    }

    /// A manifest by descriptor, verified.
    pub fn read_manifest(&self, desc: &Descriptor) -> Result<RawManifest, TransportError> {
        let reader = self.blob(desc)?;
        let bytes = super::read_small_blob(reader, desc, &self.location)?;
        Ok(RawManifest {
            bytes,
            media_type: Some(desc.media_type.clone()),
            digest: desc.digest.clone(),
        })
    }

    /// A blob's bytes (unverified).
    pub fn blob(&self, desc: &Descriptor) -> Result<BlobReader, TransportError> {
        match self.store.open(&blob_path(&desc.digest))? {
            Some((r, _)) => Ok(r),
            None => Err(TransportError::NotFound {
                location: self.location.to_string(),
                what: format!("blob {}", desc.digest),
            }),
        }
    }
}

/// Opens `oci:DIR[:TAG]` for reading.
pub fn open_source(location: ImageLocation) -> Result<LayoutReader<DirStore>, TransportError> {
    let ImageLocation::OciLayout { dir, tag } = &location else {
        unreachable!("an oci: location")
    };
    if !dir.is_dir() {
        return Err(TransportError::NotFound {
            location: location.to_string(),
            what: format!("layout directory `{}`", dir.display()),
        });
    }
    let store = DirStore::new(dir);
    let tag = tag.clone();
    Ok(LayoutReader::new(store, location, tag, "OCI layout"))
}

impl<S: FileStore> Source for LayoutReader<S> {
    fn location(&self) -> &ImageLocation {
        &self.location
    }

    fn manifest(&mut self) -> Result<RawManifest, TransportError> {
        let desc = self.select()?;
        self.read_manifest(&desc)
    }

    fn manifest_by_digest(&mut self, desc: &Descriptor) -> Result<RawManifest, TransportError> {
        self.read_manifest(desc)
    }

    fn blob(&mut self, desc: &Descriptor) -> Result<BlobReader, TransportError> {
        LayoutReader::blob(self, desc)
    }

    fn is_local(&self) -> bool {
        true
    }
}

/// The default tag when a destination layout or archive names none.
pub const DEFAULT_TAG: &str = "latest";

/// Writes an image into a layout directory, adding or replacing its tag.
pub struct OciLayoutSink {
    location: ImageLocation,
}

impl OciLayoutSink {
    /// A sink for `oci:DIR[:TAG]`.
    pub fn new(location: ImageLocation) -> OciLayoutSink {
        OciLayoutSink { location }
    }
}

impl Sink for OciLayoutSink {
    fn location(&self) -> &ImageLocation {
        &self.location
    }

    fn write(
        &mut self,
        image: &OutputImage,
        blobs: &mut dyn BlobProvider,
    ) -> Result<Digest, TransportError> {
        let ImageLocation::OciLayout { dir, tag } = &self.location else {
            unreachable!("an oci: location")
        };
        let tag = tag.as_deref().unwrap_or(DEFAULT_TAG);
        let refuse = |reason: String| TransportError::Refused {
            location: self.location.to_string(),
            reason,
        };
        let existing = dir.join("index.json").is_file();
        if dir.exists() && !dir.is_dir() {
            return Err(refuse(format!(
                "`{}` exists and is not a directory",
                dir.display()
            )));
        }
        let empty_dir = dir.is_dir()
            && fs::read_dir(dir)
                .map_err(TransportError::io("read", dir))?
                .next()
                .is_none();
        if dir.is_dir() && !existing && !empty_dir {
            return Err(refuse(format!(
                "`{}` exists and is not an OCI layout (it has no `index.json`)",
                dir.display()
            )));
        }

        if existing || empty_dir {
            // Add to the layout in place; remember new blobs to remove them on failure.
            let mut created = Vec::new();
            let result = write_layout(dir, tag, image, blobs, &mut created, &self.location);
            if result.is_err() {
                for p in created.iter().rev() {
                    let _ = fs::remove_file(p);
                }
            }
            return result.map(|_| image.manifest_desc.digest.clone());
        }

        // A new layout: build it aside, then rename it into place.
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).map_err(TransportError::io("create directory", &parent))?;
        let staging = tempfile::Builder::new()
            .prefix(".unroot-staging-")
            .tempdir_in(&parent)
            .map_err(TransportError::io("create a staging directory in", &parent))?;
        let mut created = Vec::new();
        write_layout(
            staging.path(),
            tag,
            image,
            blobs,
            &mut created,
            &self.location,
        )?;
        let staged = staging.keep();
        // Make the layout readable like a directory made with the default umask.
        let _ = set_mode(&staged, 0o755);
        if let Err(e) = fs::rename(&staged, dir) {
            let _ = fs::remove_dir_all(&staged);
            return Err(TransportError::io("create", dir)(e));
        }
        Ok(image.manifest_desc.digest.clone())
    }
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

/// Writes blobs, config, manifest and finally `index.json` into `root`.
fn write_layout(
    root: &Path,
    tag: &str,
    image: &OutputImage,
    blobs: &mut dyn BlobProvider,
    created: &mut Vec<PathBuf>,
    location: &ImageLocation,
) -> Result<(), TransportError> {
    let layout_file = root.join("oci-layout");
    if !layout_file.exists() {
        write_atomic(&layout_file, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        created.push(layout_file);
    }
    for layer in &image.layers {
        let target = root.join(blob_path(&layer.desc.digest));
        if target.is_file() {
            continue;
        }
        let reader = blobs.open(&layer.desc)?;
        put_blob(root, &layer.desc, reader, location)?;
        created.push(target);
    }
    for (desc, bytes) in [
        (&image.config_desc, &image.config),
        (&image.manifest_desc, &image.manifest),
    ] {
        let target = root.join(blob_path(&desc.digest));
        if !target.is_file() {
            put_blob(
                root,
                desc,
                Box::new(io::Cursor::new(bytes.clone())),
                location,
            )?;
            created.push(target);
        }
    }

    let index_path = root.join("index.json");
    let mut index = if index_path.is_file() {
        let reader = LayoutReader::new(DirStore::new(root), location.clone(), None, "OCI layout");
        reader.index()?
    } else {
        ImageIndex {
            schema_version: 2,
            media_type: Some(media::OCI_INDEX.to_string()),
            manifests: Vec::new(),
            annotations: BTreeMap::new(),
        }
    };
    index
        .manifests
        .retain(|d| d.annotations.get(REF_NAME).map(String::as_str) != Some(tag));
    let mut entry = image.manifest_desc.clone();
    entry
        .annotations
        .insert(REF_NAME.to_string(), tag.to_string());
    index.manifests.push(entry);
    write_atomic(&index_path, &to_canonical_bytes(&index))
}

/// Copies a blob into `root/blobs/...`, verifying it on the way; the file appears only
/// once complete and correct.
pub fn put_blob(
    root: &Path,
    desc: &Descriptor,
    reader: BlobReader,
    location: &ImageLocation,
) -> Result<(), TransportError> {
    let target = root.join(blob_path(&desc.digest));
    let dir = target.parent().expect("blob paths have a parent");
    fs::create_dir_all(dir).map_err(TransportError::io("create directory", dir))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(TransportError::io("create a file in", dir))?;
    let mut verifying = VerifyingReader::new(reader, desc.digest.clone(), Some(desc.size));
    io::copy(&mut verifying, &mut tmp).map_err(|e| TransportError::from_read(e, location))?;
    let _ = set_mode(tmp.path(), 0o644);
    tmp.persist(&target)
        .map_err(|e| TransportError::io("write", &target)(e.error))?;
    Ok(())
}

/// Writes a small file via a temporary file, fsync and rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TransportError> {
    let dir = path.parent().expect("a file in a directory");
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(TransportError::io("create a file in", dir))?;
    tmp.write_all(bytes)
        .map_err(TransportError::io("write", path))?;
    tmp.as_file()
        .sync_all()
        .map_err(TransportError::io("write", path))?;
    let _ = set_mode(tmp.path(), 0o644);
    tmp.persist(path)
        .map_err(|e| TransportError::io("write", path)(e.error))?;
    Ok(())
}
