//! The test that matters most: a converted image RUNS under a real OCI runtime (runc) in a
//! user namespace, as its numeric non-root user, with no effective capabilities,
//! `ip_unprivileged_port_start` at 1024, a read-only root filesystem and a tmpfs on /tmp;
//! and the original, run the same way, does not.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{tool, Output, Scratch};

/// A web server image as many are: root, port 80 from `$PORT`, busybox for everything.
pub(crate) const WEB: &str = r##"
[config]
Env = ["PATH=/bin", "PORT=80"]
ExposedPorts = ["80/tcp"]
Cmd = ["/bin/sh", "-c", "echo started > /tmp/started && exec httpd -f -v -p $PORT -h /srv/www"]

[[layer]]
[[layer.entry]]
path = "/bin/busybox"
host = "/bin/busybox"
mode = 0o755
[[layer.entry]]
path = "/bin/sh"
type = "symlink"
target = "busybox"
[[layer.entry]]
path = "/bin/httpd"
type = "symlink"
target = "busybox"
[[layer.entry]]
path = "/etc/passwd"
text = "root:x:0:0:root:/root:/bin/sh\n"
[[layer.entry]]
path = "/etc/group"
text = "root:x:0:\n"
[[layer.entry]]
path = "/tmp"
type = "dir"
mode = 0o1777
[[layer.entry]]
path = "/srv/www/index.html"
text = "hello from an unprivileged container\n"
"##;

/// A busybox web server image: `config` (TOML of `[config]`), busybox, the page, and
/// `entries` (more `[[layer.entry]]` tables).
fn busybox_web(config: &str, entries: &str) -> String {
    format!(
        "[config]\n{config}\n[[layer]]\n[[layer.entry]]\npath = \"/bin/busybox\"\nhost = \"/bin/busybox\"\nmode = 0o755\n[[layer.entry]]\npath = \"/srv/www/index.html\"\ntext = \"hello from an unprivileged container\\n\"\n{entries}"
    )
}

/// Root's account only.
const ROOT_PASSWD: &str =
    "[[layer.entry]]\npath = \"/etc/passwd\"\ntext = \"root:x:0:0:root:/root:/bin/sh\\n\"\n";

/// The server with no recipe and no port variable: the port is an argument of the command
/// (busybox `httpd -p 80`), which the conversion must move for it to start.
fn web_args() -> String {
    busybox_web(
        r#"Env = ["PATH=/bin"]
ExposedPorts = ["80/tcp"]
Cmd = ["/bin/busybox", "httpd", "-f", "-v", "-p", "80", "-h", "/srv/www"]"#,
        ROOT_PASSWD,
    )
}

/// The port is computed by the shell: nothing unroot can move.
fn web_computed() -> String {
    busybox_web(
        r#"Env = ["PATH=/bin"]
ExposedPorts = ["80/tcp"]
Cmd = ["/bin/busybox", "sh", "-c", "exec /bin/busybox httpd -f -p $((40 + 40)) -h /srv/www"]"#,
        ROOT_PASSWD,
    )
}

/// No /etc/passwd, /etc/group or /tmp at all.
fn web_bare() -> String {
    busybox_web(
        r#"ExposedPorts = ["80/tcp"]
Cmd = ["/bin/busybox", "httpd", "-f", "-v", "-p", "80", "-h", "/srv/www"]"#,
        "",
    )
}

/// The port is set in the entrypoint script the image runs (found on PATH, a link).
fn web_script() -> String {
    let script = r##"[[layer.entry]]
path = "/bin/sh"
type = "symlink"
target = "busybox"
[[layer.entry]]
path = "/bin/docker-entrypoint.sh"
type = "symlink"
target = "/docker-entrypoint.sh"
[[layer.entry]]
path = "/docker-entrypoint.sh"
mode = 0o755
text = """#!/bin/sh
set -e
# the server listens on 80
echo starting
exec /bin/busybox httpd -f -v -p 80 -h /srv/www
"""
"##;
    busybox_web(
        r#"Env = ["PATH=/bin"]
ExposedPorts = ["80/tcp"]
Entrypoint = ["docker-entrypoint.sh"]"#,
        &(script.to_string() + ROOT_PASSWD),
    )
}

