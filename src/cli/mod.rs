//! The command line: clap definitions (pure data), their translation into the library's
//! options, and the rendering of results. No image logic lives here.

use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::analyze::Severity;
use crate::control::{Cancel, Events};
use crate::error::Error;
use crate::pipeline::{
    ConvertOptions, ImageRequest, PlanOptions, ScanLimits, Session, SessionOptions, VerifyOptions,
    VerifyRequest,
};
use crate::transport::auth::{Credentials, UserCredentials};
use crate::transport::registry::{Pace, RetryPolicy};

pub mod analyze;
pub mod convert;
pub mod docs;
mod duration;
pub mod learn;
pub mod progress;
pub mod recipes;
#[cfg(feature = "serve")]
mod serve;
#[cfg(feature = "serve")]
pub use serve::{LogFormat, ServeArgs};

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
  1  the registry refused or failed, the image was not in it, an image was
     damaged, or it cannot be converted as asked (a platform it lacks, UR701)
  2  usage error: bad flags, malformed reference, unknown transport
  3  a local file or directory was missing, was not the layout or archive its
     transport names, lacked the tag asked for, or could not be read or written
  4  --fail-on: a finding at that severity or worse
  5  verify (or convert --verify): the image did not run as a restricted runtime runs it;
     learn (or convert --learn): what was learned did not make an image that does
  130, 143  stopped by SIGINT or SIGTERM: nothing written, temporary files removed";

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
    /// moved (80->8080, 443->8443, else +8000). Prints what changed, what remains, and how
    /// to run the result.
    #[command(after_help = AFTER_HELP)]
    Convert(ConvertArgs),

    /// Report what ties an image to root, and how to run it unprivileged.
    ///
    /// Reads the image once and reports findings (runs as root, privileged ports, paths the
    /// service cannot write, code owned by the user, setuid files, file capabilities, ids
    /// out of range, ...), each with a stable id, severity, location and fix; what
    /// `unroot convert` would do; and the converted image's runtime contract.
    #[command(after_help = AFTER_HELP)]
    Analyze(AnalyzeArgs),

    /// Run an image the way a restrictive runtime would, and say whether it serves.
    ///
    /// Unpacks IMAGE (no daemon) and runs it with the OCI runtime (runc or crun): as its
    /// User, in a user namespace, with no capabilities, no_new_privs, a read-only root
    /// filesystem with tmpfs only at the runtime contract's writable directories, its own
    /// network namespace with ip_unprivileged_port_start 1024. It passes when the process
    /// stays up and listens on every exposed TCP port within --timeout (read from the
    /// namespace's /proc/net/tcp*); else the reasons, the denials and the last output are
    /// printed and the exit code is 5. Needs root (or the rights to map the id range).
    #[command(after_help = AFTER_HELP)]
    Verify(VerifyArgs),

    /// Learn what an image needs by running it, prove it, and write it down as a recipe.
    ///
    /// Runs IMAGE as `docker run` would (as root for most images), in a user namespace with
    /// its own loopback-only network, traced from its first instruction: the account it
    /// switches to, the ports it binds and the line of the file (or the argument) that
    /// sets each, the files it reads that only root may, the directories it writes. These
    /// become changes, each with its evidence, and a recipe; the image converted with it is
    /// run as `verify --arbitrary-uid` runs it, traced too, and each refusal it meets
    /// (EACCES, EPERM, EROFS, a bind refused) is a fact for another round, until the result
    /// serves, a round learns nothing, or --rounds or --time-limit is reached. A change is
    /// proven only when the last run served. `--write-recipe FILE` saves the recipe:
    /// `unroot convert --recipe FILE` then gives the same image with no tracing. What
    /// cannot be learned (a capability no unprivileged container has, a chown to another
    /// user) is reported with the program's own message. Needs root and runc; exit 5 when
    /// the result does not serve.
    #[command(after_help = AFTER_HELP)]
    Learn(LearnArgs),

    /// List, show and check recipes (declarative service conversions, see recipes/README.md).
    #[command(subcommand)]
    Recipes(RecipesCommand),

    /// Print the shell completion script for SHELL.
    ///
    /// bash: `unroot completions bash > /etc/bash_completion.d/unroot` (or source it from
    /// ~/.bashrc); zsh: into a directory on `$fpath` as `_unroot`; fish:
    /// `~/.config/fish/completions/unroot.fish`; PowerShell: dot-source it from `$PROFILE`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },

    /// Write the man pages (unroot.1 and one per subcommand, unroot-convert.1, ...) into
    /// DIR.
    ///
    /// e.g. `unroot man /usr/local/share/man/man1 && mandb`; then `man unroot-convert`.
    Man {
        /// The directory to write them in (created if missing).
        dir: std::path::PathBuf,
    },

    /// Run the registry bot: convert every image pushed to the watched repositories.
    ///
    /// Listens for registry webhooks (POST /hooks/distribution, harbor, github, dockerhub,
    /// quay, generic; each needs the secret in `webhook_token_file`), stores each pushed
    /// image's job durably before answering 202, and converts it as `unroot convert` would
    /// to the destination its rule names, once per source digest, recipe set and options.
    /// The state and queue live in SQLite (one machine) or PostgreSQL (replicas sharing
    /// one database). Also serves GET /healthz, /readyz, /metrics (Prometheus), /jobs,
    /// /jobs/ID and POST /jobs/ID/retry. SIGTERM stops taking hooks and jobs, gives running
    /// jobs --grace to finish, and puts the rest back in the queue.
    #[cfg(feature = "serve")]
    #[command(after_help = SERVE_AFTER_HELP)]
    Serve(ServeArgs),
}

