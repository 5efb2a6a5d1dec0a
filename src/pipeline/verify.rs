//! `Session::verify`: runs an image the way a restrictive runtime would and says whether
//! it serves. The image is analysed (for its runtime contract: user, ports, writable
//! directories), unpacked into a root filesystem in the work directory, and run with the
//! OCI runtime: as its `User`, and (when asked) as an arbitrary UID in group 0.

use crate::control::FileError;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::control::Event;
use crate::error::Error;
use crate::layer::accounts;
use crate::layer::reader::{read_layer, VisitError};
use crate::layer::{ImagePath, LayerError, MergedView};
use crate::model::{ImageLocation, Platform};
use crate::runtime::unpack::{IdMap, Rootfs};
use crate::runtime::{self, RunSpec};

use super::{Contents, ImageRequest, Session};

/// The host ids of the namespace the image runs in (as podman maps a default
/// `/etc/subuid` range).
pub const ID_MAP: IdMap = IdMap {
    base: 100_000,
    size: 65536,
};

/// What to verify and how.
#[derive(Clone, Debug)]
pub struct VerifyRequest {
    /// The image (a platform of an index: `--platform`, else this machine's).
    pub image: ImageRequest,
    /// How.
    pub options: VerifyOptions,
}

/// How to run an image to verify it.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// Also run as an arbitrary UID in group 0 (OpenShift's way).
    pub arbitrary_uid: bool,
    /// How long the process has to listen on its ports.
    pub timeout: Duration,
    /// With no port to listen on, how long it must stay up.
    pub settle: Duration,
    /// The OCI runtime (`runc`, `crun`).
    pub runtime: String,
    /// An HTTP path to GET on every exposed port once it listens (a 2xx or 3xx passes).
    pub probe: Option<String>,
    /// Trace the runs (what learning reads; a verification passes or fails the same).
    pub trace: bool,
}

/// One run of the image.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    /// `image user` or `arbitrary uid`.
    pub as_: String,
    /// The container's id (removed when the run ends).
    pub container: String,
    /// The uid and gid it ran as.
    pub uid: u32,
    /// The gid.
    pub gid: u32,
    /// Whether it passed.
    pub passed: bool,
    /// Why it failed (empty when it passed).
    pub reasons: Vec<String>,
    /// The ports it should listen on (the exposed TCP ports).
    pub expected: Vec<u16>,
    /// The ports it listened on.
    pub listening: Vec<u16>,
    /// Its exit code, when it ended by itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exited: Option<i32>,
    /// Its last output lines.
    pub log: Vec<String>,
    /// The output lines that say it was denied something.
    pub denied: Vec<String>,
}

/// What verifying an image found.
#[derive(Clone, Debug, Serialize)]
pub struct Verification {
    /// The image, as given.
    pub location: String,
    /// Its manifest's digest.
    pub digest: String,
    /// Whether every run passed.
    pub passed: bool,
    /// The directories mounted writable (tmpfs) on the read-only root.
    pub writable: Vec<String>,
    /// Each run.
    pub runs: Vec<Run>,
    /// What the user should know (entries not unpacked, writable paths missing).
    pub notes: Vec<String>,
}

impl Verification {
    /// One line per run: `as the image user 65532:65532: passed, listening on 8080`.
    pub fn summary(&self) -> Vec<String> {
        self.runs
            .iter()
            .map(|r| {
                let ports: Vec<String> = r.listening.iter().map(u16::to_string).collect();
                let verdict = if r.passed {
                    format!(
                        "passed, listening on {}",
                        if ports.is_empty() {
                            "nothing (none exposed)".into()
                        } else {
                            ports.join(", ")
                        }
                    )
                } else {
                    format!("failed: {}", r.reasons.join("; "))
                };
                format!("as the {} {}:{}: {verdict}", r.as_, r.uid, r.gid)
            })
            .collect()
    }
}

/// An image resolved for running, with its analysis (for the runtime contract).
pub(super) struct Target {
    /// The open source.
    pub resolved: super::Resolved,
    /// The image (one platform).
    pub image: Box<super::ResolvedImage>,
    /// What `analyze` says of it.
    pub analysis: super::ImageAnalysis,
}

/// An image unpacked into a bundle in the work directory (removed when dropped).
pub(super) struct Bundle {
    /// The work directory it lives in (removed with it).
    _scratch: tempfile::TempDir,
    /// The bundle directory (`config.json`, `rootfs`).
    pub dir: PathBuf,
    /// Its root filesystem.
    pub rootfs: PathBuf,
    /// The image's files (metadata only), as unpacked.
    pub view: MergedView,
    /// What the user should know (entries not unpacked).
    pub notes: Vec<String>,
}

