//! The command line: clap definitions (pure data) and the rendering of results. No image
//! logic lives here.

use clap::{Args, Parser, Subcommand};

pub mod convert;

const AFTER_HELP: &str = "\
Image locations (as skopeo spells them):
  nginx, nginx:1.27, registry.example.com:5000/team/app:v1, app@sha256:...
  docker://REF              an image in a registry (the default transport)
  oci:DIR[:TAG]             an OCI image layout directory
  oci-archive:FILE[:TAG]    an OCI image layout in a tar file
  docker-archive:FILE[:REF] a `docker save` tar file

Credentials come from --creds, $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json,
~/.config/containers/auth.json, $DOCKER_CONFIG/config.json or ~/.docker/config.json
(credential helpers included).

Exit codes:
  0  success
  1  the conversion failed: the image or the registry refused, was missing or damaged
  2  usage error: bad flags, malformed reference, unknown transport
  3  a local file could not be read or written";

/// Convert container images that run as root into images that run unprivileged.
#[derive(Debug, Parser)]
#[command(name = "unroot", version, about, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    /// Print nothing but the result (no progress).
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Convert an image to run as a non-root user and write it with one new layer.
    ///
    /// Reads SRC, streams its layers once, and writes the same layers plus one new layer
    /// and a new config: a numeric non-root USER (with a passwd entry), executables owned by
    /// root, runtime-writable directories owned UID:0 with group write, and ports below 1024
    /// moved (80->8080, 443->8443, else +8000).
    #[command(after_help = AFTER_HELP)]
    Convert(ConvertArgs),
}

/// Arguments of `unroot convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The image to convert.
    #[arg(value_name = "SRC")]
    pub source: String,

    /// Where to write the result [default: SRC's location with tag `<tag>-unprivileged`].
    #[arg(long = "to", value_name = "DEST")]
    pub destination: Option<String>,

    /// The runtime user id [default: the image's own non-root user, else 65532].
    #[arg(long, value_name = "UID", help_heading = "Conversion")]
    pub uid: Option<u64>,

    /// The runtime group id [default: the user's primary group, else the UID].
    #[arg(long, value_name = "GID", help_heading = "Conversion")]
    pub gid: Option<u64>,

    /// Move a port: FROM:TO (repeatable), e.g. `--port 80:9090`.
    #[arg(long = "port", value_name = "FROM:TO", help_heading = "Conversion")]
    pub ports: Vec<String>,

    /// The platform to convert from a multi-platform image.
    #[arg(
        long,
        value_name = "OS/ARCH[/VARIANT]",
        default_value = "linux/amd64",
        help_heading = "Conversion"
    )]
    pub platform: String,

    /// Times of the new config, history entry and files (seconds since 1970) [default: the
    /// source image's creation time].
    #[arg(
        long,
        env = "SOURCE_DATE_EPOCH",
        value_name = "SECONDS",
        help_heading = "Conversion"
    )]
    pub source_date_epoch: Option<i64>,

    /// Registry access.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// How to reach registries.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Credentials for the registries: USER:PASSWORD.
    #[arg(
        long,
        value_name = "USER:PASSWORD",
        help_heading = "Registry",
        hide_env_values = true
    )]
    pub creds: Option<String>,

    /// Require HTTPS with verified certificates; `--tls-verify=false` allows plain HTTP
    /// (never needed for localhost, 127.0.0.1 and [::1]).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set, help_heading = "Registry")]
    pub tls_verify: bool,
}
