//! `docker save` archives (`docker-archive:FILE[:REF]`): read in place, written in the form
//! `docker load` and skopeo read (`manifest.json`, the config, one uncompressed tar per
//! layer named by its diff_id).

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::layer::Compression;
use crate::model::digest::Hasher;
use crate::model::manifest::to_canonical_bytes;
use crate::model::{
    media, Descriptor, Digest, ImageConfig, ImageLocation, ImageManifest, ImageRef,
};

use super::blobstore::{FileStore, TarStore};
use super::oci_archive::{file_header, ArchiveWriter, ErrorCapture};
use super::{BlobProvider, BlobReader, OutputImage, RawManifest, Sink, Source, TransportError};

/// One image of `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Reads an image from a docker archive.
pub struct DockerArchiveSource {
    location: ImageLocation,
    store: TarStore,
    manifest: RawManifest,
    members: BTreeMap<Digest, String>,
    /// The `RepoTags` entry the reference matched, or the image's first one.
    name: Option<String>,
}

impl DockerArchiveSource {
    /// Opens `docker-archive:FILE[:REF]`; `REF` is a `repo:tag` the archive lists, or `@N`
    /// for its N-th image.
    pub fn open(
        file: &Path,
        reference: Option<&str>,
    ) -> Result<DockerArchiveSource, TransportError> {
        let location = ImageLocation::docker_archive(file, reference);
        let store = TarStore::open(file, &location.to_string(), "docker archive")?;
        let archive = Opened {
            store: &store,
            location: &location,
        };
        let entries: Vec<ArchiveEntry> =
            serde_json::from_slice(&archive.member("manifest.json", 16 << 20)?)
                .map_err(|e| archive.invalid(format!("`manifest.json`: {e}")))?;
        let (entry, name) = archive.select(&entries, reference)?;
        let config_bytes = archive.member(&entry.config, 4 << 20)?;
        let config_digest = Digest::sha256_of(&config_bytes);
        let config =
            ImageConfig::parse(&config_bytes).map_err(|e| archive.invalid(e.to_string()))?;
        let diff_ids = config
            .diff_ids()
            .map_err(|e| archive.invalid(e.to_string()))?;
        if diff_ids.len() != entry.layers.len() {
            return Err(archive.invalid(format!(
                "the config lists {} layers and `manifest.json` {}",
                diff_ids.len(),
                entry.layers.len()
            )));
        }
        let mut members = BTreeMap::new();
        members.insert(config_digest.clone(), entry.config.clone());
        let mut layers = Vec::new();
        for (member, diff_id) in entry.layers.iter().zip(&diff_ids) {
            let desc = archive.layer(member, diff_id)?;
            members.insert(desc.digest.clone(), member.clone());
            layers.push(desc);
        }
        let config = Descriptor::new(
            media::DOCKER_CONFIG,
            config_digest,
            config_bytes.len() as u64,
        );
        Ok(DockerArchiveSource {
            manifest: manifest_of(config, layers),
            location,
            store,
            members,
            name,
        })
    }
}

/// A docker archive being opened: its members and the location for messages.
struct Opened<'a> {
    store: &'a TarStore,
    location: &'a ImageLocation,
}

