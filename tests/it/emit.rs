//! The runtime contract as it is printed: `--emit k8s` is a manifest the Kubernetes schema
//! and checkov's Kubernetes checks accept, and `--emit podman` prints commands that run
//! the converted image as written.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::{skopeo, tool, Registry, Scratch};

/// The offline checkers (`checkov`, `kubernetes-validate`), in the virtual environment
/// `./scripts/test` makes.
fn checker(name: &str) -> String {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "target",
        "checkers",
        "bin",
        name,
    ]
    .iter()
    .collect();
    assert!(
        path.exists(),
        "{} is needed by the tests; run ./scripts/test, which installs it",
        path.display()
    );
    path.to_string_lossy().into_owned()
}

/// Validates every resource of `file` against the Kubernetes OpenAPI schema (strict: no
/// unknown fields).
fn schema_valid(file: &Path) -> Result<(), String> {
    let out = tool(
        &checker("kubernetes-validate"),
        &["--strict", &file.to_string_lossy()],
    );
    if out.code == 0 {
        Ok(())
    } else {
        Err(format!("{}{}", out.stdout, out.stderr))
    }
}

/// checkov's Kubernetes checks of `file`: the ids passed and failed.
fn checkov(file: &Path) -> (Vec<String>, Vec<String>) {
    let out = tool(
        &checker("checkov"),
        &[
            "-f",
            &file.to_string_lossy(),
            "--framework",
            "kubernetes",
            "-o",
            "json",
            "--skip-download",
        ],
    );
    let json: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("checkov: {e}\n{}\n{}", out.stdout, out.stderr));
    let reports = match json {
        serde_json::Value::Array(all) => all,
        one => vec![one],
    };
    let ids = |kind: &str| -> Vec<String> {
        reports
            .iter()
            .flat_map(|r| r["results"][kind].as_array().cloned().unwrap_or_default())
            .map(|c| c["check_id"].as_str().unwrap().to_string())
            .collect()
    };
    (ids("passed_checks"), ids("failed_checks"))
}

/// The checks the manifest cannot pass because unroot cannot know the answer, each for
/// its reason: the service's health endpoint (probes), the workload's CPU and memory
/// (requests and limits), and the namespace (`kubectl apply -n`).
const THE_USERS_TO_SET: [&str; 7] = [
    "CKV_K8S_8",
    "CKV_K8S_9",
    "CKV_K8S_10",
    "CKV_K8S_11",
    "CKV_K8S_12",
    "CKV_K8S_13",
    "CKV_K8S_21",
];

/// The checks of what a conversion is for; each must pass: privilege escalation,
/// read-only root, root containers, capabilities (NET_RAW, all), securityContext at
/// both levels, seccomp, the service account token, a pinned image, a NetworkPolicy.
const MUST_PASS: [&str; 12] = [
    "CKV_K8S_20",
    "CKV_K8S_22",
    "CKV_K8S_23",
    "CKV_K8S_28",
    "CKV_K8S_37",
    "CKV_K8S_29",
    "CKV_K8S_30",
    "CKV_K8S_31",
    "CKV_K8S_38",
    "CKV_K8S_43",
    "CKV_K8S_14",
    "CKV2_K8S_6",
];

