//! Registry credentials: `--creds`, auth files (podman's and docker's) and credential
//! helpers. Secrets never appear in `Debug` output, messages or logs.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use serde_json::Value;

/// A user name and password (or token).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or token.
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Credentials {{ username: {:?}, password: <redacted> }}",
            self.username
        )
    }
}

/// Why credentials could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// `--creds` is not `USER:PASS`.
    #[error("`--creds` must be `USER:PASSWORD`")]
    BadCreds,
    /// An auth file is not valid JSON.
    #[error("auth file `{path}` is not valid: {reason}")]
    BadFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A credential helper failed.
    #[error("credential helper `docker-credential-{helper}` failed for {registry}: {reason}")]
    Helper {
        /// The helper's name.
        helper: String,
        /// The registry asked for.
        registry: String,
        /// Why.
        reason: String,
    },
}

/// The user name that marks the password as an identity token (OAuth2 refresh token), as
/// credential helpers return them.
pub const IDENTITY_TOKEN_USER: &str = "<token>";

impl Credentials {
    /// Whether the password is an identity token rather than a password.
    pub fn is_identity_token(&self) -> bool {
        self.username == IDENTITY_TOKEN_USER
    }

    /// Parses `USER:PASSWORD` as given to `--creds`.
    pub fn parse(s: &str) -> Result<Credentials, AuthError> {
        match s.split_once(':') {
            Some((u, p)) if !u.is_empty() => Ok(Credentials {
                username: u.to_string(),
                password: p.to_string(),
            }),
            _ => Err(AuthError::BadCreds),
        }
    }
}

/// Where a session gets the credentials for a registry: asked once per registry and
/// repository an image is read from or written to, so that a source and a destination can
/// have different credentials.
pub trait CredentialsProvider: Send + Sync {
    /// The credentials for `repository` on `registry`; `Ok(None)` to go without.
    fn credentials(
        &self,
        registry: &str,
        repository: &str,
    ) -> Result<Option<Credentials>, AuthError>;
}

/// What a person at the command line has: `--creds` for every registry when given,
/// else the auth files and credential helpers (see [`auth_files`]).
#[derive(Clone, Debug, Default)]
pub struct UserCredentials {
    /// `--creds USER:PASSWORD`.
    pub creds: Option<Credentials>,
}

impl CredentialsProvider for UserCredentials {
    fn credentials(
        &self,
        registry: &str,
        repository: &str,
    ) -> Result<Option<Credentials>, AuthError> {
        match &self.creds {
            Some(c) => Ok(Some(c.clone())),
            None => lookup(registry, repository),
        }
    }
}

/// Credentials set per registry host, as a service's configuration gives them; registries
/// not listed get none.
#[derive(Clone, Debug, Default)]
pub struct RegistryCredentials {
    by_registry: std::collections::BTreeMap<String, Credentials>,
}

impl RegistryCredentials {
    /// No credentials for any registry.
    pub fn new() -> RegistryCredentials {
        RegistryCredentials::default()
    }

    /// Adds the credentials of `registry` (`host[:port]`).
    pub fn with(mut self, registry: &str, creds: Credentials) -> RegistryCredentials {
        self.by_registry.insert(registry.to_string(), creds);
        self
    }
}

impl CredentialsProvider for RegistryCredentials {
    fn credentials(
        &self,
        registry: &str,
        _repository: &str,
    ) -> Result<Option<Credentials>, AuthError> {
        Ok(self.by_registry.get(registry).cloned())
    }
}

/// The auth files to consult, in order: `$REGISTRY_AUTH_FILE`,
/// `$XDG_RUNTIME_DIR/containers/auth.json`, `~/.config/containers/auth.json`,
/// `$DOCKER_CONFIG/config.json` (or `~/.docker/config.json`).
pub fn auth_files() -> Vec<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let home = env("HOME");
    let mut files = Vec::new();
    if let Some(f) = env("REGISTRY_AUTH_FILE") {
        files.push(f);
    }
    if let Some(d) = env("XDG_RUNTIME_DIR") {
        files.push(d.join("containers/auth.json"));
    }
    if let Some(h) = &home {
        files.push(h.join(".config/containers/auth.json"));
    }
    match (env("DOCKER_CONFIG"), &home) {
        (Some(d), _) => files.push(d.join("config.json")),
        (None, Some(h)) => files.push(h.join(".docker/config.json")),
        (None, None) => {}
    }
    files
}

