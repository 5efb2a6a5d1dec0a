//! unroot as a container image (`scripts/image`): a static binary and its certificates, no
//! root and no error-level finding in unroot's own analysis of it, and it works as it is
//! meant to be run: as its user, with a read-only root and a tmpfs /tmp, converting an
//! image it is given.

use std::path::Path;

use crate::runtime::{unique, Bundle};
use crate::support::{skopeo, tool, Scratch};

#[test]
fn the_unroot_image_is_non_root_analyzes_clean_and_converts_under_runc() {
    let s = Scratch::new();
    let layout = s.path("unroot");
    let image = format!("oci:{}:test", layout.display());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/image");
    let out = tool(script.to_str().unwrap(), &[&image]).success();
    assert!(
        out.stdout.trim().starts_with(&format!("{image}@sha256:")),
        "{}",
        out.stdout
    );

    // Non-root by construction, and nothing in it that unroot itself calls an error.
    let out = s
        .unroot(&[
            "analyze",
            "-q",
            "--format",
            "json",
            "--fail-on",
            "error",
            &image,
        ])
        .success();
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let errors: Vec<_> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let config: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", "--config", &image]).success().stdout).unwrap();
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(config["config"]["Entrypoint"][0], "/usr/local/bin/unroot");

    // Unpacked and run as the image says, read-only, with the sample image bind-mounted
    // read-only: it converts it into /tmp and the result is the one unroot gives here.
    let bundle = Bundle::new(&s, &layout, "test", "bundle", None);
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("golden-images/sample/image");
    let config_path = s.path("bundle/config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    assert_eq!(config["process"]["user"]["uid"], 65532);
    config["process"]["args"] = serde_json::json!([
        "/usr/local/bin/unroot",
        "convert",
        "--quiet",
        "--format",
        "json",
        "oci:/in:latest",
        "--to",
        "oci:/tmp/out:latest"
    ]);
    config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "destination": "/in", "type": "bind", "source": sample,
            "options": ["rbind", "ro"]
        }));
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    let run = bundle.run_to_exit(&unique("unroot-image", &s));
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let inside: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", run.stdout, run.stderr));
    let here = s
        .unroot(&[
            "convert",
            "--quiet",
            "--format",
            "json",
            &format!("oci:{}:latest", sample.display()),
            "--to",
            &format!("oci:{}:latest", s.path("out").display()),
        ])
        .success();
    let here: serde_json::Value = serde_json::from_str(&here.stdout).unwrap();
    assert_eq!(
        inside["destination"]["digest"],
        here["destination"]["digest"]
    );
    assert!(inside["destination"]["digest"]
        .as_str()
        .is_some_and(|d| d.starts_with("sha256:")));
}
