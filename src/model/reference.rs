//! Registry image references as docker and skopeo take them.
//!
//! `nginx` is `docker.io/library/nginx:latest`; `host:port/ns/repo:tag`, `repo@sha256:...`
//! and `repo:tag@sha256:...` are all accepted. Invariant: a parsed [`ImageRef`] always has a
//! registry and a repository that the distribution spec allows, and at least a tag or a digest.

use std::fmt;

use super::digest::Digest;

/// The registry that short names such as `nginx` refer to.
pub const DOCKER_HUB: &str = "docker.io";

/// A reference to an image in a registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference `{input}`: {reason}")]
pub struct ReferenceError {
    /// What was given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ImageRef {
    /// Parses a docker-style reference, filling in `docker.io`, `library/` and `latest`.
    pub fn parse(input: &str) -> Result<ImageRef, ReferenceError> {
        let err = |reason: String| ReferenceError {
            input: input.to_string(),
            reason,
        };
        if input.is_empty() {
            return Err(err("the reference is empty".into()));
        }
        if input.len() > 4096 {
            return Err(err("the reference is too long".into()));
        }
        if let Some(c) = input.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(err(format!("it contains the character {c:?}")));
        }

        let (name_tag, digest) = match input.split_once('@') {
            Some((n, d)) => (
                n,
                Some(Digest::parse(d).map_err(|e| err(e.reason.to_string()))?),
            ),
            None => (input, None),
        };
        // A tag is after the last ':' that comes after the last '/'.
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&name_tag[..at], Some(&name_tag[at + 1..]))
            }
            None => (name_tag, None),
        };
        if let Some(t) = tag {
            validate_tag(t).map_err(err)?;
        }

        let (registry, path) = split_registry(name);
        if registry.is_empty() {
            return Err(err("the registry host is empty".into()));
        }
        validate_registry(registry).map_err(err)?;
        let mut repository = path.to_string();
        if repository.is_empty() {
            return Err(err("the repository name is empty".into()));
        }
        let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" {
            DOCKER_HUB
        } else {
            registry
        };
        if registry == DOCKER_HUB && !repository.contains('/') {
            repository = format!("library/{repository}");
        }
        validate_repository(&repository).map_err(err)?;

        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(ImageRef {
            registry: registry.to_string(),
            repository,
            tag,
            digest,
        })
    }

    /// A reference from parts a sender gave apart (a registry's notification names the
    /// host, the repository, the tag and the digest in fields of their own), each held to
    /// the same grammar as [`ImageRef::parse`], with no defaults filled in: at least a tag
    /// or a digest must be given.
    pub fn from_parts(
        registry: &str,
        repository: &str,
        tag: Option<&str>,
        digest: Option<Digest>,
    ) -> Result<ImageRef, ReferenceError> {
        let shown = format!(
            "{registry}/{repository}{}{}",
            tag.map(|t| format!(":{t}")).unwrap_or_default(),
            digest.as_ref().map(|d| format!("@{d}")).unwrap_or_default()
        );
        let err = |reason: String| ReferenceError {
            input: shown.chars().take(300).collect(),
            reason,
        };
        if let Some(c) = shown.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(err(format!("it contains the character {c:?}")));
        }
        if registry.is_empty() {
            return Err(err("the registry host is empty".into()));
        }
        validate_registry(registry).map_err(err)?;
        if repository.is_empty() {
            return Err(err("the repository name is empty".into()));
        }
        validate_repository(repository).map_err(err)?;
        if let Some(t) = tag {
            validate_tag(t).map_err(err)?;
        }
        if tag.is_none() && digest.is_none() {
            return Err(err("it names neither a tag nor a digest".into()));
        }
        Ok(ImageRef {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// The registry host (and port), e.g. `docker.io` or `127.0.0.1:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path, e.g. `library/nginx`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, when the reference has one.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, when the reference pins one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> ImageRef {
        ImageRef {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        }
    }

    /// The same reference with the digest its tag was resolved to (the tag kept, as a
    /// note of what was asked).
    pub fn resolved_to(&self, digest: Digest) -> ImageRef {
        ImageRef {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The same repository pinned to a digest (the tag is dropped).
    pub fn with_digest(&self, digest: Digest) -> ImageRef {
        ImageRef {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest),
        }
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// Whether the registry is on this machine (`localhost`, `127.0.0.1`, `[::1]`), where
    /// plain HTTP needs no flag.
    pub fn is_loopback(&self) -> bool {
        let host = match self.registry.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => &self.registry,
        };
        matches!(host, "localhost" | "127.0.0.1" | "[::1]")
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Splits `host[:port]/path` the way docker does: the first component is a registry when it
/// contains `.` or `:` or is `localhost`, or has uppercase letters.
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DOCKER_HUB, name),
    }
}