/// The server names an auth file may use for a registry, most specific first:
/// `host/repo/path`, ..., `host`, and docker's legacy URL for Docker Hub.
fn candidate_keys(registry: &str, repository: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut path = format!("{registry}/{repository}");
    loop {
        keys.push(path.clone());
        match path.rsplit_once('/') {
            Some((head, _)) => path = head.to_string(),
            None => break,
        }
    }
    if registry == "docker.io" {
        keys.push("index.docker.io".into());
        keys.push("registry-1.docker.io".into());
    }
    keys
}

/// Normalizes an auth file key: no scheme, no `/v1/` or `/v2/` suffix.
fn normalize_key(key: &str) -> String {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let k = k
        .strip_suffix("/v1")
        .or_else(|| k.strip_suffix("/v2"))
        .unwrap_or(k);
    if k == "index.docker.io" || k == "registry-1.docker.io" {
        "docker.io".to_string()
    } else {
        k.to_string()
    }
}

/// Finds credentials for `registry`/`repository` in the auth files, running a credential
/// helper when a file names one. `Ok(None)` when nothing is configured.
pub fn lookup(registry: &str, repository: &str) -> Result<Option<Credentials>, AuthError> {
    for file in auth_files() {
        let Ok(bytes) = std::fs::read(&file) else {
            continue;
        };
        if let Some(c) = lookup_bytes(&bytes, &file, registry, repository)? {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

fn lookup_bytes(
    bytes: &[u8],
    file: &Path,
    registry: &str,
    repository: &str,
) -> Result<Option<Credentials>, AuthError> {
    let path = file.display().to_string();
    let value: Value = serde_json::from_slice(bytes).map_err(|e| AuthError::BadFile {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    lookup_in(&value, registry, repository, &path)
}

/// Credentials from an auth file named per registry (a service's settings), read before
/// what `fallback` gives; a named file that cannot be read is an error, not a silent
/// fall-through.
pub struct PerRegistryFiles {
    /// The auth file of each registry host.
    pub files: std::collections::BTreeMap<String, PathBuf>,
    /// For registries without a file, and what their files do not name.
    pub fallback: std::sync::Arc<dyn CredentialsProvider>,
}

impl CredentialsProvider for PerRegistryFiles {
    fn credentials(
        &self,
        registry: &str,
        repository: &str,
    ) -> Result<Option<Credentials>, AuthError> {
        if let Some(file) = self.files.get(registry) {
            let bytes = std::fs::read(file).map_err(|e| AuthError::BadFile {
                path: file.display().to_string(),
                reason: e.to_string(),
            })?;
            if let Some(c) = lookup_bytes(&bytes, file, registry, repository)? {
                return Ok(Some(c));
            }
        }
        self.fallback.credentials(registry, repository)
    }
}

fn lookup_in(
    file: &Value,
    registry: &str,
    repository: &str,
    path: &str,
) -> Result<Option<Credentials>, AuthError> {
    let keys = candidate_keys(registry, repository);
    let normalized_registry = normalize_key(registry);
    if let Some(helpers) = file.get("credHelpers").and_then(Value::as_object) {
        for (host, helper) in helpers {
            if normalize_key(host) == normalized_registry {
                if let Some(helper) = helper.as_str() {
                    return run_helper(helper, registry);
                }
            }
        }
    }
    if let Some(auths) = file.get("auths").and_then(Value::as_object) {
        for key in &keys {
            let found = auths
                .iter()
                .find(|(k, _)| normalize_key(k) == normalize_key(key));
            if let Some((_, entry)) = found {
                if let Some(c) = decode_entry(entry, path)? {
                    return Ok(Some(c));
                }
            }
        }
    }
    if let Some(store) = file.get("credsStore").and_then(Value::as_str) {
        return run_helper(store, registry);
    }
    Ok(None)
}

fn decode_entry(entry: &Value, path: &str) -> Result<Option<Credentials>, AuthError> {
    let bad = |reason: &str| AuthError::BadFile {
        path: path.to_string(),
        reason: reason.to_string(),
    };
    // An OAuth2 refresh token that `docker login` stored (Azure, for one): it is exchanged
    // for access tokens at the registry's token service.
    if let Some(token) = entry
        .get("identitytoken")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        return Ok(Some(Credentials {
            username: IDENTITY_TOKEN_USER.to_string(),
            password: token.to_string(),
        }));
    }
    if let Some(auth) = entry
        .get("auth")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
    {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| bad("an `auth` value is not base64"))?;
        let text = String::from_utf8(decoded).map_err(|_| bad("an `auth` value is not UTF-8"))?;
        return Credentials::parse(&text)
            .map(Some)
            .map_err(|_| bad("an `auth` value is not `user:password` in base64"));
    }
    let user = entry.get("username").and_then(Value::as_str);
    let pass = entry.get("password").and_then(Value::as_str);
    if let (Some(u), Some(p)) = (user, pass) {
        return Ok(Some(Credentials {
            username: u.into(),
            password: p.into(),
        }));
    }
    Ok(None)
}

fn run_helper(helper: &str, registry: &str) -> Result<Option<Credentials>, AuthError> {
    let fail = |reason: String| AuthError::Helper {
        helper: helper.to_string(),
        registry: registry.to_string(),
        reason,
    };
    let server = if registry == "docker.io" {
        "https://index.docker.io/v1/".to_string()
    } else {
        registry.to_string()
    };
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run `{program}`: {e}")))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(server.as_bytes())
        .map_err(|e| fail(e.to_string()))?;
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if msg.contains("credentials not found") {
            return Ok(None);
        }
        return Err(fail(format!("it exited with {}", out.status)));
    }
    let v: Value =
        serde_json::from_slice(&out.stdout).map_err(|_| fail("it printed no JSON".into()))?;
    let user = v
        .get("Username")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let secret = v.get("Secret").and_then(Value::as_str).unwrap_or_default();
    if secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials {
        username: user.to_string(),
        password: secret.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_answer_per_registry() {
        let c = Credentials::parse("a:b").unwrap();
        let given = UserCredentials {
            creds: Some(c.clone()),
        };
        assert_eq!(
            given.credentials("any.example", "x").unwrap(),
            Some(c.clone())
        );
        let per = RegistryCredentials::new().with("src.example:5000", c.clone());
        assert_eq!(per.credentials("src.example:5000", "x").unwrap(), Some(c));
        assert_eq!(per.credentials("dst.example:5000", "x").unwrap(), None);
    }

    #[test]
    fn debug_never_shows_the_password() {
        let c = Credentials::parse("alice:s3cret:with:colons").unwrap();
        assert_eq!(c.password, "s3cret:with:colons");
        assert!(!format!("{c:?}").contains("s3cret"));
        assert!(Credentials::parse("nopassword").is_err());
        assert!(Credentials::parse(":x").is_err());
    }

    #[test]
    fn finds_entries_by_host_url_and_repository() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let file: Value = serde_json::json!({
            "auths": {
                "https://index.docker.io/v1/": {"auth": b64("hub:pw")},
                "quay.io/team": {"auth": b64("team:pw")},
                "quay.io": {"auth": b64("any:pw")},
                "localhost:5000": {"username": "u", "password": "p"},
                "example.azurecr.io": {"auth": b64("00000000-0000-0000-0000-000000000000:"), "identitytoken": "refresh"}
            }
        });
        let user = |reg: &str, repo: &str| {
            lookup_in(&file, reg, repo, "f")
                .unwrap()
                .map(|c| c.username)
        };
        assert_eq!(user("docker.io", "library/nginx").as_deref(), Some("hub"));
        assert_eq!(user("quay.io", "team/app").as_deref(), Some("team"));
        assert_eq!(user("quay.io", "other/app").as_deref(), Some("any"));
        assert_eq!(user("localhost:5000", "x").as_deref(), Some("u"));
        assert_eq!(user("ghcr.io", "x"), None);
        let azure = lookup_in(&file, "example.azurecr.io", "x", "f")
            .unwrap()
            .unwrap();
        assert!(azure.is_identity_token());
        assert_eq!(azure.password, "refresh");
    }
}