impl Opened<'_> {
    fn invalid(&self, reason: String) -> TransportError {
        TransportError::Invalid {
            location: self.location.to_string(),
            kind: "docker archive",
            reason,
            local: true,
        }
    }

    /// A small member's bytes, refused above `cap`.
    fn member(&self, name: &str, cap: u64) -> Result<Vec<u8>, TransportError> {
        let (r, len) = self
            .store
            .open(name)?
            .ok_or_else(|| self.invalid(format!("it has no `{name}`")))?;
        if len > cap {
            return Err(self.invalid(format!("`{name}` is larger than {cap} bytes")));
        }
        let mut buf = Vec::new();
        r.take(cap)
            .read_to_end(&mut buf)
            .map_err(|e| TransportError::from_read(e, self.location))?;
        Ok(buf)
    }

    /// The image `reference` names (`@N`, a `repo:tag`, or the only one) and the
    /// `RepoTags` entry it is recorded under.
    fn select(
        &self,
        entries: &[ArchiveEntry],
        reference: Option<&str>,
    ) -> Result<(ArchiveEntry, Option<String>), TransportError> {
        let tags = || -> Vec<String> {
            entries
                .iter()
                .flat_map(|e| e.repo_tags.clone().unwrap_or_default())
                .collect()
        };
        let no_such = |tag: &str| TransportError::NoSuchTag {
            location: self.location.to_string(),
            tag: tag.to_string(),
            available: tags(),
        };
        let same_ref = |r: &str, t: &str| {
            t == r || ImageRef::parse(r).is_ok_and(|wanted| ImageRef::parse(t).ok() == Some(wanted))
        };
        let entry = match reference {
            Some(r) if r.starts_with('@') => {
                // `@N` names the N-th image; anything else after `@` names none.
                let n: Option<usize> = r[1..].parse().ok();
                n.and_then(|n| entries.get(n))
                    .cloned()
                    .ok_or_else(|| no_such(r))?
            }
            Some(r) => entries
                .iter()
                .find(|e| e.repo_tags.iter().flatten().any(|t| same_ref(r, t)))
                .cloned()
                .ok_or_else(|| no_such(r))?,
            None => match entries {
                [only] => only.clone(),
                [] => return Err(self.invalid("`manifest.json` lists no images".into())),
                _ => {
                    return Err(TransportError::Ambiguous {
                        location: self.location.to_string(),
                        available: tags(),
                    })
                }
            },
        };
        let mut recorded = entry.repo_tags.iter().flatten();
        let name = match reference {
            Some(r) if !r.starts_with('@') => recorded.find(|t| same_ref(r, t)),
            _ => recorded.next(),
        }
        .cloned();
        Ok((entry, name))
    }

    /// The descriptor of layer member `name`: its compression from its first bytes, its
    /// digest from its name under `blobs/sha256/`, its diff_id when uncompressed, or else
    /// computed.
    fn layer(&self, name: &str, diff_id: &Digest) -> Result<Descriptor, TransportError> {
        let (mut r, size) = self
            .store
            .open(name)?
            .ok_or_else(|| self.invalid(format!("it has no layer `{name}`")))?;
        let mut head = [0u8; 4];
        let n = read_up_to(&mut r, &mut head)
            .map_err(|e| TransportError::from_read(e, self.location))?;
        let compression = Compression::detect(&head[..n]);
        let named = name
            .strip_prefix("blobs/sha256/")
            .and_then(|hex| Digest::parse(&format!("sha256:{hex}")).ok());
        let digest = match (named, compression) {
            (Some(d), _) => d,
            (None, Compression::None) => diff_id.clone(),
            // A compressed layer named otherwise: its digest must be computed.
            (None, _) => self.digest_of(name)?,
        };
        let media_type = match compression {
            Compression::None => "application/vnd.docker.image.rootfs.diff.tar",
            Compression::Gzip => media::DOCKER_LAYER_GZIP,
            Compression::Zstd => media::OCI_LAYER_ZSTD,
        };
        Ok(Descriptor::new(media_type, digest, size))
    }

    fn digest_of(&self, name: &str) -> Result<Digest, TransportError> {
        let (mut r, _) = self.store.open(name)?.expect("opened before");
        let mut h = Hasher::new(crate::model::digest::Algorithm::Sha256);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = r
                .read(&mut buf)
                .map_err(|e| TransportError::from_read(e, self.location))?;
            if n == 0 {
                return Ok(h.finish());
            }
            h.update(&buf[..n]);
        }
    }
}

/// The Docker manifest an archive's image is read as.
fn manifest_of(config: Descriptor, layers: Vec<Descriptor>) -> RawManifest {
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(media::DOCKER_MANIFEST.to_string()),
        artifact_type: None,
        config,
        layers,
        subject: None,
        annotations: BTreeMap::new(),
    };
    let bytes = to_canonical_bytes(&manifest);
    RawManifest {
        digest: Digest::sha256_of(&bytes),
        bytes,
        media_type: Some(media::DOCKER_MANIFEST.to_string()),
    }
}

