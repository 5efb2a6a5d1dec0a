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
    /// The `ref.name` of the entry [`Source::manifest`] selected.
    selected: Option<String>,
}

impl<S: FileStore> LayoutReader<S> {
    /// A reader over `store`; `kind` names the format in messages.
    pub fn new(store: S, location: ImageLocation, tag: Option<String>, kind: &'static str) -> Self {
        LayoutReader {
            store,
            location,
            tag,
            kind,
            selected: None,
        }
    }

    fn invalid(&self, reason: impl Into<String>) -> TransportError {
        TransportError::Invalid {
            location: self.location.to_string(),
            kind: self.kind,
            reason: reason.into(),
            local: true,
        }
    }

    /// The location read, for messages.
    pub fn location(&self) -> &ImageLocation {
        &self.location
    }

    /// The parsed `index.json`.
    pub fn index(&self) -> Result<ImageIndex, TransportError> {
        let Some((r, len)) = self.store.open("index.json")? else {
            return Err(self.invalid("it has no `index.json`"));
        };
        const CAP: u64 = 16 * 1024 * 1024;
        // What is read is capped, whatever size the file claims.
        let mut bytes = Vec::new();
        if len <= CAP {
            r.take(CAP + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| TransportError::from_read(e, &self.location))?;
        }
        if len > CAP || bytes.len() as u64 > CAP {
            return Err(self.invalid("`index.json` is larger than 16 MiB"));
        }
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
                local: true,
            }),
        }
    }
}

/// Opens `oci:DIR[:TAG]` for reading.
pub fn open_source(
    dir: &Path,
    tag: Option<&str>,
) -> Result<LayoutReader<DirStore>, TransportError> {
    let location = ImageLocation::oci_layout(dir, tag);
    if dir.exists() && !dir.is_dir() {
        return Err(TransportError::Invalid {
            location: location.to_string(),
            kind: "OCI layout",
            reason: format!("`{}` is a file, not a layout directory", dir.display()),
            local: true,
        });
    }
    if !dir.is_dir() {
        return Err(TransportError::NotFound {
            location: location.to_string(),
            what: format!("layout directory `{}`", dir.display()),
            local: true,
        });
    }
    let store = DirStore::new(dir);
    Ok(LayoutReader::new(
        store,
        location,
        tag.map(str::to_string),
        "OCI layout",
    ))
}

impl<S: FileStore> Source for LayoutReader<S> {
    fn location(&self) -> &ImageLocation {
        &self.location
    }

    fn manifest(&mut self) -> Result<RawManifest, TransportError> {
        let desc = self.select()?;
        self.selected = desc.annotations.get(REF_NAME).cloned();
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

    fn recorded_name(&self) -> Option<String> {
        self.selected.clone()
    }
}

/// The default tag when a destination layout or archive names none.
pub const DEFAULT_TAG: &str = "latest";

/// Writes images into a layout directory, adding or replacing the location's tag.
///
/// Blobs go in first (a layout that did not exist is built in a staging directory); the tag
/// appears only at [`Sink::commit`], with `index.json` replaced by rename. Dropped before
/// the commit, the sink removes what it wrote.
pub struct OciLayoutSink {
    dir: PathBuf,
    tag: Option<String>,
    location: ImageLocation,
    stage: Option<Stage>,
}

/// A write in progress.
struct Stage {
    /// Where the blobs go: the layout itself, or the staging directory of a new one.
    root: PathBuf,
    /// For a new layout: the staging directory to rename into place.
    staging: Option<PathBuf>,
    /// Files this write created in an existing layout (removed if it fails).
    created: Vec<PathBuf>,
}

impl OciLayoutSink {
    /// A sink for `oci:DIR[:TAG]`.
    pub fn new(dir: &Path, tag: Option<&str>) -> OciLayoutSink {
        OciLayoutSink {
            dir: dir.to_path_buf(),
            tag: tag.map(str::to_string),
            location: ImageLocation::oci_layout(dir, tag),
            stage: None,
        }
    }