impl Bundle {
    /// A file of the root filesystem as the container sees it (symlinks resolved in the
    /// image, never out of it), when it is a regular file of at most 1 MiB.
    pub fn read(&self, path: &ImagePath) -> Option<Vec<u8>> {
        let resolved = self.view.resolve(path).ok()?;
        let host = self.rootfs.join(resolved.display().trim_start_matches('/'));
        let meta = std::fs::symlink_metadata(&host).ok()?;
        if !meta.is_file() || meta.len() > 1 << 20 {
            return None;
        }
        std::fs::read(&host).ok()
    }
}

/// How the image's process is started, from its config and its account files.
pub(super) struct Launch {
    /// `Entrypoint` + `Cmd`.
    pub args: Vec<String>,
    /// `Env`, with `HOME` when it has none.
    pub env: Vec<String>,
    /// The working directory.
    pub cwd: String,
    /// Its `User` as ids, when it resolves.
    pub user: Option<(u32, u32)>,
    /// The exposed TCP ports.
    pub expected: BTreeSet<u16>,
}

/// One way of running the image.
pub(super) struct RunAs {
    /// `image user`, `arbitrary uid`, `root, as docker runs it`.
    pub as_: String,
    /// The ids; `None`: the image's `User` does not resolve.
    pub ids: Option<(u32, u32)>,
    /// What it is allowed.
    pub profile: runtime::Profile,
    /// Traced.
    pub trace: bool,
}

impl Session {
    /// Verifies one image (see the module documentation).
    pub fn verify(&self, request: &VerifyRequest) -> Result<Verification, Error> {
        let result = self.verify_image(request, &mut |_, _, _| {});
        self.settle(result)
    }

    /// Verifies one image; `observe` sees each run with what it observed (its trace when
    /// traced) while the bundle is still there.
    pub(super) fn verify_image(
        &self,
        request: &VerifyRequest,
        observe: &mut dyn FnMut(&Run, &runtime::Observed, &Bundle),
    ) -> Result<Verification, Error> {
        let mut target = self.target(&request.image)?;
        let bundle = self.unpack(&mut target)?;
        let launch = launch(&target, &bundle)?;
        let mut notes = bundle.notes.clone();
        let writable = contract_mounts(&target.analysis.contract, &bundle, &mut notes);
        let mut ways = vec![RunAs {
            as_: "image user".into(),
            ids: launch.user,
            profile: runtime::Profile::Restricted,
            trace: request.options.trace,
        }];
        if request.options.arbitrary_uid {
            ways.push(RunAs {
                as_: "arbitrary uid".into(),
                ids: Some((arbitrary_uid(), 0)),
                profile: runtime::Profile::Restricted,
                trace: request.options.trace,
            });
        }
        let mounts: Vec<(String, Option<(u64, u64)>)> = writable
            .iter()
            .map(|w| (w.clone(), target.analysis.contract.tmpfs_owner(w)))
            .collect();
        let mut runs = Vec::new();
        for (n, way) in ways.into_iter().enumerate() {
            let (run, observed) = self.run_as(
                &bundle,
                &launch,
                &mounts,
                &way,
                n,
                &request.options,
                target.image.config.user(),
            )?;
            observe(&run, &observed, &bundle);
            runs.push(run);
        }
        Ok(Verification {
            location: request.image.source.to_string(),
            digest: target.analysis.digest.to_string(),
            passed: runs.iter().all(|r| r.passed),
            writable,
            runs,
            notes,
        })
    }

    /// Resolves one platform of the image and analyses it.
    pub(super) fn target(&self, request: &ImageRequest) -> Result<Target, Error> {
        let location = &request.source;
        let platform = match &request.platform {
            Some(p) => p.clone(),
            None => host_platform()?,
        };
        let mut resolved = self.resolve(location, Some(&platform))?;
        let image = match resolved.contents.clone() {
            Contents::Image(image) => image,
            Contents::Index(index) => {
                return Err(Error::NoPlatform {
                    location: location.to_string(),
                    wanted: platform.to_string(),
                    available: index
                        .images
                        .iter()
                        .map(|(_, i)| i.platform_name())
                        .collect(),
                })
            }
        };
        self.check_work_dir()?;
        let analysis = self.analyze_image(request, resolved.source.as_mut(), &image)?;
        Ok(Target {
            resolved,
            image,
            analysis,
        })
    }

