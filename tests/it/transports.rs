//! Conversions between every transport, checked by reading the results back with skopeo and
//! umoci (independent implementations) and with unroot itself.

use std::path::Path;

use crate::support::{sample_spec, skopeo, tool, Scratch};

pub(crate) fn inspect(location: &str) -> serde_json::Value {
    let out = skopeo(&["inspect", "--tls-verify=false", location]).success();
    serde_json::from_str(&out.stdout).expect("skopeo prints JSON")
}

pub(crate) fn inspect_config(location: &str) -> serde_json::Value {
    let out = skopeo(&["inspect", "--config", "--tls-verify=false", location]).success();
    serde_json::from_str(&out.stdout).expect("skopeo prints JSON")
}

pub(crate) fn raw_manifest(location: &str) -> serde_json::Value {
    let out = skopeo(&["inspect", "--raw", "--tls-verify=false", location]).success();
    serde_json::from_str(&out.stdout).expect("skopeo prints JSON")
}

pub(crate) fn layers(v: &serde_json::Value) -> Vec<String> {
    v["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect()
}

/// Checks the converted sample: numeric user, moved ports, one more layer, same base layers.
#[track_caller]
pub(crate) fn check_converted_sample(source: &str, converted: &str) {
    let before = inspect(source);
    let after = inspect(converted);
    let (b, a) = (layers(&before), layers(&after));
    assert_eq!(a.len(), b.len() + 1, "one new layer");
    // Docker archives hold layers uncompressed, so compare those by diff_id.
    if !source.starts_with("docker-archive:") && !converted.starts_with("docker-archive:") {
        assert_eq!(&a[..b.len()], &b[..], "base layers reused as they are");
    }
    let diff_ids = |c: &serde_json::Value| -> Vec<String> {
        c["rootfs"]["diff_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_string())
            .collect()
    };
    let (b, a) = (
        diff_ids(&inspect_config(source)),
        diff_ids(&inspect_config(converted)),
    );
    assert_eq!(&a[..b.len()], &b[..], "base layers unchanged");
    let config = inspect_config(converted);
    assert_eq!(config["config"]["User"], "1000:1000");
    let ports: Vec<&String> = config["config"]["ExposedPorts"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(ports, ["8080/tcp", "8443/tcp"]);
    assert!(config["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "PORT=8080"));
    assert_eq!(
        config["config"]["Labels"]["maintainer"], "unroot tests",
        "labels kept"
    );
    let history = config["history"].as_array().unwrap();
    assert!(history.last().unwrap()["comment"]
        .as_str()
        .unwrap()
        .starts_with("unroot: USER 1000:1000"));
}

/// Unpacks an OCI layout image with umoci and returns the rootfs path.
pub(crate) fn umoci_unpack(
    s: &Scratch,
    layout: &Path,
    tag: &str,
    into: &str,
) -> std::path::PathBuf {
    let bundle = s.path(into);
    tool(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:{tag}", layout.display()),
            bundle.to_str().unwrap(),
        ],
    )
    .success();
    bundle.join("rootfs")
}

pub(crate) fn owner(path: &Path) -> (u32, u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

#[test]
fn oci_to_same_layout_with_default_tag() {
    let s = Scratch::new();
    let src = s.build("img", "v1", &sample_spec());
    let out = s.unroot(&["convert", &src]).success();
    let dest = format!("oci:{}:v1-unprivileged", s.path("img").display());
    assert!(
        out.stdout.contains(&format!("to {dest}\n  source sha256:")),
        "{}",
        out.stdout
    );
    check_converted_sample(&src, &dest);

    // Both tags are in the layout; the source is untouched.
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.path("img/index.json")).unwrap()).unwrap();
    let tags: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(tags, ["v1", "v1-unprivileged"]);

    // umoci unpacks it; ownership is as planned.
    let rootfs = umoci_unpack(&s, &s.path("img"), "v1-unprivileged", "bundle");
    assert_eq!(owner(&rootfs.join("app/bin/server")), (0, 0, 0o755));
    assert_eq!(owner(&rootfs.join("app/lib/libapp.so.1")), (0, 0, 0o644));
    assert_eq!(owner(&rootfs.join("app/bin")), (0, 0, 0o755));
    assert_eq!(owner(&rootfs.join("app/cache")), (1000, 0, 0o770));
    assert_eq!(owner(&rootfs.join("data")), (1000, 0, 0o775));
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(
        passwd.ends_with("app:x:1000:1000:app:/home/app:/bin/sh\n"),
        "{passwd}"
    );
}

#[test]
fn oci_to_docker_archive_and_back() {
    let s = Scratch::new();
    let src = s.build("img", "v1", &sample_spec());
    let archive = s.path("out.tar");
    let dest = format!(
        "docker-archive:{}:example.com/sample:v1-unprivileged",
        archive.display()
    );
    s.unroot(&["convert", "-q", &src, "--to", &dest]).success();
    check_converted_sample(&src, &format!("docker-archive:{}", archive.display()));
    // The archive is what `docker load` reads: manifest.json with RepoTags and layer tars.
    let listing = tool("tar", &["-tf", archive.to_str().unwrap()])
        .success()
        .stdout;
    assert!(listing.lines().any(|l| l == "manifest.json"), "{listing}");
    assert_eq!(
        listing.lines().filter(|l| l.ends_with(".tar")).count(),
        3,
        "{listing}"
    );

    // unroot reads what it wrote: converting it again finds its own history entry, and
    // copies it unchanged where `--to` says.
    let again = format!("oci-archive:{}:again", s.path("again.tar").display());
    let out = s
        .unroot(&[
            "convert",
            "-q",
            &format!("docker-archive:{}", archive.display()),
            "--to",
            &again,
        ])
        .success();
    assert!(
        out.stdout.contains(
            "\nalready converted (its history has `unroot convert`): copied unchanged\n       to "
        ),
        "{}",
        out.stdout
    );
    assert!(s.path("again.tar").exists());
    // The copy keeps the docker archive's (docker-typed) manifest byte for byte; skopeo 1.9
    // finds such an entry of an OCI index by position, not by its ref name.
    let copied = format!("oci-archive:{}", s.path("again.tar").display());
    let raw = skopeo(&["inspect", "--raw", &copied]).success();
    assert!(raw
        .stdout
        .contains("application/vnd.docker.distribution.manifest.v2+json"));
}

#[test]
fn skopeo_made_archives_convert() {
    let s = Scratch::new();
    let src = s.build("img", "v1", &sample_spec());
    let oci_archive = format!("oci-archive:{}:v1", s.path("in-oci.tar").display());
    let docker_archive = format!(
        "docker-archive:{}:sample:v1",
        s.path("in-docker.tar").display()
    );
    skopeo(&["copy", "--quiet", &src, &oci_archive]).success();
    skopeo(&["copy", "--quiet", &src, &docker_archive]).success();
    for (input, name) in [(&oci_archive, "a"), (&docker_archive, "b")] {
        let dest = format!("oci:{}:out", s.path(name).display());
        s.unroot(&["convert", "-q", input, "--to", &dest]).success();
        check_converted_sample(input, &dest);
    }
    // The default destination of an archive is a sibling file.
    s.unroot(&["convert", "-q", &oci_archive]).success();
    assert!(s.path("in-oci-unprivileged.tar").is_file());
}

#[test]
fn same_input_gives_same_digests() {
    let s = Scratch::new();
    let src = s.build("img", "v1", &sample_spec());
    let a = format!("oci:{}:a", s.path("out").display());
    let b = format!("oci:{}:b", s.path("out2").display());
    s.unroot(&["convert", "-q", &src, "--to", &a]).success();
    s.unroot(&["convert", "-q", &src, "--to", &b]).success();
    assert_eq!(inspect(&a)["Digest"], inspect(&b)["Digest"]);
    // SOURCE_DATE_EPOCH sets the times, and so changes the digest.
    let c = format!("oci:{}:c", s.path("out3").display());
    s.unroot_env(
        &["convert", "-q", &src, "--to", &c],
        &[("SOURCE_DATE_EPOCH", "86400")],
    )
    .success();
    assert_eq!(inspect_config(&c)["created"], "1970-01-02T00:00:00Z");
    assert_ne!(inspect(&a)["Digest"], inspect(&c)["Digest"]);
}

#[test]
fn layer_formats_and_whiteouts_are_merged() {
    // zstd, uncompressed and two-member gzip layers; a whiteout and an opaque directory.
    let spec = r#"
[config]
User = "svc"

[[layer]]
compression = "zstd"
[[layer.entry]]
path = "/etc/passwd"
text = "root:x:0:0:root:/root:/bin/sh\nsvc:x:500:500::/srv:/bin/sh\n"
[[layer.entry]]
path = "/srv"
type = "dir"
uid = 500
gid = 500
[[layer.entry]]
path = "/srv/old-tool"
text = "old"
mode = 0o755
uid = 500
[[layer.entry]]
path = "/opt/stale"
type = "dir"
uid = 500
[[layer.entry]]
path = "/opt/stale/bin"
text = "x"
mode = 0o755
uid = 500

[[layer]]
compression = "none"
[[layer.entry]]
path = "/srv/old-tool"
type = "whiteout"
[[layer.entry]]
path = "/opt/stale"
type = "opaque"

[[layer]]
compression = "gzip"
multi_member = true
[[layer.entry]]
path = "/srv/tool"
size = 300000
mode = 0o755
uid = 500
[[layer.entry]]
path = "/srv/data"
type = "dir"
uid = 500
"#;
    let s = Scratch::new();
    let src = s.build("img", "v1", spec);
    let out = s
        .unroot(&[
            "convert",
            &src,
            "--to",
            &format!("oci:{}:x", s.path("out").display()),
        ])
        .success();
    // The whited-out tool is not re-owned; the new one is; the opaque dir lost its binary.
    assert!(!out.stdout.contains("/srv/old-tool"), "{}", out.stdout);
    assert!(!out.stdout.contains("/opt/stale/bin"), "{}", out.stdout);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.contains("/srv/tool") && l.contains("500:0 0755 -> 0:0 0755")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("user      svc -> 500:500"),
        "{}",
        out.stdout
    );
    // umoci cannot read zstd layers, so the new layer is listed with GNU tar.
    assert_eq!(
        new_layer_listing(&s.path("out"), "x"),
        [
            // No /etc/group in the image: one is made with the user's group.
            "-rw-r--r-- 0/0 21 etc/group",
            // Directories of the service user become writable unless they hold code.
            "drwxrwxr-x 500/0 0 opt/stale/",
            "drwxr-xr-x 0/0 0 srv/",
            "drwxrwxr-x 500/0 0 srv/data/",
            "-rwxr-xr-x 0/0 300000 srv/tool",
            // No /tmp in the image: the runtime contract needs one.
            "drwxrwxrwt 0/0 0 tmp/",
        ]
    );
    // Layers read one at a time or all at once merge the same way, to the same image.
    for jobs in ["1", "4"] {
        let to = format!("oci:{}:jobs{jobs}", s.path("out").display());
        s.unroot(&["convert", "-q", &src, "--jobs", jobs, "--to", &to])
            .success();
        assert_eq!(
            inspect(&to)["Digest"],
            inspect(&format!("oci:{}:x", s.path("out").display()))["Digest"],
            "--jobs {jobs}"
        );
    }
}

/// `tar -tvz` of the last layer of an image in a layout: mode, owner, size, name.
fn new_layer_listing(layout: &Path, tag: &str) -> Vec<String> {
    let manifest = crate::support::layout_manifest(layout, Some(tag));
    let last = manifest["layers"].as_array().unwrap().last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let out = tool(
        "tar",
        &[
            "--numeric-owner",
            "-tvzf",
            crate::support::layout_blob(layout, &last).to_str().unwrap(),
        ],
    )
    .success();
    out.stdout
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            format!("{} {} {} {}", f[0], f[1], f[2], f[5..].join(" "))
        })
        .collect()
}

