//! The library's error type, its hints, and the process exit codes (set here and nowhere
//! else).

use crate::layer::LayerError;
use crate::model::config::ConfigError;
use crate::model::location::LocationError;
use crate::model::manifest::{ManifestError, PlatformParseError};
use crate::model::ports::PortError;
use crate::model::ImageLocation;
use crate::plan::generic::PlanError;
use crate::transport::auth::AuthError;
use crate::transport::TransportError;
use crate::write::image::AssembleError;

/// Exit codes, as documented in `--help` and README.
pub mod exit {
    /// Everything worked.
    pub const SUCCESS: u8 = 0;
    /// The conversion failed because of the image or the registry: not found, refused,
    /// corrupted, unsupported.
    pub const FAILURE: u8 = 1;
    /// The command line is wrong: unknown flag, malformed reference, unknown transport.
    pub const USAGE: u8 = 2;
    /// Something failed on this machine: a local file could not be read or written.
    pub const LOCAL: u8 = 3;
    /// `analyze --fail-on LEVEL` (or `convert --fail-on`) found a finding at that level or
    /// worse.
    pub const FINDINGS: u8 = 4;
    /// `unroot verify` (or `convert --verify`): the image did not run the way a
    /// restrictive runtime runs it.
    pub const NOT_RUNNING: u8 = 5;
    /// The job was cancelled (as a shell reports a process ended by SIGINT).
    pub const CANCELLED: u8 = 130;
}