#[cfg(feature = "serve")]
const SERVE_AFTER_HELP: &str = "\
The rules file (TOML):
  listen = \"127.0.0.1:8686\"
  state = \"sqlite:/var/lib/unroot/state.db\"   # or postgres://USER:PASSWORD@HOST/DB
  webhook_token_file = \"/etc/unroot/hook-token\"

  [[rule]]
  source = \"registry.example:5000/library/*\"   # repository glob; all tags
  exclude_tags = [\"*-unprivileged\"]
  destination = \"{registry}/{repository}:{tag}-unprivileged\"
  # optional: platforms, recipes, uid, gid, ports = [\"80:8080\"], verify = true,
  # learn = true

Exit status: 0 stopped cleanly, 2 usage error, 3 the rules or token file, the state store
or the listening address cannot be used.";

/// `unroot recipes ...`
#[derive(Debug, Subcommand)]
pub enum RecipesCommand {
    /// List the built-in recipes and what makes each match.
    List,
    /// Print a built-in recipe's TOML.
    Show {
        /// The recipe's name (see `unroot recipes list`).
        name: String,
    },
    /// Check a recipe file: syntax, fields, patterns (errors point at line and column).
    Check {
        /// The recipe file.
        file: String,
    },
}

pub use crate::report::Format;

/// Parts of the runtime contract to print alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Emit {
    /// A Kubernetes Deployment that `kubectl apply -f -` takes (restricted profile).
    K8s,
    /// The same as a single Pod.
    K8sPod,
    /// The `docker run` command (after the one that loads a local output).
    Docker,
    /// The `podman run` command (after the one that loads a local output).
    Podman,
}

/// What `--emit` prints, and how.
#[derive(Debug, Args)]
pub struct EmitArgs {
    /// Print only this part of the runtime contract: a Kubernetes manifest, or the
    /// commands that run the image.
    #[arg(long, value_enum, help_heading = "Output")]
    pub emit: Option<Emit>,

    /// With `--emit k8s`: run the pod in a user namespace (`hostUsers: false`,
    /// Kubernetes 1.33 and later).
    #[arg(long, help_heading = "Output")]
    pub k8s_user_namespace: bool,

    /// With `--emit k8s`: add a NetworkPolicy that lets in only the contract's ports.
    #[arg(long, help_heading = "Output")]
    pub k8s_network_policy: bool,
}

/// How `analyze` and `convert` report: the format, the part of the contract to print
/// alone, and the severity that fails the command.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The report's format.
    #[arg(long, value_enum, default_value = "text", help_heading = "Output")]
    pub format: Format,

    /// Parts of the runtime contract (of the converted image, for `convert`).
    #[command(flatten)]
    pub emit: EmitArgs,

    /// Exit with 4 when the image (for `convert`: the converted image) still has a finding
    /// at this level or worse.
    #[arg(long, value_enum, default_value = "never", help_heading = "Output")]
    pub fail_on: FailOn,
}