fn read_up_to(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

impl Source for DockerArchiveSource {
    fn location(&self) -> &ImageLocation {
        &self.location
    }

    fn manifest(&mut self) -> Result<RawManifest, TransportError> {
        Ok(self.manifest.clone())
    }

    fn manifest_by_digest(&mut self, desc: &Descriptor) -> Result<RawManifest, TransportError> {
        if desc.digest == self.manifest.digest {
            return Ok(self.manifest.clone());
        }
        Err(TransportError::NotFound {
            location: self.location.to_string(),
            what: format!("manifest {}", desc.digest),
            local: true,
        })
    }

    fn blob(&mut self, desc: &Descriptor) -> Result<BlobReader, TransportError> {
        let not_found = || TransportError::NotFound {
            location: self.location.to_string(),
            what: format!("blob {}", desc.digest),
            local: true,
        };
        let name = self.members.get(&desc.digest).ok_or_else(not_found)?;
        Ok(self.store.open(name)?.ok_or_else(not_found)?.0)
    }

    fn is_local(&self) -> bool {
        true
    }

    fn recorded_name(&self) -> Option<String> {
        self.name.clone()
    }
}

/// Writes an image as a docker archive (an existing file is replaced only on success).
pub struct DockerArchiveSink {
    file: PathBuf,
    reference: Option<String>,
    location: ImageLocation,
    /// The image written so far: its `manifest.json` entry, manifest and config digests,
    /// and the archive being written.
    entry: Option<(ArchiveEntry, Digest, Digest, ArchiveWriter)>,
}

impl DockerArchiveSink {
    /// A sink for `docker-archive:FILE[:REF]`; `REF` becomes the image's `RepoTags`.
    pub fn new(file: &Path, reference: Option<&str>) -> DockerArchiveSink {
        DockerArchiveSink {
            file: file.to_path_buf(),
            reference: reference.map(str::to_string),
            location: ImageLocation::docker_archive(file, reference),
            entry: None,
        }
    }
}

impl Sink for DockerArchiveSink {
    fn put_image(
        &mut self,
        image: &OutputImage,
        blobs: &mut dyn BlobProvider,
    ) -> Result<(), TransportError> {
        if self.entry.is_some() {
            return Err(self.one_image());
        }
        if let Some(r) = &self.reference {
            ImageRef::parse(r).map_err(|e| TransportError::Refused {
                location: self.location.to_string(),
                reason: e.to_string(),
            })?;
        }
        let mut archive = ArchiveWriter::create(&self.file, &self.location)?;
        let config_name = format!("{}.json", image.config_desc.digest.hex());
        archive.bytes(&config_name, &image.config)?;
        let mut layer_names = Vec::new();
        for layer in &image.layers {
            let name = format!("{}.tar", layer.diff_id.hex());
            if !archive.has(&name) {
                let reader = blobs.open(&layer.desc)?;
                append_uncompressed(archive.tar(), &name, layer, reader, &self.location)?;
                archive.mark(&name);
            }
            layer_names.push(name);
        }
        self.entry = Some((
            ArchiveEntry {
                config: config_name,
                repo_tags: self.reference.clone().map(|r| vec![r]),
                layers: layer_names,
            },
            image.manifest_desc.digest.clone(),
            image.config_desc.digest.clone(),
            archive,
        ));
        Ok(())
    }

    fn put_index(&mut self, _index: &[u8], _desc: &Descriptor) -> Result<(), TransportError> {
        Err(self.one_image())
    }

    fn commit(&mut self, top: &Descriptor) -> Result<Digest, TransportError> {
        let Some((entry, manifest, config, mut archive)) = self.entry.take() else {
            return Err(TransportError::Refused {
                location: self.location.to_string(),
                reason: "no image was written".into(),
            });
        };
        if manifest != top.digest {
            return Err(self.one_image());
        }
        archive.bytes("manifest.json", &to_canonical_bytes(&vec![entry]))?;
        archive.finish()?;
        Ok(config)
    }
}

impl DockerArchiveSink {
    fn one_image(&self) -> TransportError {
        TransportError::Refused {
            location: self.location.to_string(),
            reason: "a docker archive holds one image of one platform; pick a platform with `--platform`".into(),
        }
    }
}

/// Appends a layer decompressed, checking its digest, size and diff_id as it streams.
fn append_uncompressed<W: io::Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    layer: &super::OutputLayer,
    reader: BlobReader,
    location: &ImageLocation,
) -> Result<(), TransportError> {
    let verifying = crate::model::digest::VerifyingReader::new(
        reader,
        layer.desc.digest.clone(),
        Some(layer.desc.size),
    );
    let mut buffered = BufReader::with_capacity(128 * 1024, verifying);
    let head = buffered
        .fill_buf()
        .map_err(|e| TransportError::from_read(e, location))?;
    let compression = Compression::detect(head);
    let decoder = compression
        .decoder(buffered)
        .map_err(|e| TransportError::from_read(e, location))?;
    let checked = crate::model::digest::VerifyingReader::new(
        decoder,
        layer.diff_id.clone(),
        Some(layer.uncompressed_size),
    );
    let mut capture = ErrorCapture::new(checked);
    let mut h = file_header(layer.uncompressed_size);
    let result = tar.append_data(&mut h, name, &mut capture);
    if let Some(e) = capture.error.take() {
        return Err(TransportError::from_read(e, location));
    }
    result.map_err(TransportError::io("write archive member", name))
}
