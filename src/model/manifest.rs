//! Manifests, indexes and descriptors (OCI and Docker schema 2), parsed from raw bytes.
//!
//! Parsing keeps the raw bytes' meaning but not their form: unroot writes manifests from
//! these structs, whose fields serialize in a fixed order, so output digests are stable.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::media;

/// A content descriptor: what a manifest says about a blob.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The blob's media type.
    pub media_type: String,
    /// The blob's digest.
    pub digest: Digest,
    /// The blob's size in bytes.
    pub size: u64,
    /// Alternative download locations (foreign layers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The platform, for entries of an index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// The artifact type, for artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// A descriptor with only the required fields.
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            urls: None,
            annotations: BTreeMap::new(),
            platform: None,
            artifact_type: None,
        }
    }
}

/// An image's platform.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture, e.g. `amd64`.
    pub architecture: String,
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// OS version (Windows).
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// OS features (Windows).
    #[serde(
        rename = "os.features",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_features: Option<Vec<String>>,
    /// CPU variant, e.g. `v8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// Why a `--platform` value does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid platform `{0}`: expected `os/arch` or `os/arch/variant`, e.g. `linux/arm64`")]
pub struct PlatformParseError(pub String);

impl Platform {
    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Platform, PlatformParseError> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &&str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(ok) {
            return Err(PlatformParseError(s.to_string()));
        }
        Ok(Platform {
            os: parts[0].to_string(),
            architecture: parts[1].to_string(),
            os_version: None,
            os_features: None,
            variant: parts.get(2).map(|v| v.to_string()),
        })
    }

    /// Whether an index entry with platform `self` satisfies the `wanted` platform: same OS
    /// and architecture, and the same variant when one is wanted.
    pub fn satisfies(&self, wanted: &Platform) -> bool {
        self.os == wanted.os
            && self.architecture == wanted.architecture
            && match &wanted.variant {
                None => true,
                Some(v) => {
                    self.variant
                        .as_deref()
                        .unwrap_or(default_variant(&self.architecture))
                        == v
                }
            }
    }
}

fn default_variant(arch: &str) -> &'static str {
    match arch {
        "arm64" => "v8",
        "arm" => "v7",
        _ => "",
    }
}

impl Default for Platform {
    fn default() -> Platform {
        Platform::parse("linux/amd64").expect("valid")
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest's media type (OCI allows leaving it out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The artifact type, for artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The image config.
    pub config: Descriptor,
    /// The layers, base first.
    pub layers: Vec<Descriptor>,
    /// The manifest this one refers to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image index or Docker manifest list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    /// Always 2.
    pub schema_version: u32,
    /// The index's media type (OCI allows leaving it out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The manifests, one per platform (and attestations).
    pub manifests: Vec<Descriptor>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A parsed manifest of either kind.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // One lives at a time; boxing would only add noise.
pub enum Manifest {
    /// A single-platform image.
    Image(ImageManifest),
    /// An index of images.
    Index(ImageIndex),
}

/// Why manifest bytes cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Docker schema 1, deprecated since 2017 and refused.
    #[error("the manifest is Docker schema 1, which unroot does not convert")]
    Schema1,
    /// Not a manifest type unroot knows.
    #[error("unsupported manifest media type `{0}`")]
    UnsupportedMediaType(String),
    /// Not JSON, or JSON of the wrong shape.
    #[error("the manifest is not valid: {0}")]
    Invalid(String),
}

impl Manifest {
    /// Parses manifest bytes; `content_type` is what the transport said, if anything.
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, ManifestError> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Invalid(e.to_string()))?;
        let obj = value
            .as_object()
            .ok_or_else(|| ManifestError::Invalid("expected a JSON object".into()))?;
        if obj.get("schemaVersion").and_then(|v| v.as_u64()) == Some(1) {
            return Err(ManifestError::Schema1);
        }
        let declared = obj
            .get("mediaType")
            .and_then(|v| v.as_str())
            .or(content_type.filter(|c| !c.is_empty() && *c != "application/json"));
        let is_index = match declared {
            Some(media::OCI_INDEX) | Some(media::DOCKER_MANIFEST_LIST) => true,
            Some(media::OCI_MANIFEST) | Some(media::DOCKER_MANIFEST) => false,
            Some(media::DOCKER_SCHEMA1) | Some(media::DOCKER_SCHEMA1_SIGNED) => {
                return Err(ManifestError::Schema1)
            }
            Some(other) => return Err(ManifestError::UnsupportedMediaType(other.to_string())),
            None => obj.contains_key("manifests"),
        };
        let invalid = |e: serde_json::Error| ManifestError::Invalid(e.to_string());
        if is_index {
            let index: ImageIndex = serde_json::from_value(value).map_err(invalid)?;
            Ok(Manifest::Index(index))
        } else {
            let manifest: ImageManifest = serde_json::from_value(value).map_err(invalid)?;
            if manifest.schema_version != 2 {
                return Err(ManifestError::Invalid(format!(
                    "schemaVersion {} is not 2",
                    manifest.schema_version
                )));
            }
            Ok(Manifest::Image(manifest))
        }
    }
}