    /// Checks the destination and prepares where the blobs go.
    fn stage(&mut self) -> Result<&mut Stage, TransportError> {
        if self.stage.is_none() {
            let dir = self.dir.clone();
            let refuse = |reason: String| TransportError::Refused {
                location: self.location.to_string(),
                reason,
            };
            if dir.exists() && !dir.is_dir() {
                return Err(refuse(format!(
                    "`{}` exists and is not a directory",
                    dir.display()
                )));
            }
            let existing = dir.join("index.json").is_file();
            let empty_dir = dir.is_dir()
                && fs::read_dir(&dir)
                    .map_err(TransportError::io("read", &dir))?
                    .next()
                    .is_none();
            if dir.is_dir() && !existing && !empty_dir {
                return Err(refuse(format!(
                    "`{}` exists and is not an OCI layout (it has no `index.json`)",
                    dir.display()
                )));
            }
            let stage = if existing || empty_dir {
                Stage {
                    root: dir,
                    staging: None,
                    created: Vec::new(),
                }
            } else {
                let parent = match dir.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                fs::create_dir_all(&parent)
                    .map_err(TransportError::io("create directory", &parent))?;
                super::stale::sweep(&parent);
                let staging = tempfile::Builder::new()
                    .prefix(&super::stale::prefix("staging"))
                    .tempdir_in(&parent)
                    .map_err(TransportError::io("create a staging directory in", &parent))?
                    .keep();
                Stage {
                    root: staging.clone(),
                    staging: Some(staging),
                    created: Vec::new(),
                }
            };
            self.stage = Some(stage);
        }
        Ok(self.stage.as_mut().expect("just set"))
    }

    /// Writes a blob unless the layout has it.
    fn put(
        &mut self,
        desc: &Descriptor,
        reader: impl FnOnce() -> Result<BlobReader, TransportError>,
    ) -> Result<(), TransportError> {
        let location = self.location.clone();
        let stage = self.stage()?;
        let target = stage.root.join(blob_path(&desc.digest));
        if target.is_file() {
            return Ok(());
        }
        put_blob(&stage.root, desc, reader()?, &location)?;
        stage.created.push(target);
        Ok(())
    }
}

impl Drop for OciLayoutSink {
    fn drop(&mut self) {
        // Not committed: remove what this write added.
        if let Some(stage) = self.stage.take() {
            match stage.staging {
                Some(staging) => {
                    let _ = fs::remove_dir_all(staging);
                }
                None => {
                    for p in stage.created.iter().rev() {
                        let _ = fs::remove_file(p);
                    }
                }
            }
        }
    }
}

impl Sink for OciLayoutSink {
    fn put_image(
        &mut self,
        image: &OutputImage,
        blobs: &mut dyn BlobProvider,
    ) -> Result<(), TransportError> {
        for layer in &image.layers {
            self.put(&layer.desc, || blobs.open(&layer.desc))?;
        }
        self.put(&image.config_desc, || {
            Ok(Box::new(io::Cursor::new(image.config.clone())))
        })?;
        self.put(&image.manifest_desc, || {
            Ok(Box::new(io::Cursor::new(image.manifest.clone())))
        })
    }

    fn put_index(&mut self, index: &[u8], desc: &Descriptor) -> Result<(), TransportError> {
        let bytes = index.to_vec();
        self.put(desc, || Ok(Box::new(io::Cursor::new(bytes))))
    }

    fn commit(&mut self, top: &Descriptor) -> Result<Digest, TransportError> {
        let (dir, tag) = (
            self.dir.clone(),
            self.tag.as_deref().unwrap_or(DEFAULT_TAG).to_string(),
        );
        let location = self.location.clone();
        let stage = self.stage()?;
        let root = stage.root.clone();
        let layout_file = root.join("oci-layout");
        if !layout_file.exists() {
            write_atomic(&layout_file, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
            stage.created.push(layout_file);
        }
        let index_path = root.join("index.json");
        let mut index = if index_path.is_file() {
            LayoutReader::new(DirStore::new(&root), location.clone(), None, "OCI layout").index()?
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
            .retain(|d| d.annotations.get(REF_NAME).map(String::as_str) != Some(tag.as_str()));
        let mut entry = top.clone();
        entry.annotations.insert(REF_NAME.to_string(), tag);
        index.manifests.push(entry);
        write_atomic(&index_path, &to_canonical_bytes(&index))?;
        let stage = self.stage.take().expect("staged above");
        if let Some(staging) = stage.staging {
            // Make the layout readable like a directory made with the default umask.
            let _ = set_mode(&staging, 0o755);
            if let Err(e) = fs::rename(&staging, &dir) {
                let _ = fs::remove_dir_all(&staging);
                return Err(TransportError::io("create", &dir)(e));
            }
        }
        Ok(top.digest.clone())
    }
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
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
    super::stale::sweep(dir);
    let mut tmp = tempfile::Builder::new()
        .prefix(&super::stale::prefix("tmp"))
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
        .prefix(&super::stale::prefix("tmp"))
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