#[test]
fn the_kubernetes_manifest_passes_the_schema_and_checkov() {
    let s = Scratch::new();
    let registry = Registry::start();
    let src = s.build("web", "1", crate::runtime::WEB);
    registry.push(&src, "library/web:1", None);
    let destination = registry.image("library/web:1-unprivileged");
    let out = s
        .unroot(&[
            "convert",
            "-q",
            &registry.image("library/web:1"),
            "--to",
            &destination,
            "--emit",
            "k8s",
            "--k8s-network-policy",
            "--k8s-user-namespace",
        ])
        .success();
    // The image is the one pushed, pinned by its digest.
    let digest = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--format",
        "{{.Digest}}",
        &destination,
    ])
    .success()
    .stdout;
    let pinned = format!(
        "image: {}/library/web:1-unprivileged@{}\n",
        registry.addr,
        digest.trim()
    );
    assert!(
        out.stdout.contains(&pinned),
        "{pinned} missing in\n{}",
        out.stdout
    );
    let manifest = s.path("web.yaml");
    std::fs::write(&manifest, &out.stdout).unwrap();
    schema_valid(&manifest).unwrap_or_else(|e| panic!("{e}\n{}", out.stdout));
    let (passed, failed) = checkov(&manifest);
    for id in MUST_PASS {
        assert!(
            passed.iter().any(|p| p == id),
            "{id} did not pass: failed {failed:?}\n{}",
            out.stdout
        );
    }
    let unexpected: Vec<_> = failed
        .iter()
        .filter(|f| !THE_USERS_TO_SET.contains(&f.as_str()))
        .collect();
    assert!(
        unexpected.is_empty(),
        "{unexpected:?} failed\n{}",
        out.stdout
    );

    // The checkers do fail a manifest that is wrong: a writable root, an unknown field.
    let writable = s.path("writable.yaml");
    std::fs::write(
        &writable,
        out.stdout.replace(
            "readOnlyRootFilesystem: true",
            "readOnlyRootFilesystem: false",
        ),
    )
    .unwrap();
    let (_, failed) = checkov(&writable);
    assert!(failed.iter().any(|f| f == "CKV_K8S_22"), "{failed:?}");
    let unknown = s.path("unknown.yaml");
    std::fs::write(
        &unknown,
        out.stdout.replace("imagePullPolicy:", "imagePullPolcy:"),
    )
    .unwrap();
    let refused = schema_valid(&unknown).unwrap_err();
    assert!(refused.contains("imagePullPolcy"), "{refused}");

    // A Pod, from an analysis of an image written locally: the image is a placeholder,
    // said to be one.
    let layout = s.path("out");
    s.unroot(&[
        "convert",
        "-q",
        &src,
        "--to",
        &format!("oci:{}:v1", layout.display()),
    ])
    .success();
    let out = s
        .unroot(&[
            "analyze",
            "-q",
            &format!("oci:{}:v1", layout.display()),
            "--emit",
            "k8s-pod",
        ])
        .success();
    assert!(out.stdout.contains("kind: Pod\n"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("image: REGISTRY.EXAMPLE/out:unprivileged\n")
            && out.stdout.contains("in place of REGISTRY.EXAMPLE"),
        "{}",
        out.stdout
    );
    let pod = s.path("pod.yaml");
    std::fs::write(&pod, &out.stdout).unwrap();
    schema_valid(&pod).unwrap_or_else(|e| panic!("{e}\n{}", out.stdout));
    let (_, failed) = checkov(&pod);
    let unexpected: Vec<_> = failed
        .iter()
        // Not pinned (a placeholder), and no NetworkPolicy was asked for.
        .filter(|f| {
            !THE_USERS_TO_SET.contains(&f.as_str()) && *f != "CKV_K8S_43" && *f != "CKV2_K8S_6"
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "{unexpected:?} failed\n{}",
        out.stdout
    );
}

/// Runs `command` as `sh -c` would, with this machine's podman settings.
fn sh(command: &str, conf: &Path) -> std::process::Child {
    std::process::Command::new("sh")
        .args(["-c", command])
        .env("CONTAINERS_CONF", conf)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn the_podman_commands_run_the_converted_image_as_written() {
    let s = Scratch::new();
    let src = s.build("web", "1", crate::runtime::WEB);
    let name = format!("emit{}", std::process::id());
    let layout = s.path(&name);
    let out = s
        .unroot(&[
            "convert",
            "-q",
            &src,
            "--to",
            &format!("oci:{}:v1", layout.display()),
            "--emit",
            "podman",
        ])
        .success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    let reference = format!("localhost/{name}:v1");
    assert_eq!(
        lines,
        [
            format!(
                "skopeo copy oci:{}:v1 containers-storage:{reference}",
                layout.display()
            ),
            format!("podman run --rm --read-only --read-only-tmpfs=false --tmpfs /home/nonroot:U --tmpfs /tmp --user 65532:65532 --cap-drop ALL --security-opt no-new-privileges -p 8080:8080 {reference}"),
        ],
        "{}",
        out.stdout
    );
    // This machine's podman: runc (crun does not run here), no systemd, and limits
    // within the inherited ones. The commands are run as printed.
    let conf = s.path("containers.conf");
    std::fs::write(
        &conf,
        "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
    )
    .unwrap();
    let load = sh(lines[0], &conf).wait_with_output().unwrap();
    assert!(
        load.status.success(),
        "{}",
        String::from_utf8_lossy(&load.stderr)
    );
    let mut run = sh(lines[1], &conf);
    let deadline = Instant::now() + Duration::from_secs(60);
    let served = loop {
        let got = tool("curl", &["-sf", "http://127.0.0.1:8080/"]);
        if got.code == 0 {
            break got.stdout;
        }
        if let Some(status) = run.try_wait().unwrap() {
            let out = run.wait_with_output().unwrap();
            panic!(
                "podman run ended ({status}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(Instant::now() < deadline, "nothing served on 8080");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(
        served.contains("hello from an unprivileged container"),
        "{served}"
    );
    let _ = run.kill();
    let _ = run.wait();
    for args in [
        vec!["rm", "-f", "--all"],
        vec!["rmi", "-f", reference.as_str()],
    ] {
        let _ = std::process::Command::new("podman")
            .args(args)
            .env("CONTAINERS_CONF", &conf)
            .output();
    }
}

/// The Deployment of the bot that README gives: valid, and it passes checkov's checks but
/// those that depend on where it is deployed.
#[test]
fn the_readme_deployment_of_the_bot_passes_the_schema_and_checkov() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let from = readme
        .find("passes the restricted Pod Security")
        .expect("README has the bot's Deployment");
    let block = readme[from..]
        .split("```yaml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .unwrap();
    assert!(block.contains("kind: Deployment"), "{block}");
    let s = Scratch::new();
    let file = s.path("bot.yaml");
    std::fs::write(&file, block).unwrap();
    schema_valid(&file).unwrap_or_else(|e| panic!("{e}\n{block}"));
    let (passed, failed) = checkov(&file);
    // The digest of the image pushed, the namespace and the NetworkPolicy of the site are
    // the operator's; every other check passes.
    let site = ["CKV_K8S_43", "CKV_K8S_21", "CKV2_K8S_6"];
    let unexpected: Vec<_> = failed
        .iter()
        .filter(|f| !site.contains(&f.as_str()))
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:?} failed\n{block}");
    for id in MUST_PASS.iter().filter(|id| !site.contains(id)) {
        assert!(passed.iter().any(|p| p == id), "{id} did not pass\n{block}");
    }
    for id in THE_USERS_TO_SET.iter().filter(|id| !site.contains(id)) {
        assert!(passed.iter().any(|p| p == id), "{id} did not pass\n{block}");
    }
}