#[test]
fn converting_a_converted_image_is_a_no_op() {
    let s = Scratch::new();
    let src = s.build("img", "v1", &sample_spec());
    let once = format!("oci:{}:once", s.path("img").display());
    s.unroot(&["convert", "-q", &src, "--to", &once]).success();
    let entries = || {
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(s.path("img/index.json")).unwrap()).unwrap();
        index["manifests"].as_array().unwrap().len()
    };
    // No `--to`: nothing to do, nothing written.
    let out = s.unroot(&["convert", "-q", &once]).success();
    assert!(
        out.stdout.starts_with(&format!("{once}\n  digest sha256:"))
            && out.stdout.ends_with(
                "\nalready converted (its history has `unroot convert`): nothing to do\n"
            ),
        "{}",
        out.stdout
    );
    assert_eq!(entries(), 2, "nothing was written");
    // `--to`: copied there unchanged, so that the next step finds it.
    let twice = format!("oci:{}:twice", s.path("img").display());
    let out = s
        .unroot(&["convert", "-q", &once, "--to", &twice])
        .success();
    let digest = crate::support::layout_manifest(&s.path("img"), Some("once"));
    let copied = crate::support::layout_manifest(&s.path("img"), Some("twice"));
    assert_eq!(digest, copied, "the same manifest");
    assert!(
        out.stdout.contains(&format!(
            "copied unchanged\n       to {twice}\n  digest sha256:"
        )),
        "{}",
        out.stdout
    );
    assert_eq!(entries(), 3);
    let out = s
        .unroot(&["convert", "-q", "--format", "json", &once, "--to", &twice])
        .success();
    let notice: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(notice["already_converted"]["created_by"], "unroot convert");
    assert_eq!(
        notice["already_converted"]["copied_to"]["location"],
        twice.as_str()
    );
    let schema: serde_json::Value = serde_json::from_slice(
        &std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/report-v1.schema.json"))
            .unwrap(),
    )
    .unwrap();
    assert!(jsonschema::validator_for(&schema)
        .unwrap()
        .is_valid(&notice));
    // SARIF asked, SARIF given: a run with no results and a notification saying why.
    let out = s
        .unroot(&["convert", "-q", "--format", "sarif", &once, "--to", &twice])
        .success();
    let sarif: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    let run = &sarif["runs"][0];
    assert_eq!(run["results"], serde_json::json!([]));
    assert_eq!(run["tool"]["driver"]["name"], "unroot");
    let note = run["invocations"][0]["toolExecutionNotifications"][0]["message"]["text"]
        .as_str()
        .unwrap();
    assert!(note.contains("is already converted"), "{note}");
}

