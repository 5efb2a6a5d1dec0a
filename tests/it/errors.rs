//! Bad input: each case gives one clear error line (plus a hint where one helps), a
//! non-zero exit, and leaves no output behind.

use crate::support::{
    corrupt, files_below, layout_blob, layout_manifest, tool, Output, Registry, Scratch, TINY,
};

/// Asserts that the destination layout was not created and the command's temp dir is empty.
#[track_caller]
fn nothing_written(s: &Scratch, out_dir: &str) {
    assert!(!s.path(out_dir).exists(), "`{out_dir}` was created");
    assert_eq!(
        files_below(&s.tmp()),
        Vec::<String>::new(),
        "temporary files left behind"
    );
    let staging: Vec<String> = files_below(s.dir.path())
        .into_iter()
        .filter(|p| p.contains(".unroot-") || p.contains(".tmp"))
        .collect();
    assert_eq!(staging, Vec::<String>::new(), "staging files left behind");
}

#[test]
fn unknown_transport() {
    let s = Scratch::new();
    let out = s.unroot(&["convert", "dir:/tmp/x"]).failure(2);
    assert_eq!(
        out.error_line(),
        "error: unknown transport `dir:` in `dir:/tmp/x`"
    );
    assert!(
        out.stderr.contains("hint: use `docker://REF`"),
        "{}",
        out.stderr
    );
}

#[test]
fn malformed_reference() {
    let s = Scratch::new();
    let out = s.unroot(&["convert", "example.com/MyApp:1"]).failure(2);
    assert_eq!(
        out.error_line(),
        "error: invalid image reference `example.com/MyApp:1`: repository name `MyApp` must be lowercase"
    );
    let out = s.unroot(&["convert", "nginx:bad:tag"]).failure(2);
    assert!(
        out.error_line()
            .starts_with("error: invalid image reference `nginx:bad:tag`"),
        "{}",
        out.stderr
    );
}

#[test]
fn bad_flags_are_usage_errors() {
    let s = Scratch::new();
    let src = s.build("src", "v1", TINY);
    let out = s.unroot(&["convert", &src, "--port", "80:81"]).failure(2);
    assert_eq!(
        out.error_line(),
        "error: `80:81` maps to a port below 1024, which an unprivileged process cannot bind"
    );
    let out = s
        .unroot(&["convert", &src, "--platform", "linux"])
        .failure(2);
    assert!(
        out.error_line().contains("invalid platform `linux`"),
        "{}",
        out.stderr
    );
    let out = s
        .unroot(&["convert", &src, "--uid", "0", "--to", "oci:out"])
        .failure(2);
    assert_eq!(
        out.error_line(),
        "error: the runtime user must not be root: `--uid 0` is refused (group 0, `--gid 0`, is allowed)"
    );
    // Ids that tar headers and runtimes do not agree on are refused before any work.
    for (flag, value, min) in [
        ("--uid", "4294967296", 1),
        ("--uid", "4294967295", 1),
        ("--gid", "2147483648", 0),
    ] {
        let out = s
            .unroot(&["convert", &src, flag, value, "--to", "oci:out"])
            .failure(2);
        assert_eq!(
            out.error_line(),
            format!("error: `{flag} {value}` is out of range: ids go from {min} to 2147483647")
        );
    }
    let out = s
        .unroot(&["convert", &src, "--port", "80:99999", "--to", "oci:out"])
        .failure(2);
    assert_eq!(
        out.error_line(),
        "error: `80:99999`: port 99999 is out of range (ports go from 1 to 65535)"
    );
    nothing_written(&s, "out");
    // An id above 65535 works, with a warning about rootless runtimes.
    let out = s
        .unroot(&[
            "convert",
            &src,
            "--uid",
            "70000",
            "--dry-run",
            "--format",
            "json",
        ])
        .success();
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(
        report["conversion"]["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n
                .as_str()
                .unwrap()
                .starts_with("uid 70000 is above 65535: rootless runtimes")),
        "{report:#}"
    );
}

