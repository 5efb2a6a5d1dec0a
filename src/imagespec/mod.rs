//! Builds images from a declarative spec (TOML): the fixtures of the tests and golden
//! images, and the generated images of the benchmarks. Entries are written in the order
//! given (so tests can put whiteouts after files, or hostile names), with explicit
//! metadata, so the same spec always gives the same digests.
//!
//! ```toml
//! [image]
//! format = "oci"            # or "docker" (Docker media types)
//! created = "2024-01-01T00:00:00Z"
//!
//! [config]
//! User = "app"
//! Env = ["PORT=80"]
//! ExposedPorts = ["80/tcp"]
//! Volumes = ["/data"]
//! Cmd = ["/app/server"]
//!
//! [[layer]]
//! compression = "gzip"      # "gzip", "zstd" or "none"
//! [[layer.entry]]
//! path = "/app/server"
//! text = "#!/bin/sh\n"
//! mode = 0o755
//! uid = 1000
//! gid = 1000
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::model::manifest::to_canonical_bytes;
use crate::model::{media, Descriptor, Digest, ImageLocation, ImageManifest};

mod layers;

use crate::transport::{self, BlobProvider, BlobReader, OutputImage, OutputLayer, TransportError};
use layers::write_layer;
pub use layers::Noise;

/// A whole image spec.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// Image-level settings.
    #[serde(default)]
    pub image: ImageSection,
    /// The config's `config` object, as JSON-like values (`ExposedPorts` and `Volumes` may be
    /// given as lists).
    #[serde(default)]
    pub config: BTreeMap<String, toml::Value>,
    /// The layers, base first.
    #[serde(default, rename = "layer")]
    pub layers: Vec<LayerSpec>,
}

/// `[image]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSection {
    /// `oci` or `docker`.
    #[serde(default = "default_format")]
    pub format: String,
    /// `architecture`.
    #[serde(default = "default_arch")]
    pub architecture: String,
    /// `os`.
    #[serde(default = "default_os")]
    pub os: String,
    /// `created`.
    #[serde(default)]
    pub created: Option<String>,
    /// Manifest annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl Default for ImageSection {
    fn default() -> Self {
        ImageSection {
            format: default_format(),
            architecture: default_arch(),
            os: default_os(),
            created: None,
            annotations: BTreeMap::new(),
        }
    }
}

fn default_format() -> String {
    "oci".into()
}
fn default_arch() -> String {
    "amd64".into()
}
fn default_os() -> String {
    "linux".into()
}

/// `[[layer]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerSpec {
    /// `gzip` (default), `zstd` or `none`.
    #[serde(default = "default_compression")]
    pub compression: String,
    /// Write each gzip'd entry group as its own gzip member (tests multi-member gzip).
    #[serde(default)]
    pub multi_member: bool,
    /// The entries, in tar order.
    #[serde(default, rename = "entry")]
    pub entries: Vec<EntrySpec>,
    /// The layer's tar, copied from a file on this machine (one that another tool wrote,
    /// such as GNU tar's sparse entries), instead of entries.
    #[serde(default)]
    pub tar: Option<PathBuf>,
}

fn default_compression() -> String {
    "gzip".into()
}

/// `[[layer.entry]]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EntrySpec {
    /// The path (a leading `/` is dropped unless `raw` is set).
    pub path: String,
    /// `file` (default), `dir`, `symlink`, `hardlink`, `whiteout`, `opaque`, `fifo`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// File content as text.
    #[serde(default)]
    pub text: Option<String>,
    /// File content as base64 (for bytes that are not UTF-8).
    #[serde(default)]
    pub base64: Option<String>,
    /// File content copied from a file on this machine.
    #[serde(default)]
    pub host: Option<PathBuf>,
    /// File content: this many deterministic pseudo-random bytes.
    #[serde(default)]
    pub size: Option<u64>,
    /// Seed for generated content.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Link target (symlinks and hard links).
    #[serde(default)]
    pub target: Option<String>,
    /// Permission bits [default: 0o644 files, 0o755 directories, 0o777 symlinks].
    #[serde(default)]
    pub mode: Option<u32>,
    /// Owner [default 0].
    #[serde(default)]
    pub uid: u64,
    /// Group [default 0].
    #[serde(default)]
    pub gid: u64,
    /// Extended attributes, values in base64.
    #[serde(default)]
    pub xattrs: BTreeMap<String, String>,
    /// Write the name exactly as given (for hostile-input tests).
    #[serde(default)]
    pub raw: bool,
}

/// Why a spec cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The TOML does not parse.
    #[error("spec `{path}`: {message}")]
    Parse {
        /// The spec file.
        path: String,
        /// The parser's message (with line and column).
        message: String,
    },
    /// An entry is inconsistent.
    #[error("spec entry `{path}`: {message}")]
    Entry {
        /// The entry path.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// Writing the image failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
}