impl ReportArgs {
    /// The text to print (the report, or the asked part of the contract) and whether
    /// `--fail-on` trips.
    pub fn render(&self, report: &crate::report::Outcome) -> (String, bool) {
        let gate = self.fail_on.severity().is_some_and(|s| report.fails(s));
        let text = analyze::emit(&self.emit, report)
            .unwrap_or_else(|| report.render_width(self.format, columns()));
        (text, gate)
    }
}

/// `--fail-on` levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// Any error-level finding.
    Error,
    /// Any warning or error.
    Warning,
    /// Any finding.
    Info,
    /// Never (the default).
    Never,
}

impl FailOn {
    /// The severity it gates on.
    pub fn severity(self) -> Option<Severity> {
        match self {
            FailOn::Error => Some(Severity::Error),
            FailOn::Warning => Some(Severity::Warning),
            FailOn::Info => Some(Severity::Info),
            FailOn::Never => None,
        }
    }
}

/// Arguments that choose the image and how the conversion is planned.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The runtime user id, 1 to 2147483647 (above 65535 rootless runtimes with the default
    /// subordinate id range cannot map it) [default: the image's own non-root user, else
    /// 65532].
    #[arg(long, value_name = "UID", help_heading = "Conversion")]
    pub uid: Option<u64>,

    /// The runtime group id, 0 to 2147483647 [default: the user's primary group, else the
    /// UID].
    #[arg(long, value_name = "GID", help_heading = "Conversion")]
    pub gid: Option<u64>,

    /// Move a port: FROM:TO (repeatable), e.g. `--port 80:9090`.
    #[arg(long = "port", value_name = "FROM:TO", help_heading = "Conversion")]
    pub ports: Vec<String>,

    /// Use this recipe (a built-in name or a recipe file) whether or not its signature
    /// matches (repeatable); one that finds none of its service's files in the image is
    /// an error (UR701).
    #[arg(long = "recipe", value_name = "NAME|FILE", help_heading = "Conversion")]
    pub recipes: Vec<String>,

    /// Use no built-in recipe (only `--recipe` ones).
    #[arg(long, help_heading = "Conversion")]
    pub no_recipes: bool,

    /// The platform to read from a multi-platform image [default: every platform: `convert`
    /// writes an index of them all, `analyze` reports each]; a platform the image does not
    /// have is an error that lists those it has.
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", help_heading = "Conversion")]
    pub platform: Option<String>,

    /// Read this many layers at once (download, decompress, parse) [default: one per
    /// core, at most 4].
    #[arg(long, value_name = "N", help_heading = "Transfer")]
    pub jobs: Option<usize>,

    /// The most disk the bodies of files to re-own may take while the layers are read
    /// (`K`, `M`, `G` suffixes; zeros of sparse files do not count).
    #[arg(
        long,
        value_name = "BYTES",
        default_value = "4G",
        help_heading = "Transfer"
    )]
    pub max_spool: ByteCount,

    /// Registry access.
    #[command(flatten)]
    pub registry: RegistryArgs,
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

    /// Times of the new config, history entry and files (seconds since 1970) [default: the
    /// source image's creation time].
    #[arg(
        long,
        env = "SOURCE_DATE_EPOCH",
        value_name = "SECONDS",
        help_heading = "Conversion"
    )]
    pub source_date_epoch: Option<i64>,

    /// Rewrite the layers that hold files owned by ids above 65535 (rootless runtimes cannot
    /// unpack them), mapping those ids to the runtime UID and group 0; other layers stay.
    #[arg(long, help_heading = "Conversion")]
    pub remap_ids: bool,

    /// Print the plan (a diff of every edited file, ownership and mode changes, config
    /// changes, the new layer's size and the digest it would have) and write nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Allow DEST to be SRC itself: its tag then names the converted image (or its
    /// archive file is replaced); refused without this flag.
    #[arg(long)]
    pub replace: bool,

    /// Run the converted image as `unroot verify --arbitrary-uid` does before writing it;
    /// if it does not serve, write nothing and exit with 5.
    #[arg(long, help_heading = "Verification")]
    pub verify: bool,

    /// Learn what the image needs by running it first (as `unroot learn` does), convert it
    /// with what was learned, and write it only when the result served (else exit 5).
    #[arg(long, help_heading = "Verification")]
    pub learn: bool,

    /// With `--learn`: also save the learned recipe to FILE (written even when the result
    /// did not serve, for review).
    #[arg(
        long,
        value_name = "FILE",
        requires = "learn",
        help_heading = "Verification"
    )]
    pub write_recipe: Option<std::path::PathBuf>,

    /// With `--verify` or `--learn`: how long the image has to listen on its exposed
    /// ports.
    #[arg(long, value_name = "DURATION", default_value = "20", value_parser = duration::positive, help_heading = "Verification")]
    pub verify_timeout: Duration,

    /// With `--verify` or `--learn`: the OCI runtime (runc or crun, on PATH).
    #[arg(
        long,
        value_name = "PROGRAM",
        default_value = "runc",
        help_heading = "Verification"
    )]
    pub runtime: String,

    /// The report: its format, the part of the contract to print, the gate.
    #[command(flatten)]
    pub report: ReportArgs,

    /// Image and conversion choices.
    #[command(flatten)]
    pub plan: PlanArgs,
}