#[test]
fn writing_over_the_source_is_refused_unless_asked() {
    let s = Scratch::new();
    let src = s.build("src", "latest", TINY);
    let index = std::fs::read(s.path("src/index.json")).unwrap();
    let out = s.unroot(&["convert", &src, "--to", &src]).failure(2);
    assert_eq!(
        out.error_line(),
        format!("error: {src} is the source itself: converting it there would replace the original image")
    );
    assert!(out.stderr.contains("pass `--replace`"), "{}", out.stderr);
    assert_eq!(
        std::fs::read(s.path("src/index.json")).unwrap(),
        index,
        "the source is untouched"
    );
    // Asked for, the tag moves to the converted image.
    s.unroot(&["convert", "-q", &src, "--to", &src, "--replace"])
        .success();
    assert_ne!(std::fs::read(s.path("src/index.json")).unwrap(), index);
}

#[test]
fn missing_tag_lists_the_tags() {
    let s = Scratch::new();
    let src = s.build("src", "v1", TINY);
    crate::support::build(TINY, &format!("oci:{}:v2", s.path("src").display()));
    let wrong = src.replace(":v1", ":v3");
    let out = s.unroot(&["convert", &wrong, "--to", "oci:out"]).failure(3);
    assert_eq!(
        out.error_line(),
        format!("error: {wrong} has no image tagged `v3`; it has: `v1`, `v2`")
    );
    assert!(
        out.stderr
            .contains(&format!("hint: name one, e.g. `{}`", src)),
        "{}",
        out.stderr
    );
    // Without a tag, a layout with two images is ambiguous.
    let untagged = format!("oci:{}", s.path("src").display());
    let out = s
        .unroot(&["convert", &untagged, "--to", "oci:out"])
        .failure(3);
    assert!(
        out.error_line()
            .contains("holds 2 images, so it needs a tag"),
        "{}",
        out.stderr
    );
    nothing_written(&s, "out");
}