impl ImageSpec {
    /// Parses a spec from TOML text; `name` is used in messages.
    pub fn parse(text: &str, name: &str) -> Result<ImageSpec, SpecError> {
        toml::from_str(text).map_err(|e| SpecError::Parse {
            path: name.to_string(),
            message: e.to_string(),
        })
    }

    /// Reads and parses a spec file.
    pub fn load(path: &Path) -> Result<ImageSpec, SpecError> {
        let text = std::fs::read_to_string(path)?;
        ImageSpec::parse(&text, &path.display().to_string())
    }

    /// Builds the image and writes it to `destination` (any transport).
    pub fn build(&self, destination: &ImageLocation) -> Result<Digest, SpecError> {
        let work = tempfile::tempdir()?;
        let docker = self.image.format == "docker";
        let mut layers = Vec::new();
        let mut files = BTreeMap::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let path = work.path().join(format!("layer{i}"));
            let (desc, diff_id, usize) = write_layer(layer, &path, docker)?;
            files.insert(desc.digest.clone(), path);
            layers.push(OutputLayer {
                desc,
                diff_id,
                uncompressed_size: usize,
            });
        }
        let config = self.config_json(&layers)?;
        let config_bytes = serde_json::to_vec(&config).expect("JSON values serialize");
        let config_desc = Descriptor::new(
            if docker {
                media::DOCKER_CONFIG
            } else {
                media::OCI_CONFIG
            },
            Digest::sha256_of(&config_bytes),
            config_bytes.len() as u64,
        );
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(
                if docker {
                    media::DOCKER_MANIFEST
                } else {
                    media::OCI_MANIFEST
                }
                .to_string(),
            ),
            artifact_type: None,
            config: config_desc.clone(),
            layers: layers.iter().map(|l| l.desc.clone()).collect(),
            subject: None,
            annotations: self.image.annotations.clone(),
        };
        let manifest_bytes = to_canonical_bytes(&manifest);
        let manifest_desc = Descriptor::new(
            manifest.media_type.as_deref().expect("set above"),
            Digest::sha256_of(&manifest_bytes),
            manifest_bytes.len() as u64,
        );
        let image = OutputImage {
            manifest: manifest_bytes,
            manifest_desc,
            config: config_bytes,
            config_desc,
            layers,
        };
        let mut sink = transport::open_sink(
            destination,
            &Default::default(),
            &crate::control::Control::silent(),
        )?;
        let mut provider = Files {
            files,
            origin: ImageLocation::OciLayout {
                dir: work.path().to_path_buf(),
                tag: None,
            },
        };
        Ok(sink.write(&image, &mut provider)?)
    }

    fn config_json(&self, layers: &[OutputLayer]) -> Result<serde_json::Value, SpecError> {
        let mut exec = serde_json::Map::new();
        for (k, v) in &self.config {
            let json = serde_json::to_value(v).map_err(|e| SpecError::Entry {
                path: format!("config.{k}"),
                message: e.to_string(),
            })?;
            let json = match (k.as_str(), json) {
                ("ExposedPorts" | "Volumes", serde_json::Value::Array(items)) => {
                    serde_json::Value::Object(
                        items
                            .into_iter()
                            .filter_map(|i| {
                                i.as_str().map(|s| (s.to_string(), serde_json::json!({})))
                            })
                            .collect(),
                    )
                }
                (_, json) => json,
            };
            exec.insert(k.clone(), json);
        }
        let created = self
            .image
            .created
            .clone()
            .unwrap_or_else(|| "2024-01-01T00:00:00Z".into());
        let history: Vec<serde_json::Value> = (0..layers.len())
            .map(|i| serde_json::json!({"created": created, "created_by": format!("imagespec layer {i}")}))
            .collect();
        Ok(serde_json::json!({
            "created": created,
            "architecture": self.image.architecture,
            "os": self.image.os,
            "config": exec,
            "rootfs": {
                "type": "layers",
                "diff_ids": layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>(),
            },
            "history": history,
        }))
    }
}

struct Files {
    files: BTreeMap<Digest, PathBuf>,
    origin: ImageLocation,
}

impl BlobProvider for Files {
    fn open(&mut self, desc: &Descriptor) -> Result<BlobReader, TransportError> {
        let path = &self.files[&desc.digest];
        Ok(Box::new(
            File::open(path).map_err(TransportError::io("open", path))?,
        ))
    }

    fn origin(&self) -> &ImageLocation {
        &self.origin
    }
}

/// Reads back a spec-built layout's blob list, for tests that corrupt blobs on purpose.
pub fn blob_file(layout: &Path, digest: &Digest) -> PathBuf {
    layout.join(transport::blobstore::blob_path(digest))
}