    /// The namespace's root (an unprivileged host uid) must reach the bundle.
    fn check_work_dir(&self) -> Result<(), Error> {
        let Some(closed) = self.work_dir().ancestors().find(|a| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(a).is_ok_and(|m| m.permissions().mode() & 0o001 == 0)
        }) else {
            return Ok(());
        };
        Err(Error::WorkDir {
            path: self.work_dir().to_path_buf(),
            reason: format!(
                "is in `{}`, which others cannot enter, so the container's root (host uid {}) cannot reach its root filesystem; set TMPDIR to a directory all of whose parents others may enter (e.g. /var/tmp)",
                closed.display(),
                ID_MAP.base
            ),
        })
    }

    /// Unpacks the image's layers into a bundle in the work directory.
    pub(super) fn unpack(&self, target: &mut Target) -> Result<Bundle, Error> {
        let location = target.resolved.source.location().clone();
        let image = &target.image;
        let scratch = self.scratch()?;
        let dir = scratch.path().join("bundle");
        let rootfs_path = dir.join("rootfs");
        for d in [scratch.path(), dir.as_path()] {
            std::fs::create_dir_all(d).map_err(io("create", d))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))
                .map_err(io("set the mode of", d))?;
        }
        let mut rootfs = Rootfs::new(&rootfs_path, ID_MAP).map_err(io("create", &rootfs_path))?;
        let diff_ids = image.config.diff_ids().map_err(|e| Error::Config {
            location: location.to_string(),
            source: e,
        })?;
        let control = self.control();
        control.events.stage(
            "unpacking layers",
            image.manifest.layers.iter().map(|l| l.size).sum(),
        );
        let mut view = MergedView::new();
        for (i, desc) in image.manifest.layers.iter().enumerate() {
            let blob = target.resolved.source.blob(desc)?;
            read_layer(
                blob,
                desc,
                diff_ids.get(i),
                &mut |path, change, body| {
                    view.apply(
                        i,
                        crate::layer::merged::LayerChange {
                            path: path.clone(),
                            change: change.clone(),
                            content: None,
                        },
                    );
                    rootfs
                        .apply(&path, change, body)
                        .map_err(|e| VisitError(format!("unpacking `{path}`: {e}")))
                },
                &control.cancel,
            )
            .map_err(|e| layer_error(&location, e))?;
            view.applied(i);
        }
        let mut notes = Vec::new();
        if rootfs.skipped.devices > 0 {
            notes.push(format!(
                "{} device nodes not unpacked (a user namespace cannot use them)",
                rootfs.skipped.devices
            ));
        }
        if rootfs.skipped.unmapped > 0 {
            notes.push(format!(
                "{} owners above 65535 unpacked as the namespace's root",
                rootfs.skipped.unmapped
            ));
        }
        Ok(Bundle {
            _scratch: scratch,
            dir,
            rootfs: rootfs_path,
            view,
            notes,
        })
    }

    /// Runs the bundle one way; the run's verdict, and what was observed.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run_as(
        &self,
        bundle: &Bundle,
        launch: &Launch,
        mounts: &[(String, Option<(u64, u64)>)],
        way: &RunAs,
        n: usize,
        options: &VerifyOptions,
        user: Option<&str>,
    ) -> Result<(Run, runtime::Observed), Error> {
        let expected: Vec<u16> = launch.expected.iter().copied().collect();
        let Some((uid, gid)) = way.ids else {
            let run = Run {
                as_: way.as_.clone(),
                container: String::new(),
                uid: 0,
                gid: 0,
                passed: false,
                reasons: vec![format!(
                    "its `User` `{}` has no entry in the image's /etc/passwd: it cannot start",
                    user.unwrap_or_default()
                )],
                expected,
                listening: Vec::new(),
                exited: None,
                log: Vec::new(),
                denied: Vec::new(),
            };
            return Ok((run, runtime::Observed::default()));
        };
        let spec = RunSpec {
            args: launch.args.clone(),
            env: launch.env.clone(),
            cwd: launch.cwd.clone(),
            uid,
            gid,
            writable: mounts.to_vec(),
            ids: ID_MAP,
            profile: way.profile,
            trace: way.trace,
        };
        let config_path = bundle.dir.join("config.json");
        std::fs::write(
            &config_path,
            serde_json::to_vec_pretty(&runtime::config(&spec)).expect("serializes"),
        )
        .map_err(io("write", &config_path))?;
        let control = self.control();
        control.events.event(&Event::Running {
            as_: &way.as_,
            uid,
            gid,
        });
        let id = format!("unroot-verify-{}-{n}", std::process::id());
        let observed = runtime::run(
            &options.runtime,
            &bundle.dir,
            &id,
            &runtime::Watch {
                ports: &launch.expected,
                timeout: options.timeout,
                settle: options.settle,
                probe: options.probe.as_deref(),
                trace: way.trace,
            },
            &control.cancel,
        )?;
        control.cancel.check().map_err(|_| Error::Cancelled)?;
        let mut reasons = Vec::new();
        if uid == 0 && way.profile == runtime::Profile::Restricted {
            reasons.push(
                "it runs as root (uid 0): a restrictive runtime (`runAsNonRoot`) refuses it".into(),
            );
        }
        reasons.extend(verdict(&observed, &launch.expected, options));
        let run = Run {
            as_: way.as_.clone(),
            container: id,
            uid,
            gid,
            passed: reasons.is_empty(),
            reasons,
            expected,
            listening: observed.listening.iter().copied().collect(),
            exited: observed.exited,
            log: observed.log.clone(),
            denied: observed.denied.clone(),
        };
        Ok((run, observed))
    }
}