#[test]
fn missing_layout() {
    let s = Scratch::new();
    let missing = format!("oci:{}:v1", s.path("nope").display());
    let out = s.unroot(&["convert", &missing]).failure(3);
    assert_eq!(
        out.error_line(),
        format!(
            "error: layout directory `{}` not found at {missing}",
            s.path("nope").display()
        )
    );
    assert!(!out.stderr.contains("skopeo list-tags"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("hint: check the path: `oci:DIR` is a directory"),
        "{}",
        out.stderr
    );
}

/// Whatever the local transport, a missing or malformed source is a local problem: exit 3
/// and a hint about the path, never the registry's.
#[test]
fn local_sources_that_are_missing_or_not_what_they_say_exit_3_with_a_local_hint() {
    let s = Scratch::new();
    std::fs::create_dir(s.path("empty")).unwrap();
    std::fs::write(s.path("junk.tar"), b"not a tar file at all").unwrap();
    for location in [
        format!("oci-archive:{}", s.path("nope.tar").display()),
        format!("docker-archive:{}", s.path("nope.tar").display()),
        format!("oci:{}:v1", s.path("empty").display()),
        format!("oci-archive:{}", s.path("junk.tar").display()),
        format!("docker-archive:{}", s.path("junk.tar").display()),
        // A file for a layout, a directory for an archive.
        format!("oci:{}", s.path("junk.tar").display()),
        format!("oci-archive:{}", s.path("empty").display()),
        format!("docker-archive:{}", s.path("empty").display()),
    ] {
        let out = s.unroot(&["analyze", &location]).failure(3);
        assert!(
            out.error_line().contains(
                location
                    .split_once(':')
                    .unwrap()
                    .1
                    .split(':')
                    .next()
                    .unwrap()
            ),
            "{location}: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains("hint: check the path"),
            "{location}: {}",
            out.stderr
        );
        assert!(
            !out.stderr.contains("skopeo list-tags"),
            "{location}: {}",
            out.stderr
        );
    }
}

#[test]
fn layout_files_that_are_not_regular_files_are_refused() {
    use std::os::unix::fs::symlink;
    let s = Scratch::new();
    let src = s.build("src", "v1", TINY);
    let index = s.path("src/index.json");
    // `index.json` leading to a device that never ends.
    std::fs::remove_file(&index).unwrap();
    symlink("/dev/zero", &index).unwrap();
    let out = s.unroot(&["analyze", &src]).failure(3);
    assert!(
        out.error_line().contains("index.json")
            && out
                .error_line()
                .contains("it is a character device, not a regular file"),
        "{}",
        out.stderr
    );
    // A named pipe with no writer (opening it would wait forever).
    std::fs::remove_file(&index).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(&index)
        .status()
        .unwrap();
    assert!(status.success());
    let out = s.unroot(&["analyze", &src]).failure(3);
    assert!(
        out.error_line()
            .contains("it is a named pipe, not a regular file"),
        "{}",
        out.stderr
    );
    // Archives that are devices.
    for archive in ["oci-archive:/dev/zero", "docker-archive:/dev/zero"] {
        let out = s.unroot(&["analyze", archive]).failure(3);
        assert!(
            out.error_line()
                .contains("it is a character device, not a regular file"),
            "{}",
            out.stderr
        );
    }
}

/// A sparse file to re-own (GNU tar stores a 1 GiB file holding 8 bytes in a few blocks):
/// its holes take no spool (a 1 MiB budget is enough) and it is written sparse again, so
/// the new layer does not hold a gigabyte of zeros either.
#[test]
fn sparse_files_stay_sparse() {
    use std::os::unix::fs::{FileExt, MetadataExt};
    let s = Scratch::new();
    let tree = s.path("tree");
    std::fs::create_dir_all(tree.join("opt")).unwrap();
    let size: u64 = 1 << 30;
    let file = std::fs::File::create(tree.join("opt/app.bin")).unwrap();
    file.set_len(size).unwrap();
    file.write_all_at(b"head", 0).unwrap();
    file.write_all_at(b"tail", size - 4).unwrap();
    drop(file);
    let tar = s.path("sparse.tar");
    tool(
        "tar",
        &[
            "--sparse",
            "--format=gnu",
            "--owner=app:1000",
            "--group=app:1000",
            "--mode=0755",
            "-cf",
            tar.to_str().unwrap(),
            "-C",
            tree.to_str().unwrap(),
            "opt/app.bin",
        ],
    )
    .success();
    assert!(std::fs::metadata(&tar).unwrap().len() < 100_000);
    let spec = format!("{TINY}\n[[layer]]\ntar = \"{}\"\n", tar.display());
    let src = s.build("src", "v1", &spec);
    s.unroot(&[
        "convert",
        "-q",
        &src,
        "--max-spool",
        "1M",
        "--to",
        "oci:out:v1",
    ])
    .success();
    let manifest = layout_manifest(&s.path("out"), Some("v1"));
    let new = manifest["layers"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert!(new["size"].as_u64().unwrap() < 1_000_000, "{new}");
    let blob = layout_blob(&s.path("out"), new["digest"].as_str().unwrap());
    // Re-owned to root, still 1 GiB, and a sparse member for GNU tar too.
    let listing = tool("tar", &["--numeric-owner", "-tvzf", blob.to_str().unwrap()]).success();
    let line = listing
        .stdout
        .lines()
        .find(|l| l.ends_with("opt/app.bin"))
        .unwrap_or_else(|| panic!("no /opt/app.bin in\n{}", listing.stdout))
        .to_string();
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(f[..3], ["-rwxr-xr-x", "0/0", "1073741824"], "{line}");
    assert!(entry_types(&blob).contains(&tar::EntryType::GNUSparse));
    let back = s.path("back");
    std::fs::create_dir(&back).unwrap();
    tool(
        "tar",
        &["-xzf", blob.to_str().unwrap(), "-C", back.to_str().unwrap()],
    )
    .success();
    let file = std::fs::File::open(back.join("opt/app.bin")).unwrap();
    let meta = file.metadata().unwrap();
    assert_eq!(meta.len(), size);
    assert!(
        meta.blocks() * 512 < 1 << 20,
        "extracted with {} blocks",
        meta.blocks()
    );
    let (mut head, mut tail) = ([0u8; 4], [0u8; 4]);
    file.read_exact_at(&mut head, 0).unwrap();
    file.read_exact_at(&mut tail, size - 4).unwrap();
    assert_eq!((&head, &tail), (b"head", b"tail"));

    // Owned by an id above 65535, the layer itself is rewritten by `--remap-ids`: the
    // file stays sparse there too.
    let high = s.path("high.tar");
    tool(
        "tar",
        &[
            "--sparse",
            "--format=gnu",
            "--owner=big:200000",
            "--group=big:200000",
            "--mode=0644",
            "-cf",
            high.to_str().unwrap(),
            "-C",
            tree.to_str().unwrap(),
            "opt/app.bin",
        ],
    )
    .success();
    let spec = format!("{TINY}\n[[layer]]\ntar = \"{}\"\n", high.display());
    let src = s.build("high", "v1", &spec);
    s.unroot(&["convert", "-q", "--remap-ids", &src, "--to", "oci:out:v2"])
        .success();
    let manifest = layout_manifest(&s.path("out"), Some("v2"));
    let rewritten = manifest["layers"][1].clone();
    assert!(
        rewritten["size"].as_u64().unwrap() < 1_000_000,
        "{rewritten}"
    );
    let blob = layout_blob(&s.path("out"), rewritten["digest"].as_str().unwrap());
    let listing = tool("tar", &["--numeric-owner", "-tvzf", blob.to_str().unwrap()]).success();
    let f: Vec<&str> = listing.stdout.split_whitespace().collect();
    assert_eq!(
        f[..3],
        ["-rw-r--r--", "65532/0", "1073741824"],
        "{}",
        listing.stdout
    );
    assert_eq!(entry_types(&blob), [tar::EntryType::GNUSparse]);
}

/// The type of each entry of a gzip'd layer.
fn entry_types(blob: &std::path::Path) -> Vec<tar::EntryType> {
    let gz = flate2::read::MultiGzDecoder::new(std::fs::File::open(blob).unwrap());
    tar::Archive::new(gz)
        .entries()
        .unwrap()
        .map(|e| e.unwrap().header().entry_type())
        .collect()
}

#[test]
fn the_spool_has_a_budget() {
    let s = Scratch::new();
    // 2 MB of code owned by a non-root user: the conversion keeps its body to re-own it.
    let spec = format!(
        "{TINY}\n[[layer]]\n[[layer.entry]]\npath = \"/opt/app.bin\"\nsize = 2000000\nmode = 0o755\nuid = 1000\ngid = 1000\n"
    );
    let src = s.build("src", "v1", &spec);
    let out = s
        .unroot(&["convert", &src, "--max-spool", "1M", "--to", "oci:out"])
        .failure(1);
    assert!(
        out.error_line().contains(
            "reading `/opt/app.bin`: the files to re-own hold more than 1048576 bytes (1.0 MiB); raise `--max-spool`"
        ),
        "{}",
        out.stderr
    );
    nothing_written(&s, "out");
    let out = s
        .unroot(&["convert", &src, "--max-spool", "lots"])
        .failure(2);
    assert!(
        out.stderr.contains("`lots` is not a size"),
        "{}",
        out.stderr
    );
    s.unroot(&[
        "convert",
        "-q",
        &src,
        "--max-spool",
        "3M",
        "--to",
        "oci:out",
    ])
    .success();
}

fn layer_blob(s: &Scratch, layout: &str, index: usize) -> std::path::PathBuf {
    let manifest = layout_manifest(&s.path(layout), None);
    layout_blob(
        &s.path(layout),
        manifest["layers"][index]["digest"].as_str().unwrap(),
    )
}

#[test]
fn corrupted_blob() {
    let s = Scratch::new();
    let src = s.build("src", "v1", TINY);
    let blob = layer_blob(&s, "src", 0);
    let before = std::fs::read(&blob).unwrap();
    corrupt(&blob);
    let out = s
        .unroot(&[
            "convert",
            &src,
            "--to",
            &format!("oci:{}", s.path("out").display()),
        ])
        .failure(1);
    let digest = blob.file_name().unwrap().to_str().unwrap();
    let line = out.error_line();
    assert!(
        line.contains(&format!("layer sha256:{digest} is corrupted")),
        "{line}"
    );
    assert!(line.contains("has digest sha256:"), "{line}");
    nothing_written(&s, "out");
    // The source is never modified (beyond our own corruption).
    assert_eq!(std::fs::read(&blob).unwrap().len(), before.len());
}

#[test]
fn truncated_layer() {
    let s = Scratch::new();
    let src = s.build("src", "v1", TINY);
    let blob = layer_blob(&s, "src", 0);
    let bytes = std::fs::read(&blob).unwrap();
    std::fs::write(&blob, &bytes[..bytes.len() - 20]).unwrap();
    let out = s
        .unroot(&[
            "convert",
            &src,
            "--to",
            &format!("oci:{}", s.path("out").display()),
        ])
        .failure(1);
    let line = out.error_line();
    assert!(line.contains("is corrupted"), "{line}");
    assert!(
        line.contains(&format!(
            "is {} bytes, its descriptor says {}",
            bytes.len() - 20,
            bytes.len()
        )),
        "{line}"
    );
    nothing_written(&s, "out");
}

fn hostile(entry: &str) -> String {
    format!("{TINY}\n[[layer]]\n[[layer.entry]]\n{entry}\n")
}

/// Builds `spec`, converts it to a layout, and checks that the conversion fails with
/// `expected` in its error line and writes nothing.
#[track_caller]
fn refused(spec: &str, expected: &str) -> Output {
    let s = Scratch::new();
    let src = s.build("src", "v1", spec);
    let out = s
        .unroot(&[
            "convert",
            &src,
            "--to",
            &format!("oci:{}", s.path("out").display()),
        ])
        .failure(1);
    assert!(out.error_line().contains(expected), "{}", out.stderr);
    nothing_written(&s, "out");
    out
}

#[test]
fn tar_entry_with_dotdot() {
    refused(
        &hostile("path = \"../../etc/evil\"\nraw = true\ntext = \"x\""),
        "entry `../../etc/evil` has a `..` component that could escape the image root",
    );
}

#[test]
fn tar_entry_with_absolute_path() {
    refused(
        &hostile("path = \"/etc/evil\"\nraw = true\ntext = \"x\""),
        "entry `/etc/evil` has an absolute path",
    );
}

#[test]
fn whiteout_outside_the_image() {
    refused(
        &hostile("path = \".wh..\"\nraw = true\ntext = \"\""),
        "whiteout `.wh..` names a path outside the image",
    );
}

#[test]
fn symlink_loop() {
    let spec = r#"
[[layer]]
[[layer.entry]]
path = "/etc"
type = "dir"
[[layer.entry]]
path = "/etc/passwd"
type = "symlink"
target = "/etc/passwd.real"
[[layer.entry]]
path = "/etc/passwd.real"
type = "symlink"
target = "passwd"
"#;
    let out = refused(
        spec,
        "too many levels of symbolic links resolving `/etc/passwd` (a symlink loop)",
    );
    assert!(
        out.stderr.contains("hint: the image's symlinks form a loop; fix the image, or convert with `--uid` on an image whose `/etc/passwd` is a plain file"),
        "{}",
        out.stderr
    );
}

#[test]
fn schema1_manifest() {
    let s = Scratch::new();
    let layout = s.path("src");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    let manifest = br#"{"schemaVersion":1,"name":"library/old","tag":"latest","architecture":"amd64","fsLayers":[],"history":[]}"#;
    let digest = unroot::model::Digest::sha256_of(manifest);
    std::fs::write(layout.join("blobs/sha256").join(digest.hex()), manifest).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.docker.distribution.manifest.v1+prettyjws","digest":"{digest}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"old"}}}}]}}"#,
        manifest.len()
    );
    std::fs::write(layout.join("index.json"), index).unwrap();
    let src = format!("oci:{}:old", layout.display());
    let out = s
        .unroot(&[
            "convert",
            &src,
            "--to",
            &format!("oci:{}", s.path("out").display()),
        ])
        .failure(1);
    assert_eq!(
        out.error_line(),
        format!("error: {src}: the manifest is Docker schema 1, which unroot does not convert")
    );
    assert!(
        out.stderr.contains("hint: schema 1 images are deprecated"),
        "{}",
        out.stderr
    );
    nothing_written(&s, "out");
}