#[test]
fn remap_ids_rewrites_only_the_layers_that_need_it() {
    let spec = r#"
[config]
User = "1000"
[[layer]]
[[layer.entry]]
path = "/etc/passwd"
text = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"
[[layer]]
[[layer.entry]]
path = "/opt/vendor"
type = "dir"
uid = 100000
gid = 100000
[[layer.entry]]
path = "/opt/vendor/data.txt"
text = "made on a build host with a high uid\n"
uid = 100000
gid = 100000
[[layer.entry]]
path = "/opt/vendor/very/long/path/name/that/needs/a/gnu/long/name/entry/in/the/tar/archive/to/be/stored/data.bin"
size = 5000
uid = 123456
xattrs = { "user.note" = "aGVsbG8=" }
[[layer]]
[[layer.entry]]
path = "/srv/ok"
text = "fine\n"
"#;
    let s = Scratch::new();
    let src = s.build("img", "v1", spec);
    // Without the flag the conversion goes on, and reports the error.
    let plain = format!("oci:{}:plain", s.path("out").display());
    let out = s
        .unroot(&["convert", "-q", "--format", "json", &src, "--to", &plain])
        .success();
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["id"] == "UR601"),
        "{report:#}"
    );
    // With it, only the second layer changes; its entries are owned by 1000:0 now.
    let fixed = format!("oci:{}:fixed", s.path("out").display());
    let out = s
        .unroot(&[
            "convert",
            "-q",
            "--format",
            "json",
            "--remap-ids",
            &src,
            "--to",
            &fixed,
        ])
        .success();
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let ids: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    // Fixed: not a finding any more (the run without the flag had it, above).
    assert!(!ids.contains(&"UR601"), "{report:#}");
    let notes = report["conversion"]["notes"].as_array().unwrap();
    assert!(
        notes
            .iter()
            .any(|n| n.as_str().unwrap().starts_with("layer 2 (sha256:")),
        "{notes:?}"
    );
    let (before, after) = (layers(&inspect(&src)), layers(&inspect(&fixed)));
    assert_eq!(after.len(), 4);
    assert_eq!(before[0], after[0]);
    assert_ne!(before[1], after[1]);
    assert_eq!(before[2], after[2]);
    // umoci unpacks the result; owners and content as expected.
    let rootfs = umoci_unpack(&s, &s.path("out"), "fixed", "bundle");
    assert_eq!(owner(&rootfs.join("opt/vendor/data.txt")).0, 1000);
    assert_eq!(owner(&rootfs.join("opt/vendor/data.txt")).1, 0);
    let long = rootfs.join("opt/vendor/very/long/path/name/that/needs/a/gnu/long/name/entry/in/the/tar/archive/to/be/stored/data.bin");
    assert_eq!(std::fs::metadata(&long).unwrap().len(), 5000);
    assert_eq!(owner(&long).0, 1000);
    // The same input converts to the same digests.
    let again = format!("oci:{}:again", s.path("out").display());
    s.unroot(&["convert", "-q", "--remap-ids", &src, "--to", &again])
        .success();
    assert_eq!(inspect(&fixed)["Digest"], inspect(&again)["Digest"]);
}