/// The host range the container's ids map to, as podman does with a default /etc/subuid.
pub(crate) const HOST_BASE: u32 = 100_000;

/// An unpacked bundle, configured the strict way.
pub(crate) struct Bundle {
    dir: PathBuf,
}

impl Bundle {
    /// Unpacks `layout:tag` with umoci (ids shifted into the user namespace's range) and
    /// hardens its config: no effective capabilities, read-only root, tmpfs /tmp, privileged
    /// ports at 1024. `user` overrides the image's user (`(uid, gid)`).
    pub(crate) fn new(
        s: &Scratch,
        layout: &Path,
        tag: &str,
        name: &str,
        user: Option<(u32, u32)>,
    ) -> Bundle {
        let dir = s.path(name);
        let map = format!("0:{HOST_BASE}:65536");
        tool(
            "umoci",
            &[
                "unpack",
                "--uid-map",
                &map,
                "--gid-map",
                &map,
                "--image",
                &format!("{}:{tag}", layout.display()),
                dir.to_str().unwrap(),
            ],
        )
        .success();
        // The mapped root must be able to traverse the bundle (umoci makes it 0700).
        for d in [s.dir.path(), dir.as_path()] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let path = dir.join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let process = &mut config["process"];
        process["terminal"] = false.into();
        for set in ["effective", "inheritable", "permitted", "ambient"] {
            process["capabilities"][set] = serde_json::json!([]);
        }
        if let Some((uid, gid)) = user {
            process["user"] = serde_json::json!({"uid": uid, "gid": gid});
        }
        config["root"]["readonly"] = true.into();
        config["mounts"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "nodev", "mode=1777"]
            }));
        config["linux"]["sysctl"] =
            serde_json::json!({"net.ipv4.ip_unprivileged_port_start": "1024"});
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        Bundle { dir }
    }

    /// Mounts a tmpfs at each of the contract's writable directories but /tmp (which
    /// every bundle has), owned by `uid` and group 0 as the docker contract's
    /// `--tmpfs DIR:uid=UID,gid=0` does; runc gives each the mode of the directory it covers.
    pub(crate) fn mount_writable(&self, dirs: &[String], uid: u32) {
        let path = self.dir.join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let mounts = config["mounts"].as_array_mut().unwrap();
        for d in dirs.iter().filter(|d| *d != "/tmp") {
            mounts.push(serde_json::json!({
                "destination": d, "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "nodev", format!("uid={uid}"), "gid=0"]
            }));
        }
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    }

    /// Makes the run a plain one, as `docker run` without hardening flags would be: the
    /// root filesystem writable and nothing mounted on it (still no capabilities, a user
    /// namespace, privileged ports at 1024). umoci turns the image's `Volumes` into empty
    /// root-owned tmpfs mounts; docker and podman fill a new volume with the directory's
    /// content, owner and mode from the image, which the writable root itself gives here.
    pub(crate) fn writable_root(&self) {
        let path = self.dir.join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        config["root"]["readonly"] = false.into();
        config["mounts"].as_array_mut().unwrap().retain(|m| {
            let volume = m["type"] == "tmpfs" && m["source"] == "none";
            m["destination"] != "/tmp" && !volume
        });
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    }

    /// Runs in the foreground until the process exits (at most 20 s).
    pub(crate) fn run_to_exit(&self, id: &str) -> Output {
        let out = tool(
            "timeout",
            &[
                "20",
                "runc",
                "run",
                "--bundle",
                self.dir.to_str().unwrap(),
                id,
            ],
        );
        let _ = Command::new("runc").args(["delete", "-f", id]).output();
        out
    }

    /// Starts detached.
    pub(crate) fn start(&self, id: &str) -> Container {
        // Detached, the container inherits runc's stdio: give it none, or waiting for runc's
        // output would wait for the container.
        let status = Command::new("runc")
            .args(["run", "-d", "--bundle", self.dir.to_str().unwrap(), id])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("runc runs");
        if !status.success() {
            let out = self.run_to_exit(&format!("{id}-fg"));
            panic!(
                "runc could not start {id}; in the foreground:\n{}\n{}",
                out.stdout, out.stderr
            );
        }
        let state: serde_json::Value =
            serde_json::from_str(&tool("runc", &["state", id]).success().stdout).unwrap();
        Container {
            id: id.to_string(),
            pid: state["pid"].as_u64().unwrap() as u32,
        }
    }
}

