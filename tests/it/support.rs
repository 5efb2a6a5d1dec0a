//! Test support: running the `unroot` binary, building images from specs, and starting the
//! real `distribution` registry (Debian `docker-registry`) on 127.0.0.1.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use unroot::imagespec::ImageSpec;
use unroot::model::{Digest, ImageLocation};

/// What a command printed and how it exited.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Panics with the whole output unless the command succeeded.
    #[track_caller]
    pub fn success(self) -> Output {
        assert_eq!(
            self.code, 0,
            "command failed:\n{}\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Panics unless the command failed with `code`; returns the output.
    #[track_caller]
    pub fn failure(self, code: i32) -> Output {
        assert_eq!(
            self.code, code,
            "expected exit {code}:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    /// The first line of stderr that starts with `error:`.
    #[track_caller]
    pub fn error_line(&self) -> &str {
        let errors: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect();
        assert_eq!(
            errors.len(),
            1,
            "expected exactly one error line in:\n{}",
            self.stderr
        );
        errors[0]
    }
}

fn output(cmd: &mut Command) -> Output {
    Output::of(
        cmd.output()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}")),
    )
}

impl Output {
    /// The output of a process that ended.
    pub fn of(out: std::process::Output) -> Output {
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// A scratch directory that also serves as `$HOME` for the commands, so no auth file of the
/// machine is read.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    /// A fresh scratch directory; kept after the test when `UNROOT_TEST_KEEP=1` (to look
    /// at what a failing test built).
    pub fn new() -> Scratch {
        let mut builder = tempfile::Builder::new();
        builder.prefix("unroot-test-");
        if std::env::var_os("UNROOT_TEST_KEEP").is_some_and(|v| v == "1") {
            builder.disable_cleanup(true);
        }
        Scratch {
            dir: builder.tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `unroot ARGS` with a clean environment.
    pub fn unroot(&self, args: &[&str]) -> Output {
        self.unroot_env(args, &[])
    }

    /// `unroot ARGS` with a clean environment, run in `dir`.
    pub fn unroot_in(&self, dir: &Path, args: &[&str]) -> Output {
        self.command(args, &[], Some(dir))
    }

    /// `unroot ARGS` with a clean environment plus `env`, run in the scratch directory.
    pub fn unroot_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.command(args, env, None)
    }

    fn command(&self, args: &[&str], env: &[(&str, &str)], dir: Option<&Path>) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_unroot"));
        // Relative locations (`--to oci:out`) land in the scratch directory, where the
        // tests look for what was (not) written; never in the checkout.
        cmd.current_dir(dir.unwrap_or(self.dir.path()));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("TMPDIR", self.tmp());
        for (k, v) in env {
            cmd.env(k, v);
        }
        output(&mut cmd)
    }

    /// A private temp dir for the command (to check that nothing is left in it).
    pub fn tmp(&self) -> PathBuf {
        let t = self.dir.path().join("tmp");
        std::fs::create_dir_all(&t).expect("tmp");
        t
    }

    /// Builds an image from spec text into `oci:<scratch>/<name>:<tag>`; returns the location.
    pub fn build(&self, name: &str, tag: &str, spec: &str) -> String {
        let loc = format!("oci:{}:{tag}", self.path(name).display());
        build(spec, &loc);
        loc
    }
}

/// Builds spec text into a location. With `UNROOT_TEST_KEEP_SPEC=FILE` the spec is also
/// written there, to rebuild the image by hand (`cargo run --example build_image`).
pub fn build(spec: &str, location: &str) -> Digest {
    if let Ok(keep) = std::env::var("UNROOT_TEST_KEEP_SPEC") {
        std::fs::write(keep, spec).expect("the spec can be kept");
    }
    let spec = ImageSpec::parse(spec, "test spec").expect("spec parses");
    spec.build(&ImageLocation::parse(location).expect("location"))
        .expect("image builds")
}

/// Runs a tool that the test suite needs; a missing tool is a failure, not a skip.
pub fn tool(name: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(name);
    cmd.args(args);
    match cmd.output() {
        Ok(out) => Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        },
        Err(e) => panic!("`{name}` is needed by the tests and could not run ({e}); run ./scripts/test, which installs it"),
    }
}

/// `skopeo ARGS` (plain HTTP allowed for the test registries).
pub fn skopeo(args: &[&str]) -> Output {
    tool("skopeo", args)
}

/// How a test registry authenticates.
enum Auth<'a> {
    Htpasswd(&'a str, &'a str),
    Token(&'a TokenServer),
}

/// A real registry on 127.0.0.1, stopped when dropped.
pub struct Registry {
    child: Child,
    _dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The storage root (to corrupt blobs on purpose).
    pub storage: PathBuf,
}

impl Registry {
    /// Starts a registry without authentication.
    pub fn start() -> Registry {
        Registry::start_inner("127.0.0.1", None, false, "")
    }

    /// Starts a registry without authentication on another loopback address, one that
    /// unroot does not treat as local (so TLS is required unless `--tls-verify=false`).
    pub fn start_on(host: &str) -> Registry {
        Registry::start_inner(host, None, false, "")
    }

    /// Starts a registry with htpasswd authentication for one user.
    pub fn start_with_auth(user: &str, password: &str) -> Registry {
        Registry::start_inner("127.0.0.1", Some(Auth::Htpasswd(user, password)), false, "")
    }

    /// Starts a registry with bearer-token authentication served by `tokens`.
    pub fn start_with_tokens(tokens: &TokenServer) -> Registry {
        Registry::start_inner("127.0.0.1", Some(Auth::Token(tokens)), false, "")
    }

    /// Starts a registry serving HTTPS with a self-signed certificate on `host`.
    pub fn start_tls(host: &str) -> Registry {
        Registry::start_inner(host, None, true, "")
    }

    /// Starts a registry serving HTTPS on `host` with a certificate of a test CA, with
    /// bearer-token authentication by `tokens`; returns it and the CA's certificate (trust
    /// it with `SSL_CERT_FILE`).
    pub fn start_trusted_tls_with_tokens(host: &str, tokens: &TokenServer) -> (Registry, PathBuf) {
        let registry = Registry::start_inner(host, Some(Auth::Token(tokens)), true, "");
        let ca = registry._dir.path().join("ca.crt");
        (registry, ca)
    }

    /// Starts a registry without authentication that sends its notifications (event
    /// envelopes) to `url` with `Authorization: Bearer TOKEN`.
    pub fn start_notifying(url: &str, token: &str) -> Registry {
        Registry::start_notifying_all(&[(url, token)])
    }

    /// Starts a registry without authentication that sends its notifications to each
    /// `(url, token)`.
    pub fn start_notifying_all(endpoints: &[(&str, &str)]) -> Registry {
        let mut notifications = String::from("notifications:\n  endpoints:\n");
        for (i, (url, token)) in endpoints.iter().enumerate() {
            notifications.push_str(&format!(
                "    - name: endpoint{i}\n      url: {url}\n      headers:\n        Authorization: [\"Bearer {token}\"]\n      timeout: 2s\n      threshold: 3\n      backoff: 1s\n"
            ));
        }
        Registry::start_inner("127.0.0.1", None, false, &notifications)
    }

    fn start_inner(host: &str, auth: Option<Auth<'_>>, tls: bool, extra: &str) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("unroot-registry-")
            .tempdir()
            .expect("temp dir");
        let storage = dir.path().join("storage");
        let port = TcpListener::bind(format!("{host}:0"))
            .expect("free port")
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("{host}:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            storage.display()
        );
        if tls {
            let (cert, key) = ca_signed(dir.path(), host);
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ));
        }
        match auth {
            Some(Auth::Htpasswd(user, password)) => {
                let htpasswd = dir.path().join("htpasswd");
                let out = tool("htpasswd", &["-Bbn", user, password]).success();
                std::fs::write(&htpasswd, out.stdout.trim()).expect("write htpasswd");
                config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: unroot-test\n    path: {}\n",
                    htpasswd.display()
                ));
            }
            Some(Auth::Token(tokens)) => config.push_str(&format!(
                "auth:\n  token:\n    realm: {}\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                tokens.realm,
                tokens.cert.display()
            )),
            None => {}
        }
        config.push_str(extra);
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write registry config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `docker-registry` ({e}); run ./scripts/test, which installs it"
                )
            });
        let registry = Registry {
            child,
            _dir: dir,
            addr,
            storage,
        };
        registry.wait_ready();
        registry
    }

    /// Stops the registry (SIGKILL), keeping its storage and address.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the stopped registry again, on the same address and storage.
    pub fn start_again(&mut self) {
        self.child = Command::new("docker-registry")
            .arg("serve")
            .arg(self._dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("restart docker-registry");
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(mut s) = TcpStream::connect(&self.addr) {
                let _ = s.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n");
                let mut buf = String::new();
                if s.read_to_string(&mut buf).is_ok() && buf.starts_with("HTTP/1.") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the registry on {} did not answer within 20 s", self.addr);
    }

    /// `docker://127.0.0.1:PORT/REPO`.
    pub fn image(&self, repo_tag: &str) -> String {
        format!("docker://{}/{repo_tag}", self.addr)
    }

    /// Pushes a local image with skopeo, without credentials; the digest of the manifest
    /// the registry got.
    pub fn push_digest(&self, from: &str, repo_tag: &str, dir: &Path) -> String {
        let digest_file = dir.join(format!("digest-{}", repo_tag.replace(['/', ':'], "_")));
        skopeo(&[
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--digestfile",
            digest_file.to_str().unwrap(),
            from,
            &self.image(repo_tag),
        ])
        .success();
        std::fs::read_to_string(&digest_file).expect("skopeo wrote the digest")
    }

    /// Pushes a local image with skopeo (an independent tool).
    pub fn push(&self, from: &str, repo_tag: &str, creds: Option<&str>) {
        let dest = self.image(repo_tag);
        let mut args = vec!["copy", "--quiet", "--dest-tls-verify=false"];
        if let Some(c) = creds {
            args.push("--dest-creds");
            args.push(c);
        }
        args.push(from);
        args.push(&dest);
        skopeo(&args).success();
    }

    /// Copies an image (every platform of an index) out of the registry with skopeo, which
    /// fails unless every blob it names is there and verifies.
    pub fn copy_out(&self, repo_tag: &str, layout: &Path) {
        skopeo(&[
            "copy",
            "--quiet",
            "--all",
            "--src-tls-verify=false",
            &self.image(repo_tag),
            &format!("oci:{}:copy", layout.display()),
        ])
        .success();
    }

    /// The file holding a blob in the registry's storage.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Whether a tag exists (asked with skopeo).
    pub fn has_tag(&self, repo_tag: &str, creds: Option<&str>) -> bool {
        let image = self.image(repo_tag);
        let mut args = vec!["inspect", "--raw", "--tls-verify=false"];
        if let Some(c) = creds {
            args.push("--creds");
            args.push(c);
        }
        args.push(&image);
        skopeo(&args).code == 0
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Flips one byte in the middle of a file, keeping its size.
pub fn corrupt(path: &Path) {
    let mut bytes = std::fs::read(path).expect("read blob");
    let i = bytes.len() / 2;
    bytes[i] ^= 0xff;
    std::fs::write(path, bytes).expect("write blob");
}

/// Every file below `dir`, relative, sorted (to check that nothing was left behind).
pub fn files_below(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap().display().to_string());
            if p.is_dir() {
                walk(base, &p, out);
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The sample image spec, as committed.
pub fn sample_spec() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("golden-images/sample/spec.toml"),
    )
    .expect("sample spec")
}

/// A minimal valid image spec with a root user and one port.
pub const TINY: &str = r##"
[config]
Env = ["PORT=80"]
ExposedPorts = ["80/tcp"]

[[layer]]
[[layer.entry]]
path = "/etc"
type = "dir"
[[layer.entry]]
path = "/etc/passwd"
text = "root:x:0:0:root:/root:/bin/sh\n"
[[layer.entry]]
path = "/etc/group"
text = "root:x:0:\n"
[[layer.entry]]
path = "/bin/app"
text = "#!/bin/sh\n"
mode = 0o755
"##;

/// Parses a JSON file.
/// The entry of a conversion report's new layer for `path` (`conversion.changes`).
pub fn change_of<'a>(report: &'a serde_json::Value, path: &str) -> &'a serde_json::Value {
    report["conversion"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == path)
        .unwrap_or_else(|| panic!("{path} is not in the new layer: {report:#}"))
}

pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

/// The file of a blob in an OCI layout.
pub fn layout_blob(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// The manifest of the image tagged `tag` in an OCI layout (its first image for `None`).
pub fn layout_manifest(layout: &Path, tag: Option<&str>) -> serde_json::Value {
    let index = read_json(&layout.join("index.json"));
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| tag.is_none_or(|t| m["annotations"]["org.opencontainers.image.ref.name"] == t))
        .expect("the tag is in the layout");
    read_json(&layout_blob(layout, entry["digest"].as_str().unwrap()))
}

/// Edits the image `tag` of an OCI layout in place: `edit` changes the config JSON; the
/// config, manifest and index are rewritten with the new digests.
pub fn edit_config(layout: &Path, tag: &str, edit: impl FnOnce(&mut serde_json::Value)) {
    let blob = |d: &str| layout_blob(layout, d);
    let put = |bytes: &[u8]| -> String {
        let d = unroot::model::Digest::sha256_of(bytes).to_string();
        std::fs::write(blob(&d), bytes).unwrap();
        d
    };
    let index_path = layout.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .expect("tag in layout");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(entry["digest"].as_str().unwrap())).unwrap())
            .unwrap();
    let mut config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(blob(manifest["config"]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    edit(&mut config);
    let config_bytes = serde_json::to_vec(&config).unwrap();
    manifest["config"]["digest"] = put(&config_bytes).into();
    manifest["config"]["size"] = config_bytes.len().into();
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    entry["digest"] = put(&manifest_bytes).into();
    entry["size"] = manifest_bytes.len().into();
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
}

/// A self-signed certificate and its key, made with `openssl` in `dir`, for `name`, with
/// `extensions` (`-addext` values).
pub fn self_signed(dir: &Path, name: &str, extensions: &[&str]) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let subject = format!("/CN={name}");
    let mut args = vec![
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", &subject,
    ];
    for e in extensions {
        args.extend(["-addext", e]);
    }
    args.extend([
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]);
    tool("openssl", &args).success();
    (cert, key)
}

