//! Where an image lives: a transport and its address, as skopeo spells them.
//!
//! `docker://REF` (the default when no transport is given), `oci:DIR[:TAG]`,
//! `oci-archive:FILE[:TAG]` and `docker-archive:FILE[:REF]`.

use std::fmt;
use std::path::PathBuf;

use super::reference::{ImageRef, ReferenceError};

/// An image location with its transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageLocation {
    /// An image in a registry.
    Registry(ImageRef),
    /// An image in an OCI image layout directory, selected by its `ref.name` tag.
    OciLayout {
        /// The layout directory.
        dir: PathBuf,
        /// The tag (`org.opencontainers.image.ref.name`); without one, the layout's only image.
        tag: Option<String>,
    },
    /// An OCI image layout packed into a tar file.
    OciArchive {
        /// The archive file.
        file: PathBuf,
        /// As for [`ImageLocation::OciLayout`].
        tag: Option<String>,
    },
    /// A tar file as `docker save` writes and `docker load` reads.
    DockerArchive {
        /// The archive file.
        file: PathBuf,
        /// A `repo:tag` the archive lists (reading), or the tag to record (writing).
        reference: Option<String>,
    },
}

/// Why a location string cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    /// A `name:` prefix that is a transport unroot does not read or write.
    #[error("unknown transport `{transport}:` in `{input}`")]
    UnknownTransport {
        /// The whole argument.
        input: String,
        /// The transport name.
        transport: String,
    },
    /// A path-based transport without a path.
    #[error("`{input}` names no path after `{transport}:`")]
    MissingPath {
        /// The whole argument.
        input: String,
        /// The transport name.
        transport: &'static str,
    },
    /// A registry reference that does not parse.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
}

/// Transports that skopeo knows but unroot does not; named so that the error is clear
/// rather than a confusing reference parse error.
const FOREIGN_TRANSPORTS: &[&str] = &[
    "dir",
    "docker-daemon",
    "containers-storage",
    "ostree",
    "sif",
    "tarball",
    "http",
    "https",
    "file",
];

impl ImageLocation {
    /// Parses `transport:address`; no transport means a registry reference.
    pub fn parse(input: &str) -> Result<ImageLocation, LocationError> {
        if let Some(rest) = input.strip_prefix("docker://") {
            return Ok(ImageLocation::Registry(ImageRef::parse(rest)?));
        }
        let path_and_tag = |transport: &'static str, rest: &str| {
            let (path, tag) = match rest.split_once(':') {
                Some((p, t)) => (p, Some(t.to_string()).filter(|t| !t.is_empty())),
                None => (rest, None),
            };
            if path.is_empty() {
                return Err(LocationError::MissingPath {
                    input: input.to_string(),
                    transport,
                });
            }
            Ok((PathBuf::from(path), tag))
        };
        if let Some(rest) = input.strip_prefix("oci:") {
            let (dir, tag) = path_and_tag("oci", rest)?;
            return Ok(ImageLocation::OciLayout { dir, tag });
        }
        if let Some(rest) = input.strip_prefix("oci-archive:") {
            let (file, tag) = path_and_tag("oci-archive", rest)?;
            return Ok(ImageLocation::OciArchive { file, tag });
        }
        if let Some(rest) = input.strip_prefix("docker-archive:") {
            let (file, reference) = path_and_tag("docker-archive", rest)?;
            return Ok(ImageLocation::DockerArchive { file, reference });
        }
        if let Some((scheme, rest)) = input.split_once(':') {
            let looks_like_transport = FOREIGN_TRANSPORTS.contains(&scheme)
                || (rest.starts_with("//") && !scheme.contains(['.', '/']));
            if looks_like_transport {
                return Err(LocationError::UnknownTransport {
                    input: input.to_string(),
                    transport: scheme.to_string(),
                });
            }
        }
        Ok(ImageLocation::Registry(ImageRef::parse(input)?))
    }

    /// The transport's name as the user types it.
    pub fn transport(&self) -> &'static str {
        match self {
            ImageLocation::Registry(_) => "docker",
            ImageLocation::OciLayout { .. } => "oci",
            ImageLocation::OciArchive { .. } => "oci-archive",
            ImageLocation::DockerArchive { .. } => "docker-archive",
        }
    }
}

impl fmt::Display for ImageLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let with_tag = |f: &mut fmt::Formatter<'_>, t: &str, p: &PathBuf, tag: &Option<String>| {
            write!(f, "{t}:{}", p.display())?;
            if let Some(tag) = tag {
                write!(f, ":{tag}")?;
            }
            Ok(())
        };
        match self {
            ImageLocation::Registry(r) => write!(f, "docker://{r}"),
            ImageLocation::OciLayout { dir, tag } => with_tag(f, "oci", dir, tag),
            ImageLocation::OciArchive { file, tag } => with_tag(f, "oci-archive", file, tag),
            ImageLocation::DockerArchive { file, reference } => {
                with_tag(f, "docker-archive", file, reference)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_transports() {
        assert_eq!(
            ImageLocation::parse("nginx").unwrap().to_string(),
            "docker://docker.io/library/nginx:latest"
        );
        assert_eq!(
            ImageLocation::parse("docker://localhost:5000/a:b")
                .unwrap()
                .to_string(),
            "docker://localhost:5000/a:b"
        );
        assert_eq!(
            ImageLocation::parse("oci:/tmp/x:v1").unwrap(),
            ImageLocation::OciLayout {
                dir: "/tmp/x".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            ImageLocation::parse("oci:out").unwrap(),
            ImageLocation::OciLayout {
                dir: "out".into(),
                tag: None
            }
        );
        assert_eq!(
            ImageLocation::parse("docker-archive:a.tar:app:1").unwrap(),
            ImageLocation::DockerArchive {
                file: "a.tar".into(),
                reference: Some("app:1".into())
            }
        );
        assert!(matches!(
            ImageLocation::parse("oci-archive:a.tar").unwrap(),
            ImageLocation::OciArchive { tag: None, .. }
        ));
    }

    #[test]
    fn rejects_unknown_transports_and_empty_paths() {
        for input in ["dir:/tmp/x", "containers-storage:nginx", "s3://bucket/x"] {
            assert!(
                matches!(
                    ImageLocation::parse(input),
                    Err(LocationError::UnknownTransport { .. })
                ),
                "{input}"
            );
        }
        assert!(matches!(
            ImageLocation::parse("oci:"),
            Err(LocationError::MissingPath { .. })
        ));
        // A registry with a port is not a transport.
        assert!(ImageLocation::parse("localhost:5000/app").is_ok());
    }
}