impl ImageManifest {
    /// Whether the manifest uses Docker media types.
    pub fn is_docker(&self) -> bool {
        self.media_type.as_deref() == Some(media::DOCKER_MANIFEST)
    }
}

impl ImageIndex {
    /// Whether an entry is an attestation or other non-image artifact (buildx writes these
    /// with platform `unknown/unknown`).
    pub fn is_attestation(d: &Descriptor) -> bool {
        d.annotations.contains_key("vnd.docker.reference.type")
            || d.platform
                .as_ref()
                .is_some_and(|p| p.os == "unknown" && p.architecture == "unknown")
    }

    /// The platforms of the image entries, for messages.
    pub fn platforms(&self) -> Vec<String> {
        self.manifests
            .iter()
            .filter(|d| !Self::is_attestation(d))
            .map(|d| {
                d.platform
                    .as_ref()
                    .map_or_else(|| "(no platform)".to_string(), |p| p.to_string())
            })
            .collect()
    }

    /// The first image entry that satisfies `wanted`.
    pub fn select(&self, wanted: &Platform) -> Option<&Descriptor> {
        self.manifests.iter().find(|d| {
            !Self::is_attestation(d) && d.platform.as_ref().is_some_and(|p| p.satisfies(wanted))
        })
    }
}

/// Serializes a manifest or index compactly; field order is fixed by the structs, so the
/// same value always gives the same bytes.
pub fn to_canonical_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("manifests always serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_manifest_without_media_type() {
        let raw = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{}","digest":"{D}","size":2}},"layers":[]}}"#,
            media::OCI_CONFIG
        );
        let m = Manifest::parse(raw.as_bytes(), None).unwrap();
        assert!(matches!(m, Manifest::Image(_)));
    }

    #[test]
    fn parses_index_and_selects_platform() {
        let raw = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[
              {{"mediaType":"{m}","digest":"{D}","size":1,"platform":{{"architecture":"arm64","os":"linux"}}}},
              {{"mediaType":"{m}","digest":"{D}","size":2,"platform":{{"architecture":"amd64","os":"linux"}}}},
              {{"mediaType":"{m}","digest":"{D}","size":3,"platform":{{"architecture":"unknown","os":"unknown"}}}}]}}"#,
            media::DOCKER_MANIFEST_LIST,
            m = media::DOCKER_MANIFEST
        );
        let Manifest::Index(index) = Manifest::parse(raw.as_bytes(), None).unwrap() else {
            panic!("expected an index")
        };
        assert_eq!(index.select(&Platform::default()).unwrap().size, 2);
        assert_eq!(
            index
                .select(&Platform::parse("linux/arm64/v8").unwrap())
                .unwrap()
                .size,
            1
        );
        assert!(index
            .select(&Platform::parse("linux/s390x").unwrap())
            .is_none());
        assert_eq!(index.platforms(), vec!["linux/arm64", "linux/amd64"]);
    }

    #[test]
    fn refuses_schema1() {
        let raw = br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        assert_eq!(Manifest::parse(raw, None), Err(ManifestError::Schema1));
        assert_eq!(
            Manifest::parse(b"{}", Some(media::DOCKER_SCHEMA1_SIGNED)),
            Err(ManifestError::Schema1)
        );
    }

    #[test]
    fn platform_parsing() {
        assert_eq!(
            Platform::parse("linux/arm/v7").unwrap().to_string(),
            "linux/arm/v7"
        );
        for bad in ["linux", "linux//x", "linux/arm/v7/extra", "linux/a b"] {
            assert_eq!(
                Platform::parse(bad),
                Err(PlatformParseError(bad.to_string()))
            );
        }
    }
}