/// A running container, killed and deleted when dropped.
pub(crate) struct Container {
    id: String,
    pub(crate) pid: u32,
}

impl Container {
    /// GETs `http://127.0.0.1:PORT/` inside the container's network namespace, retrying
    /// while the server starts.
    pub(crate) fn get(&self, port: u16) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        let url = format!("http://127.0.0.1:{port}/");
        loop {
            let out = tool(
                "nsenter",
                &[
                    "-t",
                    &self.pid.to_string(),
                    "-n",
                    "curl",
                    "-sS",
                    "--max-time",
                    "2",
                    &url,
                ],
            );
            if out.code == 0 || Instant::now() > deadline {
                assert_eq!(out.code, 0, "no answer on port {port}: {}", out.stderr);
                return out.stdout;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The host uid the process runs as.
    pub(crate) fn host_uid(&self) -> u32 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        line.split_whitespace().nth(2).unwrap().parse().unwrap()
    }
}

impl Container {
    /// Runs a command on the host inside the container's network namespace.
    pub(crate) fn in_netns(&self, cmd: &[&str]) -> Output {
        let pid = self.pid.to_string();
        let mut args = vec!["-t", pid.as_str(), "-n"];
        args.extend_from_slice(cmd);
        tool("nsenter", &args)
    }

    /// Whether the process still runs.
    pub(crate) fn alive(&self) -> bool {
        self.pid != 0 && Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("runc")
            .args(["kill", &self.id, "KILL"])
            .output();
        std::thread::sleep(Duration::from_millis(100));
        let _ = Command::new("runc")
            .args(["delete", "-f", &self.id])
            .output();
    }
}

pub(crate) fn unique(prefix: &str, s: &Scratch) -> String {
    let tail = s
        .dir
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .replace(|c: char| !c.is_ascii_alphanumeric(), "");
    format!("{prefix}-{tail}")
}

#[test]
fn converted_image_runs_unprivileged_and_the_original_does_not() {
    serves_unprivileged(WEB);
}

#[test]
fn a_port_on_the_command_line_moves_and_the_image_runs() {
    let s = serves_unprivileged(&web_args());
    // The report says where the port was, and nothing is left to fix.
    let src = format!("oci:{}:orig", s.path("img").display());
    let out = s
        .unroot(&["convert", "-q", "--dry-run", "--format", "json", &src])
        .success();
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        report["conversion"]["port_args"],
        serde_json::json!([{"location": "config.Cmd[5]", "from": 80, "to": 8080, "before": "80", "after": "8080"}])
    );
    assert_eq!(report["findings"], serde_json::json!([]), "{report:#}");
}

