//! `Session::verify`: runs an image the way a restrictive runtime would and says whether
//! it serves. The image is analysed (for its runtime contract: user, ports, writable
//! directories), unpacked into a root filesystem in the work directory, and run with the
//! OCI runtime: as its `User`, and (when asked) as an arbitrary UID in group 0.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Serialize;

use crate::control::Event;
use crate::error::Error;
use crate::layer::accounts;
use crate::layer::reader::{read_layer, VisitError};
use crate::layer::LayerError;
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

impl Session {
    /// Verifies one image (see the module documentation).
    pub fn verify(&self, request: &VerifyRequest) -> Result<Verification, Error> {
        let result = self.verify_image(request);
        self.settle(result)
    }

    fn verify_image(&self, request: &VerifyRequest) -> Result<Verification, Error> {
        let location = &request.image.source;
        let platform = match &request.image.platform {
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
        // The namespace's root (an unprivileged host uid) must reach the bundle.
        if let Some(closed) = self.work_dir().ancestors().find(|a| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(a).is_ok_and(|m| m.permissions().mode() & 0o001 == 0)
        }) {
            return Err(Error::WorkDir {
                path: self.work_dir().to_path_buf(),
                reason: format!(
                    "is in `{}`, which others cannot enter, so the container's root (host uid {}) cannot reach its root filesystem; set TMPDIR to a directory all of whose parents others may enter (e.g. /var/tmp)",
                    closed.display(),
                    ID_MAP.base
                ),
            });
        }
        let analysis = self.analyze_image(&request.image, resolved.source.as_mut(), &image)?;

        // The root filesystem, in the work directory (removed with it).
        let scratch = self.scratch()?;
        let bundle = scratch.path().join("bundle");
        let rootfs_path = bundle.join("rootfs");
        let io = |op: &'static str, path: &std::path::Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { op, path, source }
        };
        for dir in [scratch.path(), bundle.as_path()] {
            std::fs::create_dir_all(dir).map_err(io("create", dir))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                .map_err(io("set the mode of", dir))?;
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
        for (i, desc) in image.manifest.layers.iter().enumerate() {
            let blob = resolved.source.blob(desc)?;
            read_layer(
                blob,
                desc,
                diff_ids.get(i),
                &mut |path, change, body| {
                    rootfs
                        .apply(&path, change, body)
                        .map_err(|e| VisitError(format!("unpacking `{path}`: {e}")))
                },
                &control.cancel,
            )
            .map_err(|e| layer_error(location, e))?;
        }

        let config = &image.config;
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
        // Exactly the contract's writable directories, where the image has them.
        let mut writable = Vec::new();
        for w in &analysis.contract.writable {
            let host = rootfs_path.join(w.trim_start_matches('/'));
            if host.is_dir() && !std::fs::symlink_metadata(&host).is_ok_and(|m| m.is_symlink()) {
                writable.push(w.clone());
            } else {
                notes.push(format!(
                    "`{w}` (writable in the contract) is not a directory of the image: not mounted"
                ));
            }
        }
        let mut args = config.entrypoint();
        args.extend(config.cmd());
        if args.is_empty() {
            return Err(Error::Unsupported {
                location: location.to_string(),
                reason: "the image has neither `Entrypoint` nor `Cmd`: there is nothing to run"
                    .into(),
            });
        }
        // The account files as the container sees them (not following links out).
        let read = |p: &str| {
            let host = rootfs_path.join(p);
            match std::fs::symlink_metadata(&host) {
                Ok(m) if m.is_file() => std::fs::read(&host).unwrap_or_default(),
                _ => Vec::new(),
            }
        };
        let passwd = accounts::parse_passwd(&read("etc/passwd"));
        let groups = accounts::parse_group(&read("etc/group"));
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

        let mut users: Vec<(String, Option<(u32, u32)>)> = vec![(
            "image user".into(),
            user.uid
                .and_then(|u| u32::try_from(u).ok())
                .map(|u| (u, user.gid.and_then(|g| u32::try_from(g).ok()).unwrap_or(0))),
        )];
        if request.options.arbitrary_uid {
            users.push(("arbitrary uid".into(), Some((arbitrary_uid(), 0))));
        }
        let mut runs = Vec::new();
        for (n, (as_, ids)) in users.into_iter().enumerate() {
            let mut reasons = Vec::new();
            let Some((uid, gid)) = ids else {
                reasons.push(format!(
                    "its `User` `{}` has no entry in the image's /etc/passwd: it cannot start",
                    config.user().unwrap_or_default()
                ));
                runs.push(Run {
                    as_,
                    container: String::new(),
                    uid: 0,
                    gid: 0,
                    passed: false,
                    reasons,
                    expected: expected.iter().copied().collect(),
                    listening: Vec::new(),
                    exited: None,
                    log: Vec::new(),
                    denied: Vec::new(),
                });
                continue;
            };
            if uid == 0 {
                reasons.push(
                    "it runs as root (uid 0): a restrictive runtime (`runAsNonRoot`) refuses it"
                        .into(),
                );
            }
            let spec = RunSpec {
                args: args.clone(),
                env: env.clone(),
                cwd: config
                    .working_dir()
                    .filter(|w| !w.is_empty())
                    .unwrap_or("/")
                    .to_string(),
                uid,
                gid,
                writable: writable
                    .iter()
                    .map(|w| (w.clone(), analysis.contract.tmpfs_owner(w)))
                    .collect(),
                ids: ID_MAP,
                profile: runtime::Profile::Restricted,
                trace: false,
            };
            let config_path = bundle.join("config.json");
            std::fs::write(
                &config_path,
                serde_json::to_vec_pretty(&runtime::config(&spec)).expect("serializes"),
            )
            .map_err(io("write", &config_path))?;
            control.events.event(&Event::Running {
                as_: &as_,
                uid,
                gid,
            });
            let id = format!("unroot-verify-{}-{n}", std::process::id());
            let observed = runtime::run(
                &request.options.runtime,
                &bundle,
                &id,
                &runtime::Watch {
                    ports: &expected,
                    timeout: request.options.timeout,
                    settle: request.options.settle,
                    probe: request.options.probe.as_deref(),
                    trace: false,
                },
                &control.cancel,
            )?;
            control.cancel.check().map_err(|_| Error::Cancelled)?;
            for (port, answer) in &observed.probes {
                let path = request.options.probe.as_deref().unwrap_or("/");
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
                    request.options.timeout.as_secs()
                ));
            } else if !missing.is_empty() {
                reasons.push(format!("it never listened on {}", missing.join(", ")));
            }
            runs.push(Run {
                as_,
                container: id,
                uid,
                gid,
                passed: reasons.is_empty(),
                reasons,
                expected: expected.iter().copied().collect(),
                listening: observed.listening.iter().copied().collect(),
                exited: observed.exited,
                log: observed.log,
                denied: observed.denied,
            });
        }
        Ok(Verification {
            location: location.to_string(),
            digest: analysis.digest.to_string(),
            passed: runs.iter().all(|r| r.passed),
            writable,
            runs,
            notes,
        })
    }
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