/// Arguments of `unroot analyze`.
#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// The image to analyze.
    #[arg(value_name = "IMAGE")]
    pub image: String,

    /// The report: its format, the part of the contract to print, the gate.
    #[command(flatten)]
    pub report: ReportArgs,

    /// Image and conversion choices (they shape the runtime contract).
    #[command(flatten)]
    pub plan: PlanArgs,
}

/// Arguments of `unroot verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The image to run.
    #[arg(value_name = "IMAGE")]
    pub image: String,

    /// Also run as an arbitrary UID in group 0 (as OpenShift does).
    #[arg(long)]
    pub arbitrary_uid: bool,

    /// How long the process has to listen on its exposed ports.
    #[arg(long, value_name = "DURATION", default_value = "20", value_parser = duration::positive)]
    pub timeout: Duration,

    /// With no exposed TCP port: how long the process must stay up.
    #[arg(long, value_name = "DURATION", default_value = "3", value_parser = duration::positive)]
    pub settle: Duration,

    /// The OCI runtime to run it with (runc or crun, on PATH).
    #[arg(long, value_name = "PROGRAM", default_value = "runc")]
    pub runtime: String,

    /// Also GET this path on every exposed port once it listens: `http:/PATH`; a 2xx or 3xx
    /// answer passes.
    #[arg(long, value_name = "http:/PATH", value_parser = parse_probe)]
    pub probe: Option<String>,

    /// The report's format (`text` or `json`).
    #[arg(long, value_enum, default_value = "text", help_heading = "Output")]
    pub format: Format,

    /// Image choices (the platform) and registry access.
    #[command(flatten)]
    pub plan: PlanArgs,
}

/// Arguments of `unroot learn`.
#[derive(Debug, Args)]
pub struct LearnArgs {
    /// The image to learn from.
    #[arg(value_name = "IMAGE")]
    pub image: String,

    /// Save the learned recipe (TOML, with the evidence of each entry as comments) to
    /// FILE, even when the result did not serve.
    #[arg(long, value_name = "FILE")]
    pub write_recipe: Option<std::path::PathBuf>,

    /// Save every run's trace (its processes and the calls the tracer watched, each with
    /// its result) to FILE as JSON, to see what learning saw.
    #[arg(long, value_name = "FILE")]
    pub save_traces: Option<std::path::PathBuf>,

    /// The most rounds of converting and running the result.
    #[arg(long, value_name = "N", default_value_t = crate::pipeline::ROUNDS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=20))]
    pub rounds: usize,

    /// The most time learning may take (the round under way is finished).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = duration::positive)]
    pub time_limit: Duration,

    /// How long each run has to listen on its exposed ports.
    #[arg(long, value_name = "DURATION", default_value = "20", value_parser = duration::positive)]
    pub timeout: Duration,

    /// How long a run is watched once it listens (or, with no exposed TCP port, how long
    /// it must stay up).
    #[arg(long, value_name = "DURATION", default_value = "3", value_parser = duration::positive)]
    pub settle: Duration,

    /// The OCI runtime (runc or crun, on PATH).
    #[arg(long, value_name = "PROGRAM", default_value = "runc")]
    pub runtime: String,

    /// GET this path on every exposed port once it listens, traced too: `http:/PATH`.
    #[arg(long, value_name = "http:/PATH", value_parser = parse_probe)]
    pub probe: Option<String>,