/// Converts `spec` and runs the original and the converted image the strict way: the
/// original cannot bind its port; the converted one serves on 8080 as its user and as an
/// arbitrary UID in group 0.
fn serves_unprivileged(spec: &str) -> Scratch {
    assert!(
        Path::new("/bin/busybox").is_file(),
        "the busybox-static package is needed; run ./scripts/test"
    );
    let s = Scratch::new();
    let src = s.build("img", "orig", spec);
    let layout = s.path("img");
    s.unroot(&[
        "convert",
        "-q",
        &src,
        "--to",
        &format!("oci:{}:unprivileged", layout.display()),
    ])
    .success();

    // The original, run the same way (its own user, root, with no capabilities), cannot
    // bind its port.
    let original = Bundle::new(&s, &layout, "orig", "orig-bundle", None);
    let out = original.run_to_exit(&unique("orig", &s));
    assert_ne!(out.code, 0, "the original ran: {}", out.stdout);
    assert!(
        out.stderr.contains("bind: Permission denied"),
        "{}",
        out.stderr
    );

    // Plain: as its user, the root filesystem writable, nothing mounted.
    let plain = Bundle::new(&s, &layout, "unprivileged", "plain-bundle", None);
    plain.writable_root();
    let c = plain.start(&unique("plain", &s));
    assert_eq!(c.get(8080), "hello from an unprivileged container\n");
    drop(c);

    // Read-only root and a tmpfs /tmp: the converted image serves on 8080 as uid 65532.
    let converted = Bundle::new(&s, &layout, "unprivileged", "conv-bundle", None);
    let c = converted.start(&unique("conv", &s));
    assert_eq!(c.get(8080), "hello from an unprivileged container\n");
    assert_eq!(
        c.host_uid(),
        HOST_BASE + 65532,
        "runs as the image's numeric user"
    );
    drop(c);

    // OpenShift style: an arbitrary UID in group 0.
    let arbitrary = Bundle::new(&s, &layout, "unprivileged", "any-bundle", Some((54321, 0)));
    let c = arbitrary.start(&unique("any", &s));
    assert_eq!(c.get(8080), "hello from an unprivileged container\n");
    assert_eq!(c.host_uid(), HOST_BASE + 54321);
    drop(c);
    s
}