#[test]
fn progress_is_bars_on_a_terminal_lines_otherwise_and_nothing_with_q() {
    let s = Scratch::new();
    let src = s.build("img", "v1", &sample_spec());
    // Not a terminal: one plain line per step, no escape sequences.
    let out = s
        .unroot(&[
            "convert",
            &src,
            "--to",
            &format!("oci:{}:a", s.path("out").display()),
        ])
        .success();
    assert!(
        out.stderr.contains("unroot: reading layer 1/2 "),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains('\x1b'), "{}", out.stderr);
    // `-q`: nothing at all.
    let out = s
        .unroot(&[
            "convert",
            "-q",
            &src,
            "--to",
            &format!("oci:{}:b", s.path("out").display()),
        ])
        .success();
    assert_eq!(out.stderr, "");
    // A terminal (a pseudo-terminal from `script`): bars per layer and for the stage,
    // drawn with cursor movements, and the same lines above them.
    let command = format!(
        "{} convert {src} --to oci:{}:c",
        env!("CARGO_BIN_EXE_unroot"),
        s.path("out").display()
    );
    let tty = crate::support::tool("script", &["-qec", &command, "/dev/null"]).success();
    for wanted in [
        "reading layers",
        "layer 1/2 ",
        "layer 2/2 ",
        "\x1b[",
        "unroot: reading layer 1/2 ",
    ] {
        assert!(
            tty.stdout.contains(wanted),
            "{wanted:?} not in {:?}",
            tty.stdout
        );
    }
    // The same image either way.
    assert_eq!(
        inspect(&format!("oci:{}:a", s.path("out").display()))["Digest"],
        inspect(&format!("oci:{}:c", s.path("out").display()))["Digest"]
    );
}

