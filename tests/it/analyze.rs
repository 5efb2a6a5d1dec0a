//! `unroot analyze` and the reports: JSON against its schema, SARIF's shape, the runtime
//! contract, `--fail-on`, and the oracle: a converted image has no error left that unroot
//! fixes.

use std::path::Path;

use crate::support::{Scratch, TINY};

fn golden_names() -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("golden-images"))
            .unwrap()
            .flatten()
            .filter(|e| e.path().join("image/index.json").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
    names.sort();
    names
}

fn golden(name: &str) -> String {
    format!(
        "oci:{}/golden-images/{name}/image:latest",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/report-v1.schema.json"),
    )
    .unwrap();
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).expect("the schema is valid")
}

#[track_caller]
fn assert_valid(validator: &jsonschema::Validator, json: &serde_json::Value, what: &str) {
    let errors: Vec<String> = validator
        .iter_errors(json)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not match schemas/report-v1.schema.json:\n{}",
        errors.join("\n")
    );
}

#[test]
fn json_reports_match_the_schema_and_converted_images_keep_no_fixable_error() {
    let s = Scratch::new();
    let validator = schema();
    for name in golden_names() {
        let out = s
            .unroot(&["analyze", "-q", "--format", "json", &golden(&name)])
            .success();
        let before: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_valid(&validator, &before, &format!("analyze {name}"));
        // The schema is strict: a field it does not know is refused.
        let mut drifted = before.clone();
        drifted["summary"]["fatal"] = 1.into();
        assert!(
            !validator.is_valid(&drifted),
            "the schema accepts unknown fields"
        );

        let dest = format!("oci:{}:{name}", s.path("out").display());
        let out = s
            .unroot(&[
                "convert",
                "-q",
                "--format",
                "json",
                &golden(&name),
                "--to",
                &dest,
            ])
            .success();
        let converted: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_valid(&validator, &converted, &format!("convert {name}"));
        assert_eq!(converted["destination"]["location"], dest.as_str());

        // The oracle: analyzing the written image finds no error that unroot fixes, and
        // agrees with what convert said remains.
        let out = s
            .unroot(&["analyze", "-q", "--format", "json", &dest])
            .success();
        let after: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        let left: Vec<&serde_json::Value> = after["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["severity"] == "error" && f["fixer"] == "unroot")
            .collect();
        assert!(
            left.is_empty(),
            "{name}: errors unroot should have fixed remain: {left:#?}"
        );
        let ids = |v: &serde_json::Value| -> Vec<String> {
            v["findings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| format!("{} {}", f["id"], f["message"]))
                .collect()
        };
        assert_eq!(
            ids(&converted),
            ids(&after),
            "{name}: convert's report and the analysis of its output disagree"
        );
        // And it is a conversion that had something to do.
        let fixed = before["summary"]["fixable_by_unroot"].as_u64().unwrap();
        let fixed_after = after["summary"]["fixable_by_unroot"].as_u64().unwrap();
        assert!(
            fixed_after == 0 || fixed_after < fixed,
            "{name}: {fixed} -> {fixed_after}"
        );
    }
}

#[test]
fn sarif_is_shaped_for_code_scanning() {
    let s = Scratch::new();
    let out = s
        .unroot(&[
            "analyze",
            "-q",
            "--format",
            "sarif",
            &golden("nginx-official"),
        ])
        .success();
    let log: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(log["version"], "2.1.0");
    let run = &log["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    let ids: Vec<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let defined: Vec<&str> = unroot::analyze::rules().iter().map(|r| r.id).collect();
    assert_eq!(
        ids, defined,
        "every rule the code defines is described, in order"
    );
    for r in rules {
        for key in [
            "id",
            "name",
            "shortDescription",
            "fullDescription",
            "help",
            "defaultConfiguration",
        ] {
            assert!(!r[key].is_null(), "rule {} lacks {key}", r["id"]);
        }
        assert!(r["help"]["text"].as_str().unwrap().contains("Fix: "));
    }
    let results = run["results"].as_array().unwrap();
    assert!(!results.is_empty());
    for res in results {
        let index = res["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(
            rules[index]["id"], res["ruleId"],
            "ruleIndex points at the rule"
        );
        assert!(["error", "warning", "note"].contains(&res["level"].as_str().unwrap()));
        let loc = &res["locations"][0]["physicalLocation"];
        assert!(
            !loc["artifactLocation"]["uri"]
                .as_str()
                .unwrap()
                .starts_with('/'),
            "uris are relative"
        );
        // The message is the rule's summary, then what this finding is about.
        let summary = rules[index]["shortDescription"]["text"].as_str().unwrap();
        let text = res["message"]["text"].as_str().unwrap();
        let detail = text
            .strip_prefix(&format!("{summary}: "))
            .unwrap_or_else(|| panic!("`{text}` starts with `{summary}: `"));
        assert!(!detail.trim().is_empty(), "{text}");
    }
    let listen = results.iter().find(|r| r["ruleId"] == "UR203").unwrap();
    assert_eq!(
        listen["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "etc/nginx/conf.d/default.conf"
    );
    assert_eq!(
        listen["locations"][0]["physicalLocation"]["region"]["startLine"],
        2
    );
}

#[test]
fn emit_prints_the_contract_alone() {
    let s = Scratch::new();
    let out = s
        .unroot(&["analyze", "-q", "--emit", "k8s", &golden("nginx-official")])
        .success();
    for line in [
        "runAsNonRoot: true",
        "runAsUser: 101",
        "runAsGroup: 101",
        "fsGroup: 101",
        "fsGroupChangePolicy: OnRootMismatch",
        "allowPrivilegeEscalation: false",
        "readOnlyRootFilesystem: true",
        "drop: [\"ALL\"]",
        "type: RuntimeDefault",
        "containerPort: 8080",
        "mountPath: /var/cache/nginx",
        "name: var-cache-nginx",
    ] {
        assert!(out.stdout.contains(line), "{line} missing:\n{}", out.stdout);
    }
    let out = s
        .unroot(&[
            "analyze",
            "-q",
            "--emit",
            "docker",
            &golden("nginx-official"),
        ])
        .success();
    // The image `unroot convert` would write locally (to the default destination): not
    // written yet, said first in a comment, then loaded, then run.
    assert_eq!(
        out.stdout,
        format!(
            "# not written yet: `unroot convert` writes the image to {0}-unprivileged: run that first\n\
             skopeo copy {0}-unprivileged docker-daemon:localhost/nginx-official:latest-unprivileged\n\
             docker run --rm --read-only --tmpfs /run:uid=101,gid=0 --tmpfs /tmp --tmpfs /var/cache/nginx:uid=101,gid=0 --user 101:101 --cap-drop ALL --security-opt no-new-privileges -p 8080:8080 localhost/nginx-official:latest-unprivileged\n",
            golden("nginx-official")
        )
    );
    // Choices of the conversion shape the contract.
    let out = s
        .unroot(&[
            "analyze",
            "-q",
            "--emit",
            "docker",
            "--uid",
            "1234",
            "--port",
            "80:9000",
            &golden("nginx-official"),
        ])
        .success();
    assert!(
        out.stdout.contains("--user 1234:1234") && out.stdout.contains("-p 9000:9000"),
        "{}",
        out.stdout
    );
}

#[test]
fn fail_on_gates_the_exit_code() {
    let s = Scratch::new();
    let sample = golden("sample");
    s.unroot(&["analyze", "-q", &sample]).success();
    s.unroot(&["analyze", "-q", "--fail-on", "error", &sample])
        .failure(4);
    s.unroot(&["analyze", "-q", "--fail-on", "never", &sample])
        .success();
    // After conversion the sample has warnings left (the re-owned code is fixed; static
    // files stay the user's) but no errors.
    let dest = format!("oci:{}:x", s.path("out").display());
    s.unroot(&[
        "convert",
        "-q",
        &sample,
        "--to",
        &dest,
        "--fail-on",
        "error",
    ])
    .success();
    s.unroot(&["analyze", "-q", "--fail-on", "error", &dest])
        .success();
}

#[test]
fn reports_are_deterministic() {
    let s = Scratch::new();
    for format in ["text", "json", "sarif"] {
        let a = s
            .unroot(&[
                "analyze",
                "-q",
                "--format",
                format,
                &golden("apache-debian"),
            ])
            .success();
        let b = s
            .unroot(&[
                "analyze",
                "-q",
                "--format",
                format,
                &golden("apache-debian"),
            ])
            .success();
        assert_eq!(a.stdout, b.stdout, "{format}");
    }
}

#[test]
fn a_clean_image_reports_nothing() {
    let spec = r#"
[config]
User = "10001:10001"
ExposedPorts = ["8080/tcp"]
[[layer]]
[[layer.entry]]
path = "/etc/passwd"
text = "root:x:0:0:root:/root:/sbin/nologin\napp:x:10001:10001::/nonexistent:/sbin/nologin\n"
[[layer.entry]]
path = "/etc/group"
text = "root:x:0:\napp:x:10001:\n"
[[layer.entry]]
path = "/usr/bin/app"
size = 100
mode = 0o755
"#;
    let s = Scratch::new();
    let src = s.build("img", "v1", spec);
    let out = s
        .unroot(&[
            "analyze",
            "-q",
            "--format",
            "json",
            "--fail-on",
            "info",
            &src,
        ])
        .success();
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["findings"], serde_json::json!([]));
    assert_eq!(report["contract"]["read_only_root_filesystem"], true);
    let out = s.unroot(&["analyze", "-q", &src]).success();
    assert!(out.stdout.contains("\nno findings\n"), "{}", out.stdout);
}

#[test]
fn hostile_configs_give_findings_not_crashes() {
    // A config include loop, a symlink loop, and a config that is a directory.
    let spec = r#"
[[layer]]
[[layer.entry]]
path = "/usr/sbin/nginx"
size = 10
mode = 0o755
[[layer.entry]]
path = "/etc/nginx/nginx.conf"
text = "include /etc/nginx/nginx.conf;\ninclude /etc/nginx/loop;\ninclude /etc/nginx/dir;\nlisten 80;\n"
[[layer.entry]]
path = "/etc/nginx/loop"
type = "symlink"
target = "/etc/nginx/loop2"
[[layer.entry]]
path = "/etc/nginx/loop2"
type = "symlink"
target = "loop"
[[layer.entry]]
path = "/etc/nginx/dir"
type = "dir"
"#;
    let s = Scratch::new();
    let src = s.build("img", "v1", spec);
    let out = s.unroot(&["analyze", "-q", &src]).success();
    assert!(
        out.stdout
            .contains("/etc/nginx/loop: nginx config not checked: its path is a symlink loop"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("/etc/nginx/nginx.conf:4 (layer 1): nginx `listen` on port 80"),
        "{}",
        out.stdout
    );
}

#[test]
fn passwd_symlink_loop_is_a_clear_error() {
    let s = Scratch::new();
    let spec = format!("{TINY}\n[[layer]]\n[[layer.entry]]\npath = \"/etc/passwd\"\ntype = \"symlink\"\ntarget = \"/etc/passwd\"\n");
    let src = s.build("img", "v1", &spec);
    let out = s.unroot(&["analyze", &src]).failure(1);
    assert!(
        out.error_line()
            .contains("too many levels of symbolic links resolving `/etc/passwd`"),
        "{}",
        out.stderr
    );
}