#[test]
fn windows_image_is_refused() {
    let s = Scratch::new();
    let spec = format!("[image]\nos = \"windows\"\n{TINY}");
    let src = s.build("src", "v1", &spec);
    let out = s
        .unroot(&[
            "convert",
            &src,
            "--to",
            &format!("oci:{}", s.path("out").display()),
        ])
        .failure(1);
    assert!(
        out.error_line()
            .contains("it is a `windows` image; unroot converts Linux images"),
        "{}",
        out.stderr
    );
    nothing_written(&s, "out");
}

#[test]
fn registry_401_without_and_with_wrong_credentials() {
    let s = Scratch::new();
    let registry = Registry::start_with_auth("alice", "secret-pw");
    let src = s.build("src", "v1", TINY);
    registry.push(&src, "app:v1", Some("alice:secret-pw"));

    let out = s.unroot(&["convert", &registry.image("app:v1")]).failure(1);
    assert_eq!(
        out.error_line(),
        format!(
            "error: {} refused access to {} (HTTP 401 unauthorized): it needs credentials",
            registry.addr,
            registry.image("app:v1")
        )
    );
    assert!(
        out.stderr.contains("hint: pass `--creds USER:PASS`"),
        "{}",
        out.stderr
    );

    let out = s
        .unroot(&[
            "convert",
            &registry.image("app:v1"),
            "--creds",
            "alice:wrong-pw",
        ])
        .failure(1);
    assert!(
        out.error_line()
            .contains("the credentials were not accepted"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("wrong-pw"),
        "the password was printed: {}",
        out.stderr
    );
    assert!(!registry.has_tag("app:v1-unprivileged", Some("alice:secret-pw")));
}

#[test]
fn registry_404() {
    let s = Scratch::new();
    let registry = Registry::start();
    let out = s
        .unroot(&["convert", &registry.image("nothing:here")])
        .failure(1);
    assert_eq!(
        out.error_line(),
        format!(
            "error: tag `here` not found at {}",
            registry.image("nothing:here")
        )
    );
    assert!(
        out.stderr
            .contains("hint: check the repository name and tag"),
        "{}",
        out.stderr
    );
}

#[test]
fn corrupted_blob_in_registry_leaves_no_tag() {
    let s = Scratch::new();
    let registry = Registry::start();
    let src = s.build("src", "v1", TINY);
    registry.push(&src, "app:v1", None);
    let blob = layer_blob(&s, "src", 0);
    let digest = format!("sha256:{}", blob.file_name().unwrap().to_str().unwrap());
    corrupt(&registry.blob_file(&digest));
    let out = s.unroot(&["convert", &registry.image("app:v1")]).failure(1);
    assert!(
        out.error_line()
            .contains(&format!("layer {digest} is corrupted")),
        "{}",
        out.stderr
    );
    assert!(
        !registry.has_tag("app:v1-unprivileged", None),
        "a tag was pushed"
    );
    assert_eq!(files_below(&s.tmp()), Vec::<String>::new());
}

#[test]
fn diff_id_mismatch() {
    let s = Scratch::new();
    let src = s.build("src", "v1", TINY);
    let wrong = unroot::model::Digest::sha256_of(b"not this layer").to_string();
    let w = wrong.clone();
    crate::support::edit_config(&s.path("src"), "v1", move |c| {
        c["rootfs"]["diff_ids"][0] = w.into()
    });
    let out = s
        .unroot(&[
            "convert",
            &src,
            "--to",
            &format!("oci:{}", s.path("out").display()),
        ])
        .failure(1);
    let line = out.error_line();
    assert!(
        line.contains("does not match its diff_id: the config says"),
        "{line}"
    );
    assert!(line.contains(&wrong), "{line}");
    nothing_written(&s, "out");
}

#[test]
fn missing_platform_lists_the_platforms() {
    let s = Scratch::new();
    let layout = crate::platforms::multi_platform_layout(&s);
    let out = s
        .unroot(&[
            "convert",
            &format!("oci:{}:multi", layout.display()),
            "--platform",
            "linux/s390x",
            "--to",
            "oci:out",
        ])
        .failure(1);
    assert_eq!(
        out.error_line(),
        format!(
            "error: oci:{}:multi has no image for linux/s390x; it has: linux/amd64, linux/arm64/v8",
            layout.display()
        )
    );
    assert!(
        out.stderr
            .contains("hint: pick one with `--platform linux/amd64`"),
        "{}",
        out.stderr
    );
}

#[test]
fn tls_is_required_for_remote_registries() {
    let s = Scratch::new();
    let registry = Registry::start_on("127.0.0.2");
    let src = s.build("src", "v1", TINY);
    registry.push(&src, "app:v1", None);
    let out = s.unroot(&["convert", &registry.image("app:v1")]).failure(1);
    assert!(
        out.error_line()
            .starts_with(&format!("error: cannot reach {}", registry.addr)),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("hint: if `127.0.0.2"), "{}", out.stderr);
    passes_with_tls_verify_false(&s, &registry, &out);
}

#[test]
fn a_registry_with_an_untrusted_certificate_needs_tls_verify_false() {
    let s = Scratch::new();
    let registry = Registry::start_tls("127.0.0.3");
    let src = s.build("src", "v1", TINY);
    registry.push(&src, "app:v1", None);
    let out = s.unroot(&["convert", &registry.image("app:v1")]).failure(1);
    let line = out.error_line();
    assert!(
        line.starts_with(&format!("error: cannot reach {}", registry.addr)),
        "{}",
        out.stderr
    );
    assert!(line.to_lowercase().contains("certificate"), "{line}");
    // Without verification it is still HTTPS (the registry speaks nothing else).
    passes_with_tls_verify_false(&s, &registry, &out);
}

/// The hint names `--tls-verify=false`, and with it the conversion goes through.
fn passes_with_tls_verify_false(s: &Scratch, registry: &Registry, failed: &Output) {
    assert!(
        failed.stderr.contains("pass `--tls-verify=false`"),
        "{}",
        failed.stderr
    );
    s.unroot(&[
        "convert",
        "-q",
        &registry.image("app:v1"),
        "--tls-verify=false",
    ])
    .success();
    assert!(registry.has_tag("app:v1-unprivileged", None));
}

#[test]
fn a_destination_pinned_to_another_digest_is_refused_and_not_tagged() {
    let s = Scratch::new();
    let registry = Registry::start();
    let src = s.build("src", "v1", TINY);
    let pinned = format!("{}:v1@sha256:{}", registry.image("app"), "0".repeat(64));
    let out = s.unroot(&["convert", &src, "--to", &pinned]).failure(1);
    assert!(
        out.error_line().contains(&format!(
            "the destination pins sha256:{}, but the converted image is sha256:",
            "0".repeat(64)
        )),
        "{}",
        out.stderr
    );
    assert!(!registry.has_tag("app:v1", None));
}

/// A slip in a transport's name is a usage error (exit 2) that names the transport meant,
/// not a registry lookup of `docker.io/library/ocii`; a local path written without a
/// transport says how to write it.
#[test]
fn transport_slips_and_bare_paths_are_usage_errors_that_say_what_was_meant() {
    let s = Scratch::new();
    let out = s.unroot(&["convert", "ocii:img"]).failure(2);
    assert_eq!(
        out.error_line(),
        "error: unknown transport `ocii:` in `ocii:img`; did you mean `oci:`?"
    );
    assert!(
        out.stderr
            .contains("hint: write `oci:img`; for the image `ocii:img` on Docker Hub, write `docker://ocii:img`"),
        "{}",
        out.stderr
    );
    // A slip before `//` cannot be a Docker Hub name: the hint is the transport meant alone.
    let out = s.unroot(&["analyze", "dokcer://nginx"]).failure(2);
    assert_eq!(
        out.error_line(),
        "error: unknown transport `dokcer:` in `dokcer://nginx`; did you mean `docker:`?"
    );
    assert!(
        out.stderr
            .lines()
            .any(|l| l == "hint: write `docker://nginx`"),
        "{}",
        out.stderr
    );
    let out = s.unroot(&["analyze", "oci-arch:f.tar"]).failure(2);
    assert_eq!(
        out.error_line(),
        "error: unknown transport `oci-arch:` in `oci-arch:f.tar`; did you mean `oci-archive:`?"
    );
    let src = s.build("img", "v1", crate::support::TINY);
    let dir = src
        .strip_prefix("oci:")
        .unwrap()
        .rsplit_once(':')
        .unwrap()
        .0
        .to_string();
    let out = s.unroot(&["convert", &dir]).failure(2);
    assert_eq!(
        out.error_line(),
        format!("error: `{dir}` is a local directory, not a registry reference: write it as `oci:{dir}`")
    );
}

/// `unroot completions SHELL` prints a script the shell loads (bash is run on it), and
/// `unroot man DIR` writes a page per subcommand that `man` renders without a warning.
#[test]
fn completions_load_in_bash_and_man_pages_render() {
    let s = Scratch::new();
    let script = s.unroot(&["completions", "bash"]).success().stdout;
    std::fs::write(s.path("unroot.bash"), &script).unwrap();
    let out = crate::support::tool(
        "bash",
        &[
            "-c",
            &format!(
                "source {} && complete -p unroot",
                s.path("unroot.bash").display()
            ),
        ],
    )
    .success();
    assert_eq!(
        out.stdout.trim(),
        "complete -o bashdefault -o default -o nosort -F _unroot unroot"
    );
    for shell in ["zsh", "fish", "powershell"] {
        let script = s.unroot(&["completions", shell]).success().stdout;
        for word in ["convert", "analyze", "verify", "serve", "platform"] {
            assert!(script.contains(word), "{shell}: no {word}");
        }
    }
    let out = s.unroot(&["completions", "tcsh"]).failure(2);
    assert!(
        out.stderr.contains("invalid value 'tcsh'"),
        "{}",
        out.stderr
    );

    let dir = s.path("man");
    let listed = s.unroot(&["man", dir.to_str().unwrap()]).success().stdout;
    let mut pages: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    assert_eq!(
        pages,
        [
            "unroot-analyze.1",
            "unroot-completions.1",
            "unroot-convert.1",
            "unroot-learn.1",
            "unroot-man.1",
            "unroot-recipes-check.1",
            "unroot-recipes-list.1",
            "unroot-recipes-show.1",
            "unroot-recipes.1",
            "unroot-serve.1",
            "unroot-verify.1",
            "unroot.1",
        ]
    );
    assert_eq!(listed.lines().count(), pages.len());
    let page = dir.join("unroot-convert.1");
    let out = std::process::Command::new("man")
        .args(["--warnings", "-l"])
        .arg(&page)
        .env("MANWIDTH", "80")
        .output()
        .expect("man (Debian man-db; ./scripts/test installs it)");
    let rendered = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "warnings");
    assert!(
        rendered.contains("unroot-convert - Convert an image"),
        "{rendered}"
    );
    assert!(rendered.contains("--to"), "{rendered}");
}

