//! Multi-platform images (OCI indexes, Docker manifest lists): every platform converts into
//! a new index written last, attestations are dropped, `--platform` picks one.

use std::path::Path;

use crate::support::{sample_spec, skopeo, Registry, Scratch};
use crate::transports::{inspect_config, raw_manifest};

/// A layout with an amd64 and an arm64 image under one OCI index tagged `multi`.
pub(crate) fn multi_platform_layout(s: &Scratch) -> std::path::PathBuf {
    let layout = s.path("multi");
    let dest = |tag: &str| format!("oci:{}:{tag}", layout.display());
    let amd = crate::support::build(&sample_spec(), &dest("amd"));
    let arm_spec = sample_spec().replace("[image]", "[image]\narchitecture = \"arm64\"");
    let arm = crate::support::build(&arm_spec, &dest("arm"));
    let size = |d: &unroot::model::Digest| {
        std::fs::metadata(layout.join("blobs/sha256").join(d.hex()))
            .unwrap()
            .len()
    };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": amd.to_string(), "size": size(&amd),
             "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": arm.to_string(), "size": size(&arm),
             "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": amd.to_string(), "size": size(&amd),
             "platform": {"architecture": "unknown", "os": "unknown"},
             "annotations": {"vnd.docker.reference.type": "attestation-manifest"}}
        ]
    });
    let bytes = serde_json::to_vec(&index).unwrap();
    let digest = unroot::model::Digest::sha256_of(&bytes);
    std::fs::write(layout.join("blobs/sha256").join(digest.hex()), &bytes).unwrap();
    let index_path = layout.join("index.json");
    let mut top: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    top["manifests"].as_array_mut().unwrap().push(serde_json::json!({
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest.to_string(), "size": bytes.len(),
        "annotations": {"org.opencontainers.image.ref.name": "multi"}
    }));
    std::fs::write(&index_path, serde_json::to_vec(&top).unwrap()).unwrap();
    layout
}

#[test]
fn index_picks_the_platform() {
    let s = Scratch::new();
    let layout = multi_platform_layout(&s);
    let src = format!("oci:{}:multi", layout.display());
    let out = s
        .unroot(&[
            "convert",
            &src,
            "--platform",
            "linux/arm64",
            "--to",
            &format!("oci:{}:arm", s.path("out").display()),
        ])
        .success();
    assert!(
        out.stdout.contains("platform  linux/arm64/v8"),
        "{}",
        out.stdout
    );
    assert_eq!(
        inspect_config(&format!("oci:{}:arm", s.path("out").display()))["architecture"],
        "arm64"
    );
    s.unroot(&[
        "convert",
        "-q",
        &src,
        "--to",
        &format!("oci:{}:amd", s.path("out").display()),
    ])
    .success();
    assert_eq!(
        inspect_config(&format!("oci:{}:amd", s.path("out").display()))["architecture"],
        "amd64"
    );
}

#[test]
fn an_index_converts_every_platform_into_a_new_index() {
    let s = Scratch::new();
    let layout = multi_platform_layout(&s);
    let src = format!("oci:{}:multi", layout.display());
    let dest = format!("oci:{}:converted", s.path("out").display());
    let out = s.unroot(&["convert", "-q", &src, "--to", &dest]).success();
    assert!(
        out.stdout.contains("an index of 2 platforms"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("\ndropped sha256:"),
        "the attestation is reported: {}",
        out.stdout
    );
    assert!(
        out.stdout.contains("=== linux/amd64 ===") && out.stdout.contains("=== linux/arm64/v8 ==="),
        "{}",
        out.stdout
    );
    let index = raw_manifest(&dest);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        platforms,
        ["linux/amd64", "linux/arm64"],
        "same platforms, same order, no attestation"
    );
    for arch in ["amd64", "arm64"] {
        let config = skopeo(&["inspect", "--config", "--override-arch", arch, &dest]).success();
        let config: serde_json::Value = serde_json::from_str(&config.stdout).unwrap();
        assert_eq!(config["architecture"], arch);
        assert_eq!(config["config"]["User"], "1000:1000");
    }
    // skopeo copies every platform out (every blob is there).
    skopeo(&[
        "copy",
        "--quiet",
        "--all",
        &dest,
        &format!("oci:{}:copy", s.path("copy").display()),
    ])
    .success();

    // JSON: a report per platform, as the schema says.
    let out = s
        .unroot(&[
            "convert",
            "-q",
            "--dry-run",
            "--format",
            "json",
            &src,
            "--to",
            &format!("oci:{}:x", s.path("dry").display()),
        ])
        .success();
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let schema: serde_json::Value = serde_json::from_slice(
        &std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/report-v1.schema.json"))
            .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&json)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(json["platforms"].as_array().unwrap().len(), 2);
    assert!(!s.path("dry").exists());

    // `--platform` narrows it to one image.
    let one = format!("oci:{}:one", s.path("out").display());
    s.unroot(&[
        "convert",
        "-q",
        &src,
        "--platform",
        "linux/arm64",
        "--to",
        &one,
    ])
    .success();
    assert_eq!(
        raw_manifest(&one)["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    // A docker archive holds one platform.
    let out = s
        .unroot(&[
            "convert",
            "-q",
            &src,
            "--to",
            &format!("docker-archive:{}", s.path("a.tar").display()),
        ])
        .failure(1);
    assert!(
        out.error_line().contains("pick one with `--platform`"),
        "{}",
        out.stderr
    );
    assert!(!s.path("a.tar").exists());
    // analyze reports each platform.
    let out = s.unroot(&["analyze", "-q", &src]).success();
    assert!(
        out.stdout.starts_with(&format!("analyzed {src}"))
            && out.stdout.contains("\n  digest sha256:"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("=== linux/arm64/v8 ==="),
        "{}",
        out.stdout
    );
}

#[test]
fn a_multi_platform_image_in_a_registry_converts_with_the_index_last() {
    let s = Scratch::new();
    let layout = multi_platform_layout(&s);
    let registry = Registry::start();
    skopeo(&[
        "copy",
        "--quiet",
        "--all",
        "--dest-tls-verify=false",
        &format!("oci:{}:multi", layout.display()),
        &registry.image("multi:v1"),
    ])
    .success();
    s.unroot(&["convert", "-q", &registry.image("multi:v1")])
        .success();
    let index = raw_manifest(&registry.image("multi:v1-unprivileged"));
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    assert_eq!(
        index["annotations"]["org.opencontainers.image.base.name"],
        format!("{}/multi:v1", registry.addr).as_str()
    );
    registry.copy_out("multi:v1-unprivileged", &s.path("copy"));
}

/// `--platform` on a single-platform image that is another platform is an error that
/// names the one it has, not a silent conversion of it; its own platform converts.
#[test]
fn a_platform_a_single_image_does_not_have_is_an_error() {
    let s = Scratch::new();
    let src = s.build("img", "v1", crate::support::TINY);
    let out = s
        .unroot(&[
            "convert",
            &src,
            "--platform",
            "linux/arm64",
            "--to",
            &format!("oci:{}:x", s.path("out").display()),
        ])
        .failure(1);
    assert_eq!(
        out.error_line(),
        format!("error: {src} has no image for linux/arm64; it has: linux/amd64")
    );
    assert!(
        out.stderr
            .contains("hint: pick one with `--platform linux/amd64`"),
        "{}",
        out.stderr
    );
    assert!(!s.path("out").exists());
    s.unroot(&[
        "convert",
        "-q",
        &src,
        "--platform",
        "linux/amd64",
        "--to",
        &format!("oci:{}:x", s.path("out").display()),
    ])
    .success();
}