/// A docker archive written without a name in `--to` is named after the source (its tag
/// with `-unprivileged`), so that `docker load` does not give a dangling image; a name in
/// `--to docker-archive:FILE:REF` is used as it is.
#[test]
fn docker_archives_are_tagged_from_to_or_from_the_source() {
    let s = Scratch::new();
    let src = s.build("web", "v1", crate::support::TINY);
    let repo_tags = |file: &str| {
        let out = crate::support::tool("tar", &["-xOf", file, "manifest.json"]).success();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        v[0]["RepoTags"].clone()
    };
    let plain = s.path("plain.tar").display().to_string();
    let out = s
        .unroot(&[
            "convert",
            "-q",
            &src,
            "--to",
            &format!("docker-archive:{plain}"),
        ])
        .success();
    assert!(
        out.stdout
            .contains(&format!("to docker-archive:{plain}:web:v1-unprivileged")),
        "{}",
        out.stdout
    );
    assert_eq!(
        repo_tags(&plain),
        serde_json::json!(["web:v1-unprivileged"])
    );
    let named = s.path("named.tar").display().to_string();
    s.unroot(&[
        "convert",
        "-q",
        &src,
        "--to",
        &format!("docker-archive:{named}:registry.example/team/web:2"),
    ])
    .success();
    assert_eq!(
        repo_tags(&named),
        serde_json::json!(["registry.example/team/web:2"])
    );
    // The converted archive, converted again to an archive `--to` names no tag for, is
    // copied under its own name, not given the suffix a second time.
    let copy = s.path("copy.tar").display().to_string();
    s.unroot(&[
        "convert",
        "-q",
        &format!("docker-archive:{plain}"),
        "--to",
        &format!("docker-archive:{copy}"),
    ])
    .success();
    assert_eq!(repo_tags(&copy), serde_json::json!(["web:v1-unprivileged"]));
    // A layout directory named for what it is is named by the one that holds it.
    let nested = s.build("api/image", "v3", crate::support::TINY);
    let nested_tar = s.path("nested.tar").display().to_string();
    s.unroot(&[
        "convert",
        "-q",
        &nested,
        "--to",
        &format!("docker-archive:{nested_tar}"),
    ])
    .success();
    assert_eq!(
        repo_tags(&nested_tar),
        serde_json::json!(["api:v3-unprivileged"])
    );
    // A docker archive read by `@0` or as its only image, converted to its default
    // destination, is named after the entry it records; the analysis names it so too.
    let saved = s.path("saved.tar").display().to_string();
    crate::support::skopeo(&[
        "copy",
        "-q",
        &format!("oci:{}:v1", s.path("web").display()),
        &format!("docker-archive:{saved}:web:1"),
    ])
    .success();
    let recorded = repo_tags(&saved)[0].as_str().unwrap().to_string();
    let expected = serde_json::json!([format!("{recorded}-unprivileged")]);
    let sibling = s.path("saved-unprivileged.tar").display().to_string();
    for source in [
        format!("docker-archive:{saved}:@0"),
        format!("docker-archive:{saved}"),
    ] {
        let emitted = s
            .unroot(&["analyze", "-q", &source, "--emit", "docker"])
            .success()
            .stdout;
        assert!(
            emitted.contains(&format!("\ndocker load -i {sibling}\n"))
                && emitted.ends_with(&format!(" {recorded}-unprivileged\n")),
            "{emitted}"
        );
        s.unroot(&["convert", "-q", &source]).success();
        assert_eq!(repo_tags(&sibling), expected, "{source}");
        std::fs::remove_file(&sibling).unwrap();
    }
}