/// Why a run failed: its probes, its exit, the ports it did not listen on.
fn verdict(
    observed: &runtime::Observed,
    expected: &BTreeSet<u16>,
    options: &VerifyOptions,
) -> Vec<String> {
    let mut reasons = Vec::new();
    for (port, answer) in &observed.probes {
        let path = options.probe.as_deref().unwrap_or("/");
        match answer {
            Ok(status) if runtime::status_ok(status) => {}
            Ok(status) => reasons.push(format!("GET {path} on {port} answered `{status}`")),
            Err(e) => reasons.push(format!("GET {path} on {port} failed: {e}")),
        }
    }
    if let Some(code) = observed.exited {
        reasons.push(format!("it exited with code {code}"));
    }
    let missing: Vec<String> = expected
        .difference(&observed.listening)
        .map(u16::to_string)
        .collect();
    if !missing.is_empty() && observed.exited.is_none() {
        reasons.push(format!(
            "it did not listen on {} within {} s",
            missing.join(", "),
            options.timeout.as_secs()
        ));
    } else if !missing.is_empty() {
        reasons.push(format!("it never listened on {}", missing.join(", ")));
    }
    reasons
}

/// Exactly the contract's writable directories, where the image has them.
fn contract_mounts(
    contract: &crate::analyze::contract::RuntimeContract,
    bundle: &Bundle,
    notes: &mut Vec<String>,
) -> Vec<String> {
    let mut writable = Vec::new();
    for w in &contract.writable {
        let host = bundle.rootfs.join(w.trim_start_matches('/'));
        if host.is_dir() && !std::fs::symlink_metadata(&host).is_ok_and(|m| m.is_symlink()) {
            writable.push(w.clone());
        } else {
            notes.push(format!(
                "`{w}` (writable in the contract) is not a directory of the image: not mounted"
            ));
        }
    }
    writable
}

/// How the image's process starts: its command, environment, directory and user.
pub(super) fn launch(target: &Target, bundle: &Bundle) -> Result<Launch, Error> {
    let config = &target.image.config;
    let mut args = config.entrypoint();
    args.extend(config.cmd());
    if args.is_empty() {
        return Err(Error::Unsupported {
            location: target.resolved.source.location().to_string(),
            reason: "the image has neither `Entrypoint` nor `Cmd`: there is nothing to run".into(),
        });
    }
    // The account files as the container sees them.
    let read = |p: &str| bundle.read(&ImagePath::new(p)).unwrap_or_default();
    let passwd = accounts::parse_passwd(&read("/etc/passwd"));
    let groups = accounts::parse_group(&read("/etc/group"));
    let user = accounts::resolve_user(config.user(), &passwd, &groups);
    let mut env = config.env();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        let home = passwd
            .iter()
            .find(|p| Some(p.uid) == user.uid)
            .map_or("/".to_string(), |p| p.home.clone());
        env.push(format!("HOME={home}"));
    }
    let expected: BTreeSet<u16> = config
        .exposed_ports()
        .iter()
        .filter(|k| !k.ends_with("/udp") && !k.ends_with("/sctp"))
        .filter_map(|k| k.split('/').next()?.parse().ok())
        .collect();
    Ok(Launch {
        args,
        env,
        cwd: config
            .working_dir()
            .filter(|w| !w.is_empty())
            .unwrap_or("/")
            .to_string(),
        user: user
            .uid
            .and_then(|u| u32::try_from(u).ok())
            .map(|u| (u, user.gid.and_then(|g| u32::try_from(g).ok()).unwrap_or(0))),
        expected,
    })
}

fn io(op: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error {
    let file = FileError::of(op, path);
    move |source| Error::Io(file(source))
}

fn layer_error(location: &ImageLocation, e: LayerError) -> Error {
    Error::Layer {
        location: location.to_string(),
        source: Box::new(e),
    }
}

/// This machine's platform, to pick from an index.
fn host_platform() -> Result<Platform, Error> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    Ok(Platform::parse(&format!("linux/{arch}"))?)
}

/// A UID no image names, in group 0 (as OpenShift assigns one per namespace): from the
/// clock, between 10000 and 59999.
fn arbitrary_uid() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    10_000 + nanos % 50_000
}