/// A certificate for `host` signed by a test CA made for it, both in `dir`: `ca.crt` (trust
/// it to trust the host), `{host}.crt` and its key.
fn ca_signed(dir: &Path, host: &str) -> (PathBuf, PathBuf) {
    let (ca, ca_key) = self_signed(
        dir,
        "ca",
        &[
            "basicConstraints=critical,CA:TRUE",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    let (cert, key, csr, ext) = (
        dir.join(format!("{host}.crt")),
        dir.join(format!("{host}.key")),
        dir.join(format!("{host}.csr")),
        dir.join(format!("{host}.ext")),
    );
    let subject = format!("/CN={host}");
    tool(
        "openssl",
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &subject,
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            csr.to_str().unwrap(),
        ],
    )
    .success();
    std::fs::write(
        &ext,
        format!("subjectAltName=IP:{host}\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n"),
    )
    .unwrap();
    tool(
        "openssl",
        &[
            "x509",
            "-req",
            "-days",
            "1",
            "-in",
            csr.to_str().unwrap(),
            "-CA",
            ca.to_str().unwrap(),
            "-CAkey",
            ca_key.to_str().unwrap(),
            "-CAcreateserial",
            "-extfile",
            ext.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ],
    )
    .success();
    (cert, key)
}

pub use crate::tokens::{TokenServer, TOKEN_ISSUER, TOKEN_SERVICE};

/// A real PostgreSQL 15 server (Debian's), made by `initdb` in a temp dir and run by
/// `pg_ctl` as the unprivileged user `nobody` on 127.0.0.1; stopped when dropped.
pub struct Postgres {
    dir: tempfile::TempDir,
    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub url: String,
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn as_nobody(program: &str, args: &[&str]) -> Output {
    let mut full = vec!["--reuid=65534", "--regid=65534", "--clear-groups", program];
    full.extend_from_slice(args);
    Output::of(
        Command::new("setpriv")
            .args(&full)
            .output()
            .unwrap_or_else(|e| panic!("cannot run setpriv {program}: {e}")),
    )
}

impl Postgres {
    /// Starts a server with trust authentication for the user `postgres`.
    pub fn start() -> Postgres {
        Postgres::start_inner(None)
    }

    /// Starts a server where TCP logins need a password (SCRAM), with a role `user` of
    /// that password owning a database of the same name; `url` logs in as it.
    pub fn start_with_password(user: &str, password: &str) -> Postgres {
        Postgres::start_inner(Some((user, password)))
    }

    fn start_inner(login: Option<(&str, &str)>) -> Postgres {
        use std::os::unix::fs::{chown, PermissionsExt};
        let dir = tempfile::Builder::new()
            .prefix("unroot-postgres-")
            .tempdir()
            .expect("temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        chown(dir.path(), Some(65534), Some(65534)).unwrap();
        let data = dir.path().join("data");
        let initdb = format!("{PG_BIN}/initdb");
        assert!(
            Path::new(&initdb).exists(),
            "{initdb} is missing; run ./scripts/test, which installs postgresql-15"
        );
        as_nobody(
            &initdb,
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth-local=trust",
                if login.is_some() {
                    "--auth-host=scram-sha-256"
                } else {
                    "--auth-host=trust"
                },
                "--no-sync",
            ],
        )
        .success();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let options = format!(
            "-k {} -p {port} -h 127.0.0.1 -c fsync=off -c max_connections=200",
            dir.path().display()
        );
        let log = dir.path().join("server.log");
        as_nobody(
            &format!("{PG_BIN}/pg_ctl"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
        .success();
        let Some((user, password)) = login else {
            return Postgres {
                dir,
                url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            };
        };
        // Over the Unix socket, where `postgres` is trusted.
        let socket = dir.path().to_str().unwrap().to_string();
        let port_arg = port.to_string();
        for sql in [
            format!("CREATE ROLE {user} LOGIN PASSWORD '{password}'"),
            format!("CREATE DATABASE {user} OWNER {user}"),
        ] {
            as_nobody(
                "psql",
                &[
                    "-h", &socket, "-p", &port_arg, "-U", "postgres", "-d", "postgres", "-c", &sql,
                ],
            )
            .success();
        }
        Postgres {
            dir,
            url: format!("postgres://{user}:{password}@127.0.0.1:{port}/{user}"),
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = as_nobody(
            &format!("{PG_BIN}/pg_ctl"),
            &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"],
        );
    }
}
