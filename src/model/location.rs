//! Where an image lives: a transport and its address, as skopeo spells them.
//!
//! `docker://REF` (the default when no transport is given), `oci:DIR[:TAG]`,
//! `oci-archive:FILE[:TAG]` and `docker-archive:FILE[:REF]`.

use std::fmt;
use std::path::{Path, PathBuf};

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

/// Directory names that say what a directory is, not which image it holds.
const GENERIC_DIRS: [&str; 5] = ["image", "layout", "oci", "oci-layout", "img"];

/// The part of a local path (or a repository) that names the image: its last component,
/// or for a directory named for what it is (`.../nginx/image`), the one that holds it.
pub fn naming_part(path: &str) -> &str {
    let mut parts = path.trim_end_matches('/').rsplit('/');
    let mut base = parts.next().unwrap_or(path);
    while GENERIC_DIRS.contains(&base) {
        match parts.next() {
            Some(p) if !p.is_empty() && p != "." && p != ".." => base = p,
            _ => break,
        }
    }
    base
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
    /// What looks like a transport unroot has, misspelt (`ocii:x`, `oci-arch:f.tar`).
    #[error("unknown transport `{transport}:` in `{input}`; did you mean `{suggestion}:`?")]
    MisspeltTransport {
        /// The whole argument.
        input: String,
        /// The transport name as typed.
        transport: String,
        /// The transport it is closest to.
        suggestion: &'static str,
    },
    /// A local path given without a transport.
    #[error("`{input}` is a local {what}, not a registry reference: write it as {suggestion}")]
    LocalPath {
        /// The whole argument.
        input: String,
        /// `directory` or `file`.
        what: &'static str,
        /// How to write it (`oci:PATH`).
        suggestion: String,
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

/// The transport `scheme` is a slip of, if any: one edit from `oci`, two from the longer
/// names, or a cut-short `oci-archive`/`docker-archive`; `docker` only before `//`
/// (`docker:24` is the Docker Hub image, and a real image named like a slip is written
/// `docker://NAME:TAG`).
fn misspelt_transport(scheme: &str, rest: &str) -> Option<&'static str> {
    const NAMES: [&str; 4] = ["oci", "oci-archive", "docker-archive", "docker"];
    if NAMES.contains(&scheme) || scheme.len() < 3 {
        return None;
    }
    NAMES.into_iter().find(|name| {
        let allowed = if name.len() <= 3 { 1 } else { 2 };
        let close = edit_distance(scheme, name) <= allowed;
        match *name {
            "docker" => close && rest.starts_with("//"),
            "oci" => close,
            _ => close || (scheme.len() >= 5 && name.starts_with(scheme)),
        }
    })
}

/// Levenshtein distance, on bytes (transport names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// A path on this machine written without a transport: one that starts like a path
/// (`/`, `./`, `../`, `~/`), or a directory holding an OCI layout, or a `.tar` file that
/// exists.
fn local_path(input: &str) -> Option<LocationError> {
    let starts_like_path = ["/", "./", "../", "~/"]
        .iter()
        .any(|p| input.starts_with(p));
    let path = std::path::Path::new(input);
    let is_layout = path.join("oci-layout").is_file();
    let is_tar = input.ends_with(".tar") && path.is_file();
    if !(starts_like_path || is_layout || is_tar) {
        return None;
    }
    let (what, suggestion) = if path.is_dir() || !input.ends_with(".tar") {
        ("directory", format!("`oci:{input}`"))
    } else {
        (
            "file",
            format!("`oci-archive:{input}` or `docker-archive:{input}`"),
        )
    };
    Some(LocationError::LocalPath {
        input: input.to_string(),
        what,
        suggestion,
    })
}

impl ImageLocation {
    /// `oci:DIR[:TAG]`.
    pub fn oci_layout(dir: &Path, tag: Option<&str>) -> ImageLocation {
        let (dir, tag) = (dir.to_path_buf(), tag.map(str::to_string));
        ImageLocation::OciLayout { dir, tag }
    }

    /// `oci-archive:FILE[:TAG]`.
    pub fn oci_archive(file: &Path, tag: Option<&str>) -> ImageLocation {
        let (file, tag) = (file.to_path_buf(), tag.map(str::to_string));
        ImageLocation::OciArchive { file, tag }
    }

    /// `docker-archive:FILE[:REF]`.
    pub fn docker_archive(file: &Path, reference: Option<&str>) -> ImageLocation {
        let (file, reference) = (file.to_path_buf(), reference.map(str::to_string));
        ImageLocation::DockerArchive { file, reference }
    }

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
            if !scheme.contains(['.', '/']) {
                if let Some(suggestion) = misspelt_transport(scheme, rest) {
                    return Err(LocationError::MisspeltTransport {
                        input: input.to_string(),
                        transport: scheme.to_string(),
                        suggestion,
                    });
                }
            }
            let looks_like_transport = FOREIGN_TRANSPORTS.contains(&scheme)
                || (rest.starts_with("//") && !scheme.contains(['.', '/']));
            if looks_like_transport {
                return Err(LocationError::UnknownTransport {
                    input: input.to_string(),
                    transport: scheme.to_string(),
                });
            }
        }
        if let Some(local) = local_path(input) {
            return Err(local);
        }
        Ok(ImageLocation::Registry(ImageRef::parse(input)?))
    }

    /// Whether the image is in a local file or directory, not a registry.
    pub fn is_local(&self) -> bool {
        !matches!(self, ImageLocation::Registry(_))
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
        match ImageLocation::parse("localhost:5000/app") {
            Ok(ImageLocation::Registry(r)) => {
                assert_eq!((r.registry(), r.repository()), ("localhost:5000", "app"));
                assert_eq!(r.tag(), Some("latest"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn slips_of_transports_are_named_and_images_are_not_mistaken_for_them() {
        for (input, want) in [
            ("ocii:x", "oci"),
            ("dokcer://r.example/a:1", "docker"),
            ("oci-arch:f.tar", "oci-archive"),
            ("oci-achive:f.tar", "oci-archive"),
            ("docker-archiv:f.tar", "docker-archive"),
            ("dockr-archive:f.tar", "docker-archive"),
        ] {
            match ImageLocation::parse(input) {
                Err(LocationError::MisspeltTransport { suggestion, .. }) => {
                    assert_eq!(suggestion, want, "{input}")
                }
                other => panic!("{input}: {other:?}"),
            }
        }
        for image in [
            "nginx:1.27",
            "docker:24",
            "redis:7",
            "ocaml:5",
            "dockerd:1",
            "alpine:3",
        ] {
            assert!(
                matches!(ImageLocation::parse(image), Ok(ImageLocation::Registry(_))),
                "{image}"
            );
        }
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "oci"), 3);
    }

    #[test]
    fn local_paths_without_a_transport_say_how_to_write_them() {
        let dir = tempfile::tempdir().unwrap();
        let layout = dir.path().join("img");
        std::fs::create_dir(&layout).unwrap();
        std::fs::write(layout.join("oci-layout"), "{}").unwrap();
        let input = layout.display().to_string();
        let e = ImageLocation::parse(&input).unwrap_err().to_string();
        assert_eq!(
            e,
            format!("`{input}` is a local directory, not a registry reference: write it as `oci:{input}`")
        );
        let e = ImageLocation::parse("./out.tar").unwrap_err().to_string();
        assert!(
            e.ends_with("write it as `oci-archive:./out.tar` or `docker-archive:./out.tar`"),
            "{e}"
        );
        let e = ImageLocation::parse("../layout").unwrap_err().to_string();
        assert!(e.ends_with("write it as `oci:../layout`"), "{e}");
    }
}