/// A destination that cannot be written is found out before any layer is read: the
/// error names the directory (exit 3, a local problem), or the registry's refusal, and no
/// layer was read.
#[test]
fn an_unwritable_destination_fails_before_the_layers_are_read() {
    let s = Scratch::new();
    let src = s.build("img", "v1", TINY);
    for to in [
        "oci:/proc/unroot-out:latest",
        "docker-archive:/proc/unroot-out.tar",
    ] {
        let out = s.unroot(&["convert", &src, "--to", to]).failure(3);
        assert!(
            out.error_line()
                .starts_with("error: cannot create a file in `/proc`: "),
            "{to}: {}",
            out.stderr
        );
        assert!(
            !out.stderr.contains("reading layer"),
            "{to}: {}",
            out.stderr
        );
    }
    // A registry that will not take the push (no credentials given) says so before the
    // first layer is read too: an upload is started and cancelled first.
    let registry = crate::support::Registry::start_with_auth("olga", "s3cret-pass");
    let to = registry.image("app:v1");
    let out = s.unroot(&["convert", &src, "--to", &to]).failure(1);
    assert!(
        out.error_line()
            .contains("(HTTP 401 unauthorized): it needs credentials"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("reading layer"), "{}", out.stderr);
    // So it does with --verify, before the trial conversion reads a layer or runs it.
    let out = s
        .unroot(&["convert", &src, "--verify", "--to", &to])
        .failure(1);
    assert!(
        out.error_line()
            .contains("(HTTP 401 unauthorized): it needs credentials"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("reading layer"), "{}", out.stderr);
    // With them, the same conversion goes through.
    s.unroot(&["convert", &src, "--to", &to, "--creds", "olga:s3cret-pass"])
        .success();
    assert!(registry.has_tag("app:v1", Some("olga:s3cret-pass")));
}