/// The same local source spelt several ways (relative, absolute, with `..`; a docker
/// archive's reference short, in full or as `@0`) converts to the same digest: neither the
/// path nor the spelling is recorded in the image; `base.name` is the name the layout or
/// archive records.
#[test]
fn a_local_source_s_path_spelling_does_not_change_the_digest() {
    let s = Scratch::new();
    s.build("img", "v1", crate::support::TINY);
    let abs = s.path("img").display().to_string();
    let digest = |src: &str, out: &str| {
        let out = s
            .unroot(&[
                "convert",
                "-q",
                "--format",
                "json",
                src,
                "--to",
                &format!("oci:{out}:c"),
            ])
            .success();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        v["destination"]["digest"].as_str().unwrap().to_string()
    };
    let a = digest("oci:img:v1", "out-a");
    let b = digest(&format!("oci:{abs}:v1"), "out-b");
    let c = digest("oci:./img/../img:v1", "out-c");
    assert_eq!(a, b);
    assert_eq!(a, c);
    let manifest = crate::support::layout_manifest(&s.path("out-a"), Some("c"));
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.base.name"],
        "v1"
    );
    assert!(!serde_json::to_string(&manifest).unwrap().contains(&abs));

    // A docker archive's image named three ways (its RepoTags entry, the same reference in
    // full, its index) is named in `base.name` by the entry it records.
    let archive = s.path("web.tar").display().to_string();
    crate::support::skopeo(&[
        "copy",
        "-q",
        &format!("oci:{abs}:v1"),
        &format!("docker-archive:{archive}:web:1"),
    ])
    .success();
    let entry = {
        let out = crate::support::tool("tar", &["-xOf", &archive, "manifest.json"]).success();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        v[0]["RepoTags"][0].as_str().unwrap().to_string()
    };
    let d = digest(&format!("docker-archive:{archive}:web:1"), "out-d");
    let e = digest(
        &format!("docker-archive:{archive}:docker.io/library/web:1"),
        "out-e",
    );
    let f = digest(&format!("docker-archive:{archive}:@0"), "out-f");
    assert_eq!(d, e);
    assert_eq!(d, f);
    let manifest = crate::support::layout_manifest(&s.path("out-d"), Some("c"));
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.base.name"],
        entry.as_str()
    );
}

/// `--dry-run` says what it would write, and writes nothing.
#[test]
fn a_dry_run_says_what_it_would_write() {
    let s = Scratch::new();
    let src = s.build("img", "v1", crate::support::TINY);
    let to = format!("oci:{}:x", s.path("out").display());
    let out = s
        .unroot(&["convert", "--dry-run", &src, "--to", &to])
        .success();
    assert!(
        out.stderr.lines().any(|l| l
            == format!("unroot: would write the image to {to} (--dry-run: nothing is written)")),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("writing the image"), "{}", out.stderr);
    assert!(!s.path("out").exists());
}