    /// The report's format (`text` or `json`).
    #[arg(long, value_enum, default_value = "text", help_heading = "Output")]
    pub format: Format,

    /// Image and conversion choices (they shape the converted image that is run).
    #[command(flatten)]
    pub plan: PlanArgs,
}

impl LearnArgs {
    /// How to learn.
    pub fn options(&self) -> crate::pipeline::LearnOptions {
        crate::pipeline::LearnOptions {
            run: VerifyOptions {
                arbitrary_uid: true,
                timeout: self.timeout,
                settle: self.settle,
                runtime: self.runtime.clone(),
                probe: self.probe.clone(),
                trace: true,
            },
            rounds: self.rounds,
            time_limit: self.time_limit,
        }
    }
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

    /// Require HTTPS with verified certificates; `--tls-verify=false` accepts any
    /// certificate, and plain HTTP from a registry that does not speak HTTPS (never needed
    /// for localhost, 127.0.0.1 and [::1]).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set, help_heading = "Registry")]
    pub tls_verify: bool,

    /// Retry a registry request this many times after a timeout, a dropped connection, or
    /// HTTP 408/429/5xx, waiting 1 s, 2 s, 4 s, ... or what the registry's Retry-After
    /// asks (at most 60 s); 0 turns retries off.
    #[arg(long, value_name = "N", default_value_t = 4, help_heading = "Registry")]
    pub retries: u32,

    /// How long all the attempts of one small registry request (a manifest, a token, a
    /// blob check) and the waits between them may take together; a registry that
    /// accepts and never answers is given up on after this (0: no budget, only
    /// `--retries` and the per-attempt limits).
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = duration::any, help_heading = "Registry")]
    pub retry_budget: Duration,

    /// Give up on a registry answer when nothing arrives for this long (its headers, or
    /// the next bytes of its body).
    #[arg(long, value_name = "DURATION", default_value = "60", value_parser = duration::positive, help_heading = "Registry")]
    pub read_timeout: Duration,

    /// Give up on a transfer slower than this many bytes per second over
    /// `--speed-time` (0: no floor).
    #[arg(
        long,
        value_name = "BYTES",
        default_value_t = 1024,
        help_heading = "Registry"
    )]
    pub speed_limit: u64,

    /// The window over which `--speed-limit` is measured.
    #[arg(long, value_name = "DURATION", default_value = "30", value_parser = duration::positive, help_heading = "Registry")]
    pub speed_time: Duration,

    /// Give up on a manifest, token or other small answer not complete this long after it
    /// was asked for (each attempt).
    #[arg(long, value_name = "DURATION", default_value = "120", value_parser = duration::positive, help_heading = "Registry")]
    pub request_deadline: Duration,
}

impl PlanArgs {
    /// The plan options these arguments give.
    pub fn options(&self) -> PlanOptions {
        PlanOptions {
            uid: self.uid,
            gid: self.gid,
            ports: self.ports.clone(),
            recipes: self.recipes.clone(),
            no_recipes: self.no_recipes,
            platform: self.platform.clone(),
        }
    }

    /// The session these arguments ask for, its events going to `events`, stopped by
    /// `cancel`.
    pub fn session(&self, events: Arc<dyn Events>, cancel: Cancel) -> Result<Session, Error> {
        let limits = ScanLimits {
            jobs: self.jobs.unwrap_or(0),
            max_spool: self.max_spool.0,
        };
        Ok(Session::new(
            self.registry.session_options(limits, events, cancel)?,
        ))
    }
}

impl RegistryArgs {
    /// The session options these arguments ask for.
    pub fn session_options(
        &self,
        limits: ScanLimits,
        events: Arc<dyn Events>,
        cancel: Cancel,
    ) -> Result<SessionOptions, Error> {
        let creds = self.creds.as_deref().map(Credentials::parse).transpose()?;
        Ok(SessionOptions {
            credentials: Arc::new(UserCredentials { creds }),
            tls_verify: self.tls_verify,
            retry: RetryPolicy {
                retries: self.retries,
                budget: (!self.retry_budget.is_zero()).then_some(self.retry_budget),
                ..Default::default()
            },
            pace: Pace {
                read_timeout: self.read_timeout,
                speed_limit: self.speed_limit,
                speed_time: self.speed_time,
                deadline: self.request_deadline,
            },
            limits,
            events,
            cancel,
            ..Default::default()
        })
    }
}