/// Opens the scratch directory to others, so the container's root (an unprivileged host
/// uid) can reach the work directory below it.
fn reachable(s: &Scratch) {
    use std::os::unix::fs::PermissionsExt;
    for dir in [s.dir.path().to_path_buf(), s.tmp()] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// Whether a JSON list of lines has one containing `text`.
fn has_line(lines: &serde_json::Value, text: &str) -> bool {
    lines.as_array().is_some_and(|l| {
        l.iter()
            .any(|l| l.as_str().is_some_and(|l| l.contains(text)))
    })
}

/// `unroot verify IMAGE --arbitrary-uid --format json` in `s`, with its exit code.
pub(crate) fn verify(s: &Scratch, image: &str) -> (i32, serde_json::Value) {
    reachable(s);
    let out = s.unroot(&["verify", "-q", "--arbitrary-uid", "--format", "json", image]);
    let report: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", out.stdout, out.stderr));
    // Nothing is left: no bundle, no container.
    assert_eq!(crate::support::files_below(&s.tmp()), Vec::<String>::new());
    let list = tool("runc", &["list", "-q"]).success().stdout;
    for run in report["runs"].as_array().unwrap() {
        let id = run["container"].as_str().unwrap();
        assert!(!list.lines().any(|l| l == id), "container {id} left");
    }
    (out.code, report)
}

#[test]
fn verify_passes_converted_images_and_fails_the_originals_saying_why() {
    for (name, spec) in [("env", WEB.to_string()), ("args", web_args())] {
        let s = Scratch::new();
        let src = s.build("img", "orig", &spec);
        let converted = format!("oci:{}:unprivileged", s.path("img").display());
        s.unroot(&["convert", "-q", &src, "--to", &converted])
            .success();

        let (code, report) = verify(&s, &converted);
        assert_eq!(code, 0, "{name}: {report:#}");
        assert_eq!(report["passed"], true);
        let runs = report["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 2);
        for run in runs {
            assert_eq!(run["passed"], true, "{name}: {run:#}");
            assert_eq!(run["listening"], serde_json::json!([8080]));
        }
        assert_eq!(
            (runs[0]["uid"].as_u64(), runs[0]["gid"].as_u64()),
            (Some(65532), Some(65532))
        );
        assert_eq!(runs[1]["gid"], 0);
        assert_ne!(runs[1]["uid"], 65532);
        assert!(
            report["writable"]
                .as_array()
                .unwrap()
                .contains(&"/tmp".into()),
            "{report:#}"
        );

        // The original runs as root, and even so cannot bind its port.
        let (code, report) = verify(&s, &src);
        assert_eq!(code, 5, "{name}: {report:#}");
        let run = &report["runs"][0];
        assert_eq!(run["passed"], false);
        let reasons: Vec<&str> = run["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r.as_str())
            .collect();
        assert!(
            reasons.iter().any(|r| r.starts_with("it runs as root")),
            "{reasons:?}"
        );
        assert!(reasons.contains(&"it never listened on 80"), "{reasons:?}");
        assert!(
            has_line(&run["denied"], "bind: Permission denied"),
            "{run:#}"
        );
    }
}

#[test]
fn verify_fails_a_converted_image_whose_port_could_not_move() {
    let s = Scratch::new();
    let src = s.build("img", "orig", &web_computed());
    let converted = format!("oci:{}:unprivileged", s.path("img").display());
    let out = s
        .unroot(&["convert", "--format", "json", &src, "--to", &converted])
        .success();
    // The report already says so...
    let conversion: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(
        conversion["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["id"] == "UR206"),
        "{conversion:#}"
    );
    // `analyze` says beforehand what the conversion fixes and what it does not: the
    // analyzers run again over the converted image.
    let out = s
        .unroot(&["analyze", "-q", "--format", "json", &src])
        .success();
    let analysis: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let fixed: Vec<(String, bool)> = analysis["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_string(),
                f["fixed_by_convert"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(fixed.contains(&("UR101".into(), true)), "{fixed:?}");
    assert!(fixed.contains(&("UR201".into(), true)), "{fixed:?}");
    assert!(fixed.contains(&("UR206".into(), false)), "{fixed:?}");
    let fixed_count = fixed.iter().filter(|(_, f)| *f).count();
    assert_eq!(analysis["summary"]["fixable_by_unroot"], fixed_count);
    // ... and running it shows it.
    let (code, report) = verify(&s, &converted);
    assert_eq!(code, 5, "{report:#}");
    let run = &report["runs"][0];
    assert_eq!(run["passed"], false);
    assert_eq!(run["uid"], 65532);
    assert!(
        run["reasons"]
            .as_array()
            .unwrap()
            .contains(&"it never listened on 8080".into()),
        "{run:#}"
    );
    assert!(has_line(&run["log"], "bind: Permission denied"), "{run:#}");
}

#[test]
fn verify_needs_a_work_directory_the_container_can_reach() {
    let s = Scratch::new();
    let src = s.build("img", "orig", &web_args());
    // A temp dir in a directory only root may enter cannot be reached by uid 100000.
    use std::os::unix::fs::PermissionsExt;
    let closed = s.path("closed");
    std::fs::create_dir(&closed).unwrap();
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
    let tmp = closed.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let out = s
        .unroot_env(
            &["verify", "-q", &src],
            &[("TMPDIR", tmp.to_str().unwrap())],
        )
        .failure(3);
    assert!(
        out.stderr.contains("which others cannot enter"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("set TMPDIR"), "{}", out.stderr);
}

#[test]
fn convert_verify_writes_only_an_image_that_runs() {
    let s = Scratch::new();
    reachable(&s);
    // An image that serves once converted: written, and the report says it was run.
    let src = s.build("img", "orig", &web_args());
    let out = s
        .unroot(&[
            "convert",
            "-q",
            "--verify",
            "--format",
            "json",
            &src,
            "--to",
            "oci:good:v1",
        ])
        .success();
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let verified = report["destination"]["verified"].as_array().unwrap();
    assert_eq!(verified.len(), 2, "{report:#}");
    assert_eq!(
        verified[0],
        "as the image user 65532:65532: passed, listening on 8080"
    );
    assert!(s.path("good/index.json").is_file());
    // The same conversion without --verify writes the same image.
    let plain = s
        .unroot(&[
            "convert",
            "-q",
            "--format",
            "json",
            &src,
            "--to",
            "oci:plain:v1",
        ])
        .success();
    let plain: serde_json::Value = serde_json::from_str(&plain.stdout).unwrap();
    assert_eq!(
        plain["destination"]["digest"],
        report["destination"]["digest"]
    );
    // One whose port cannot move: nothing is written, exit 5, the reasons on stderr.
    let src = s.build("bad", "orig", &web_computed());
    let out = s
        .unroot(&["convert", "-q", "--verify", &src, "--to", "oci:bad-out:v1"])
        .failure(5);
    assert!(
        out.stderr.contains("the converted image does not run unprivileged, so nothing was written to oci:bad-out:v1: as the image user 65532:65532: failed: "),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("it never listened on 8080"),
        "{}",
        out.stderr
    );
    assert!(!s.path("bad-out").exists(), "something was written");
    assert_eq!(crate::support::files_below(&s.tmp()), Vec::<String>::new());
}

#[test]
fn a_port_in_the_entrypoint_script_moves_and_the_image_runs() {
    let s = serves_unprivileged(&web_script());
    let src = format!("oci:{}:orig", s.path("img").display());
    let out = s
        .unroot(&["convert", "-q", "--dry-run", "--format", "json", &src])
        .success();
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        report["conversion"]["port_args"],
        serde_json::json!([{
            "location": "/docker-entrypoint.sh:5",
            "from": 80,
            "to": 8080,
            "before": "exec /bin/busybox httpd -f -v -p 80 -h /srv/www",
            "after": "exec /bin/busybox httpd -f -v -p 8080 -h /srv/www"
        }])
    );
    let change = crate::support::change_of(&report, "/docker-entrypoint.sh");
    assert_eq!(change["reason"], "ports-moved");
    assert_eq!(change["after"], "0:0 0755");
    assert_eq!(report["findings"], serde_json::json!([]), "{report:#}");
    // Before the conversion, the analysis points at the line.
    let out = s
        .unroot(&["analyze", "-q", "--format", "json", &src])
        .success();
    let analysis: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(
        analysis["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["id"] == "UR205"
                && f["location"]["path"] == "/docker-entrypoint.sh"
                && f["location"]["line"] == 5
                && f["fixed_by_convert"] == true),
        "{analysis:#}"
    );
}

#[test]
fn an_image_without_accounts_or_tmp_converts_and_runs() {
    let s = serves_unprivileged(&web_bare());
    let converted = format!("oci:{}:unprivileged", s.path("img").display());
    let (code, report) = verify(&s, &converted);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["runs"][0]["uid"], 65532);
    assert!(
        report["writable"]
            .as_array()
            .unwrap()
            .contains(&"/tmp".into()),
        "{report:#}"
    );
}

#[test]
fn verify_probes_a_path_over_http_when_asked() {
    let s = Scratch::new();
    reachable(&s);
    let src = s.build("img", "orig", &web_args());
    let converted = format!("oci:{}:unprivileged", s.path("img").display());
    s.unroot(&["convert", "-q", &src, "--to", &converted])
        .success();
    s.unroot(&["verify", "-q", "--probe", "http:/index.html", &converted])
        .success();
    let out = s
        .unroot(&[
            "verify",
            "-q",
            "--probe",
            "http:/missing",
            "--format",
            "json",
            &converted,
        ])
        .failure(5);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let reasons = &report["runs"][0]["reasons"];
    assert!(
        has_line(
            reasons,
            "GET /missing on 8080 answered `HTTP/1.1 404 Not Found`"
        ),
        "{report:#}"
    );
    let out = s
        .unroot(&["verify", "--probe", "/healthz", &converted])
        .failure(2);
    assert!(out.stderr.contains("is not `http:/PATH`"), "{}", out.stderr);
}