/// Everything that can stop a conversion.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An image location does not parse.
    #[error(transparent)]
    Location(#[from] LocationError),
    /// A `--port` value is wrong.
    #[error(transparent)]
    Port(#[from] PortError),
    /// A request value cannot be right (`--uid 0`, ids out of range).
    #[error(transparent)]
    Request(#[from] crate::pipeline::RequestError),
    /// A `--platform` value is wrong.
    #[error(transparent)]
    Platform(#[from] PlatformParseError),
    /// Credentials could not be read.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// Reading or writing an image failed.
    #[error(transparent)]
    Transport(Box<TransportError>),
    /// A manifest cannot be used.
    #[error("{location}: {source}")]
    Manifest {
        /// Where it came from.
        location: String,
        /// Why.
        source: ManifestError,
    },
    /// The config cannot be used.
    #[error("{location}: {source}")]
    Config {
        /// Where it came from.
        location: String,
        /// Why.
        source: ConfigError,
    },
    /// A layer cannot be read.
    #[error("{location}: {source}")]
    Layer {
        /// Where it came from.
        location: String,
        /// Why.
        source: Box<LayerError>,
    },
    /// The conversion cannot be planned.
    #[error("{location}: {source}")]
    Plan {
        /// The image.
        location: String,
        /// Why.
        source: PlanError,
    },
    /// A recipe cannot be loaded.
    #[error(transparent)]
    Recipe(#[from] crate::recipe::RecipeError),
    /// A recipe cannot be applied to the image.
    #[error("{location}: {source}")]
    RecipeApply {
        /// The image.
        location: String,
        /// Why.
        source: crate::recipe::edit::ApplyError,
    },
    /// The output cannot be assembled.
    #[error(transparent)]
    Assemble(#[from] AssembleError),
    /// The index has no image for the platform.
    #[error("{location} has no image for {wanted}; it has: {}", available.join(", "))]
    NoPlatform {
        /// The index.
        location: String,
        /// The platform asked for.
        wanted: String,
        /// The platforms it has.
        available: Vec<String>,
    },
    /// The image is of a kind unroot does not convert.
    #[error("{location}: {reason}")]
    Unsupported {
        /// The image.
        location: String,
        /// Why.
        reason: String,
    },
    /// No destination was given and none can be derived.
    #[error("no destination for {source_location}: {reason}")]
    NoDestination {
        /// The source.
        source_location: String,
        /// Why none can be derived.
        reason: String,
    },
    /// The work directory cannot be used for this job.
    #[error("the work directory `{}` {reason}", path.display())]
    WorkDir {
        /// The work directory.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// `convert --verify`: the converted image did not serve; nothing was written.
    #[error("the converted image does not run unprivileged, so nothing was written to {destination}: {}", summary.join("; "))]
    NotVerified {
        /// Where it would have been written.
        destination: String,
        /// Each run, one line.
        summary: Vec<String>,
    },
    /// `convert --learn`: the image made with what was learned did not serve; nothing
    /// was written.
    #[error("learning did not make an image that runs unprivileged ({}), so nothing was written to {destination}{}", learning.stopped.describe(), problems(learning))]
    NotLearned {
        /// Where it would have been written.
        destination: String,
        /// What was learned, and what was not.
        learning: Box<crate::pipeline::Learning>,
    },
    /// This machine cannot run what was asked (learning needs root).
    #[error("{reason}")]
    CannotRun {
        /// Why, and what to do.
        reason: String,
    },
    /// The OCI runtime could not run the image.
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    /// The job was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// A worker failed in a way it should not (a panic): a bug, reported as this job's
    /// error rather than the process's end.
    #[error("{location}: internal error: {message}")]
    Internal {
        /// The image.
        location: String,
        /// What happened.
        message: String,
    },
    /// A local file failed.
    #[error(transparent)]
    Io(#[from] crate::control::FileError),
}

impl From<TransportError> for Error {
    fn from(e: TransportError) -> Error {
        Error::Transport(Box::new(e))
    }
}

impl Error {
    /// Whether the same work may succeed when tried again later: the registry was
    /// unreachable, kept answering an error status, kept cutting a transfer, or its
    /// retries were spent.
    pub fn may_pass(&self) -> bool {
        matches!(
            self,
            Error::Transport(t) if matches!(
                **t,
                TransportError::Connect { .. }
                    | TransportError::Registry { .. }
                    | TransportError::BrokenOff { .. }
                    | TransportError::GaveUp { .. }
            )
        )
    }

    /// The kind of a registry failure, for counting (`unreachable`, `error status`,
    /// `gave up`, `broken off`, `unauthorized`, `denied`, `not found`); `None` for the
    /// rest.
    pub fn registry_kind(&self) -> Option<&'static str> {
        let Error::Transport(t) = self else {
            return None;
        };
        Some(match **t {
            TransportError::Connect { .. } => "unreachable",
            TransportError::Registry { .. } => "error status",
            TransportError::GaveUp { .. } => "gave up",
            TransportError::BrokenOff { .. } => "broken off",
            TransportError::Unauthorized { .. } => "unauthorized",
            TransportError::Denied { .. } => "denied",
            TransportError::NotFound { .. } => "not found",
            _ => return None,
        })
    }
}

impl Error {
    /// A suggestion for the user, when one helps.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Location(LocationError::MisspeltTransport { input, transport, suggestion }) => {
                let meant = format!("{suggestion}:{}", &input[transport.len() + 1..]);
                Some(if input.contains("://") {
                    format!("write `{meant}`")
                } else {
                    format!("write `{meant}`; for the image `{input}` on Docker Hub, write `docker://{input}`")
                })
            }
            Error::Location(LocationError::LocalPath { .. }) => Some(
                "local images are read by transport: `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]`, `docker-archive:FILE[:REF]`".into(),
            ),
            Error::Location(LocationError::UnknownTransport { .. }) => Some(
                "use `docker://REF` (or a plain reference), `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]` or `docker-archive:FILE[:REF]`".into(),
            ),
            Error::Location(LocationError::Reference(_)) => {
                Some("references look like `nginx`, `nginx:1.27`, `registry.example.com:5000/team/app:v1` or `app@sha256:...`".into())
            }
            Error::Transport(t) => t.hint(),
            Error::NoPlatform { available, .. } => available
                .first()
                .map(|p| format!("pick one with `--platform {p}`")),
            Error::NoDestination { .. } => Some("name one with `--to`, e.g. `--to oci:out:latest`".into()),
            Error::Request(crate::pipeline::RequestError::OverwritesSource { .. }) => Some(
                "write it elsewhere with `--to` (the default adds `-unprivileged` to the tag), or pass `--replace` to move the tag to the converted image".into(),
            ),
            Error::RecipeApply { source: crate::recipe::edit::ApplyError::NotInImage { recipe, .. }, .. } => Some(format!(
                "drop `--recipe {recipe}` (`unroot analyze IMAGE` lists the recipes that match), or check that IMAGE is the one with the service"
            )),
            Error::RecipeApply { .. } => Some(
                "the service's files differ from what the recipe expects; run with `--no-recipes` for the generic conversion, or adapt the recipe (`unroot recipes show NAME`)".into(),
            ),
            Error::Recipe(crate::recipe::RecipeError::Unknown { .. }) => Some("`unroot recipes list` lists the built-in recipes".into()),
            Error::Manifest { source: ManifestError::Schema1, .. } => Some(
                "schema 1 images are deprecated; re-push the image with a current tool (e.g. `skopeo copy`) to get a schema 2 manifest".into(),
            ),
            Error::Layer { .. } => Some("the source is damaged or was changed while being read; fetch it again".into()),
            Error::Internal { .. } => Some("this is a bug in unroot; please report it with the command that shows it".into()),
            Error::Plan { source: PlanError::Resolve(_) | PlanError::Accounts(crate::layer::accounts::AccountsError::Resolve(_)), .. } => {
                Some("the image's symlinks form a loop; fix the image, or convert with `--uid` on an image whose `/etc/passwd` is a plain file".into())
            }
            _ => None,
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Location(_)
            | Error::Request(_)
            | Error::Port(_)
            | Error::Platform(_)
            | Error::NoDestination { .. }
            | Error::Recipe(_) => exit::USAGE,
            Error::Auth(e) => auth_exit(e),
            Error::Io(_) | Error::Runtime(_) | Error::WorkDir { .. } | Error::CannotRun { .. } => {
                exit::LOCAL
            }
            Error::Cancelled => exit::CANCELLED,
            Error::NotVerified { .. } | Error::NotLearned { .. } => exit::NOT_RUNNING,
            Error::Transport(t) => match &**t {
                TransportError::Io(_)
                | TransportError::NotFound { local: true, .. }
                | TransportError::NoSuchTag { .. }
                | TransportError::Ambiguous { .. }
                | TransportError::Invalid { local: true, .. } => exit::LOCAL,
                TransportError::Credentials { source, .. } => auth_exit(source),
                TransportError::Cancelled => exit::CANCELLED,
                _ => exit::FAILURE,
            },
            _ => exit::FAILURE,
        }
    }
}

/// `: PROBLEM; PROBLEM`, what learning could not fix, or the last runs' verdicts.
fn problems(learning: &crate::pipeline::Learning) -> String {
    let mut lines: Vec<String> = learning
        .knowledge
        .problems
        .iter()
        .map(|p| p.problem.clone())
        .collect();
    if lines.is_empty() {
        lines = learning
            .verification
            .as_ref()
            .map(|v| v.summary())
            .unwrap_or_default();
    }
    if lines.is_empty() {
        String::new()
    } else {
        format!(": {}", lines.join("; "))
    }
}

impl Error {
    /// For an image looked up in a registry because its name had no transport: when the
    /// registry failed and the name is also a path on this machine, how to read the path
    /// instead (a directory that is not a layout, or a file not ending in `.tar`, is not
    /// taken for one when the name is parsed).
    pub fn local_path_hint(&self, input: &str) -> Option<String> {
        let Error::Transport(t) = self else {
            return None;
        };
        // `oci:NAME:TAG` would not name a path with a colon in it.
        if input.contains(':') {
            return None;
        }
        let Ok(ImageLocation::Registry(source)) = ImageLocation::parse(input) else {
            return None;
        };
        let is_source =
            |location: &str| location == ImageLocation::Registry(source.clone()).to_string();
        // The failure must be the source's, not the destination's.
        let mut t = &**t;
        if let TransportError::GaveUp { last, .. } = t {
            t = last;
        }
        let source_failed = match t {
            TransportError::Connect { registry, .. } => registry == source.registry(),
            TransportError::NotFound {
                location,
                local: false,
                ..
            }
            | TransportError::Unauthorized { location, .. }
            | TransportError::Denied { location, .. } => is_source(location),
            _ => false,
        };
        if !source_failed {
            return None;
        }
        let path = std::path::Path::new(input);
        let (what, how) = if path.is_dir() {
            (
                "directory",
                format!("`oci:{input}` (if it holds an OCI layout)"),
            )
        } else if path.is_file() {
            (
                "file",
                format!("`oci-archive:{input}` or `docker-archive:{input}`"),
            )
        } else {
            return None;
        };
        Some(format!(
            "`{input}` is also a {what} here; to read it rather than the registry, write {how}"
        ))
    }
}

/// The exit code of a credentials problem: a bad `--creds` is a usage error, an auth file
/// that cannot be read a local one, a failing credential helper the registry's side.
fn auth_exit(e: &AuthError) -> u8 {
    match e {
        AuthError::BadCreds => exit::USAGE,
        AuthError::BadFile { .. } => exit::LOCAL,
        AuthError::Helper { .. } => exit::FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registry_failure_for_a_name_that_is_also_a_local_path_says_how_to_read_the_path() {
        // Tests run in the package's directory: `src` is a directory there, `scripts/test`
        // a file, and both are also valid image names.
        let unreachable = Error::from(TransportError::Connect {
            registry: "docker.io".into(),
            message: "dns error".into(),
            tls: false,
        });
        assert_eq!(
            unreachable.local_path_hint("src").unwrap(),
            "`src` is also a directory here; to read it rather than the registry, write `oci:src` (if it holds an OCI layout)"
        );
        assert_eq!(
            unreachable.local_path_hint("scripts/test").unwrap(),
            "`scripts/test` is also a file here; to read it rather than the registry, write `oci-archive:scripts/test` or `docker-archive:scripts/test`"
        );
        // Not a path here, asked of the registry by name, or with a tag.
        assert_eq!(unreachable.local_path_hint("nginx-nowhere-here"), None);
        assert_eq!(unreachable.local_path_hint("docker://src"), None);
        assert_eq!(unreachable.local_path_hint("src:1"), None);
        // A failure of the destination, not the source.
        let refused = Error::from(TransportError::Unauthorized {
            registry: "registry.example".into(),
            location: "docker://registry.example/team/src:latest".into(),
            had_credentials: false,
        });
        assert_eq!(refused.local_path_hint("src"), None);
        let elsewhere = Error::from(TransportError::Connect {
            registry: "registry.example".into(),
            message: "dns error".into(),
            tls: false,
        });
        assert_eq!(elsewhere.local_path_hint("src"), None);
        // The source's own refusal.
        let source_refused = Error::from(TransportError::Unauthorized {
            registry: "docker.io".into(),
            location: ImageLocation::parse("src").unwrap().to_string(),
            had_credentials: false,
        });
        assert_eq!(
            source_refused.local_path_hint("src").as_deref(),
            unreachable.local_path_hint("src").as_deref(),
            "the source's refusal gets the same hint as its being unreachable"
        );
    }
}