impl VerifyArgs {
    /// The verification these arguments ask for, of `image`.
    pub fn request(&self, image: ImageRequest) -> VerifyRequest {
        VerifyRequest {
            image,
            options: VerifyOptions {
                arbitrary_uid: self.arbitrary_uid,
                timeout: self.timeout,
                settle: self.settle,
                runtime: self.runtime.clone(),
                probe: self.probe.clone(),
                trace: false,
            },
        }
    }
}

impl ConvertArgs {
    /// The conversion options these arguments give.
    pub fn options(&self) -> ConvertOptions {
        let run = |trace| VerifyOptions {
            arbitrary_uid: true,
            timeout: self.verify_timeout,
            settle: Duration::from_secs(3),
            runtime: self.runtime.clone(),
            probe: None,
            trace,
        };
        ConvertOptions {
            destination: self.destination.clone(),
            source_date_epoch: self.source_date_epoch,
            remap_ids: self.remap_ids,
            dry_run: self.dry_run,
            replace: self.replace,
            verify: self.verify.then(|| run(false)),
            learn: self
                .learn
                .then(|| crate::pipeline::LearnOptions::new(run(true))),
        }
    }
}

/// `--probe http:/PATH`: the path.
fn parse_probe(s: &str) -> Result<String, String> {
    match s.strip_prefix("http:") {
        Some(path) if path.starts_with('/') && !path.contains(char::is_whitespace) => {
            Ok(path.to_string())
        }
        _ => Err(format!("`{s}` is not `http:/PATH` (e.g. `http:/healthz`)")),
    }
}

/// A number of bytes as given on the command line: `1048576`, `512K`, `64M`, `4G`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteCount(pub u64);

impl std::str::FromStr for ByteCount {
    type Err = String;

    fn from_str(s: &str) -> Result<ByteCount, String> {
        let s = s.trim();
        let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
            Some(i) => s.split_at(i),
            None => (s, ""),
        };
        let shift = match unit
            .to_ascii_uppercase()
            .trim_end_matches("IB")
            .trim_end_matches('B')
        {
            "" => 0,
            "K" => 10,
            "M" => 20,
            "G" => 30,
            "T" => 40,
            _ => return Err(format!("`{s}` is not a size (e.g. `512M`, `4G`)")),
        };
        digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(1 << shift))
            .map(ByteCount)
            .ok_or_else(|| format!("`{s}` is not a size (e.g. `512M`, `4G`)"))
    }
}

/// The width text reports are wrapped at: the terminal's when standard output is one,
/// else `$COLUMNS` when set, else 80.
pub fn columns() -> usize {
    // SAFETY: a zeroed `winsize` is a valid value, and TIOCGWINSZ only writes into the
    // one it is given; on a descriptor that is not a terminal it fails and writes nothing.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    if unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0
        && size.ws_col >= 40
    {
        return usize::from(size.ws_col);
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&c| c >= 40)
        .unwrap_or(80)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_parse() {
        let n = |s: &str| s.parse::<ByteCount>().map(|b| b.0);
        assert_eq!(n("1048576"), Ok(1 << 20));
        assert_eq!(n("512K"), Ok(512 << 10));
        assert_eq!(n("64MiB"), Ok(64 << 20));
        assert_eq!(n("4g"), Ok(4 << 30));
        assert!(n("4X").is_err());
        assert!(n("").is_err());
        assert!(n("99999999999T").is_err());
    }

    #[test]
    fn duration_flags_take_units_as_the_registry_config_spells_them() {
        use clap::Parser;
        let cli = Cli::try_parse_from([
            "unroot",
            "serve",
            "-c",
            "rules.toml",
            "--reconcile-every",
            "5s",
            "--heartbeat",
            "1m",
            "--grace",
            "90",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        assert_eq!(args.reconcile_every, Duration::from_secs(5));
        assert_eq!(args.heartbeat, Duration::from_secs(60));
        assert_eq!(args.grace, Duration::from_secs(90));
        let err = Cli::try_parse_from(["unroot", "serve", "-c", "r.toml", "--heartbeat", "0s"])
            .err()
            .unwrap();
        assert!(err.to_string().contains("must be more than zero"), "{err}");
    }
}