fn validate_registry(host: &str) -> Result<(), String> {
    let ok = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if !ok {
        return Err(format!("`{host}` is not a valid registry host"));
    }
    if let Some((_, port)) = host.rsplit_once(':') {
        if !host.starts_with('[') || host.ends_with(']') {
            // `[::1]` has colons but no port; `[::1]:5000` and `host:5000` have one.
        }
        if !host.ends_with(']') && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit())) {
            return Err(format!("`{host}` has an invalid port"));
        }
    }
    Ok(())
}

fn validate_tag(tag: &str) -> Result<(), String> {
    let valid = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "tag `{tag}` must be 1-128 characters of letters, digits, `_`, `.` and `-`, not starting with `.` or `-`"
        ))
    }
}

fn validate_repository(repo: &str) -> Result<(), String> {
    if repo.len() > 255 {
        return Err("the repository name is longer than 255 characters".into());
    }
    for component in repo.split('/') {
        if component.is_empty() {
            return Err("the repository name has an empty path component".into());
        }
        if component.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(format!("repository name `{repo}` must be lowercase"));
        }
        let bytes = component.as_bytes();
        let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
            return Err(format!(
                "path component `{component}` must start and end with a lowercase letter or digit"
            ));
        }
        // Separators: `.`, `_`, `__`, or any number of `-`.
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if alnum(b) {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && !alnum(bytes[i]) {
                i += 1;
            }
            let sep = &component[start..i];
            let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
            if !ok {
                return Err(format!(
                    "path component `{component}` has the invalid separator `{sep}` (only `.`, `_`, `__` and `-` are allowed)"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(s: &str) -> String {
        ImageRef::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(parsed("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(parsed("nginx:1.27"), "docker.io/library/nginx:1.27");
        assert_eq!(parsed("bitnami/nginx"), "docker.io/bitnami/nginx:latest");
        assert_eq!(
            parsed("index.docker.io/nginx"),
            "docker.io/library/nginx:latest"
        );
        assert_eq!(parsed("localhost/app"), "localhost/app:latest");
        assert_eq!(
            parsed("127.0.0.1:5000/ns/app:v1"),
            "127.0.0.1:5000/ns/app:v1"
        );
        assert_eq!(parsed("ghcr.io/a/b/c:1.0-rc.1"), "ghcr.io/a/b/c:1.0-rc.1");
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            parsed(&format!("nginx@{d}")),
            format!("docker.io/library/nginx@{d}")
        );
        assert_eq!(
            parsed(&format!("nginx:1@{d}")),
            format!("docker.io/library/nginx:1@{d}")
        );
        assert_eq!(parsed("[::1]:5000/app"), "[::1]:5000/app:latest");
    }

    #[test]
    fn loopback_hosts() {
        for s in [
            "localhost:5000/a",
            "127.0.0.1:1/a",
            "[::1]:5000/a",
            "localhost/a",
        ] {
            assert!(ImageRef::parse(s).unwrap().is_loopback(), "{s}");
        }
        assert!(!ImageRef::parse("example.com/a").unwrap().is_loopback());
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "library/Nginx",
            "nginx:",
            "nginx:-bad",
            "nginx@sha256:abc",
            "a//b",
            "a b",
            "example.com:port/app",
            "app-/x",
            "x/a..b",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} should fail");
        }
        let e = ImageRef::parse("example.com/MyApp").unwrap_err();
        assert!(e.to_string().contains("must be lowercase"), "{e}");
    }
}
