//! Golden images: every `golden-images/*/spec.toml` rebuilds to the committed `image/`
//! byte for byte, and converts to what `expected.txt` says. `UPDATE_GOLDEN=1` rewrites both
//! (review the diff); CI runs without it, so any drift fails.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use unroot::layer::reader::{read_layer, VisitError};
use unroot::layer::Change;
use unroot::model::{Descriptor, Digest};

use crate::support::{build, files_below, layout_blob as blob, read_json, Scratch};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("golden-images")
}

fn update() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1")
}

fn names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(golden_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("spec.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Lists a layer: type, mode, owner, size, path, xattrs, and the text of small text files.
fn listing(layout: &Path, desc: &serde_json::Value) -> String {
    let digest = Digest::parse(desc["digest"].as_str().unwrap()).unwrap();
    let size = desc["size"].as_u64().unwrap();
    let file = std::fs::File::open(blob(layout, &digest.to_string())).unwrap();
    let mut out = String::new();
    let d = Descriptor::new(desc["mediaType"].as_str().unwrap(), digest, size);
    let cancel = unroot::control::Cancel::new();
    read_layer(
        file,
        &d,
        None,
        &mut |path, change, body| {
            match change {
                Change::Put(meta) => {
                    let _ = write!(
                        out,
                        "{}{:04o} {}:{} {:>6} {path}",
                        meta.kind.letter(),
                        meta.mode,
                        meta.uid,
                        meta.gid,
                        meta.size
                    );
                    if let Some(link) = &meta.link {
                        let _ = write!(out, " -> {}", String::from_utf8_lossy(link));
                    }
                    for (k, v) in &meta.xattrs {
                        let _ = write!(out, " xattr {k}={}", hex(v));
                    }
                    out.push('\n');
                    if meta.size <= 1024 {
                        let mut text = Vec::new();
                        body.read_to_end(&mut text)
                            .map_err(|e| VisitError(e.to_string()))?;
                        if let Ok(t) = String::from_utf8(text) {
                            for line in t.lines() {
                                let _ = writeln!(out, "    | {line}");
                            }
                        }
                    }
                }
                other => {
                    let _ = writeln!(out, "{other:?} {path}");
                }
            }
            Ok(())
        },
        &cancel,
    )
    .unwrap();
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two directory trees file by file.
fn same_tree(a: &Path, b: &Path) -> Result<(), String> {
    let (fa, fb) = (files_below(a), files_below(b));
    if fa != fb {
        return Err(format!("file lists differ:\n{fa:#?}\n{fb:#?}"));
    }
    for f in fa {
        let (pa, pb) = (a.join(&f), b.join(&f));
        if pa.is_file() && std::fs::read(&pa).unwrap() != std::fs::read(&pb).unwrap() {
            return Err(format!("`{f}` differs"));
        }
    }
    Ok(())
}

fn replace_dir(from: &Path, to: &Path) {
    if to.exists() {
        std::fs::remove_dir_all(to).unwrap();
    }
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

/// The expected text of converting one golden image.
fn conversion_text(s: &Scratch, name: &str, image: &Path) -> String {
    assert!(image.ends_with(format!("golden-images/{name}/image")));
    let out_dir = s.path(&format!("{name}-out"));
    // Run from the repository with a relative source, as README does: the source's name is
    // recorded in the output, so it must not depend on where the checkout is.
    let source = format!("oci:golden-images/{name}/image:latest");
    let out = s
        .unroot_in(
            Path::new(env!("CARGO_MANIFEST_DIR")),
            &[
                "convert",
                "-q",
                &source,
                "--to",
                &format!("oci:{}:converted", out_dir.display()),
            ],
        )
        .success();
    within_80_columns(&out.stdout);
    let report = out.stdout.replace(&out_dir.display().to_string(), "OUT");
    let index = read_json(&out_dir.join("index.json"));
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest = read_json(&blob(&out_dir, &manifest_digest));
    let config = read_json(&blob(
        &out_dir,
        manifest["config"]["digest"].as_str().unwrap(),
    ));
    let mut text = format!(
        "# `unroot convert` of golden-images/{name}/image (generated by tests/it/golden.rs: do not edit)\n\nmanifest {manifest_digest}\n\n## report\n\n{report}\n"
    );
    let layers = manifest["layers"].as_array().unwrap();
    let source_layers = {
        let src_index = read_json(&image.join("index.json"));
        let m = read_json(&blob(
            image,
            src_index["manifests"][0]["digest"].as_str().unwrap(),
        ));
        m["layers"].as_array().unwrap().len()
    };
    if layers.len() > source_layers {
        let _ = write!(
            text,
            "## new layer\n\n{}\n",
            listing(&out_dir, layers.last().unwrap())
        );
    }
    let _ = write!(
        text,
        "## config\n\n{}\n\n## manifest\n\n{}\n",
        serde_json::to_string_pretty(&config).unwrap(),
        serde_json::to_string_pretty(&manifest).unwrap()
    );
    text
}

/// `unroot analyze` of a golden image, as text.
fn analysis_text(s: &Scratch, name: &str) -> String {
    let source = format!("oci:golden-images/{name}/image:latest");
    let out = s
        .unroot_in(
            Path::new(env!("CARGO_MANIFEST_DIR")),
            &["analyze", "-q", &source],
        )
        .success();
    within_80_columns(&out.stdout);
    format!("# `unroot analyze` of golden-images/{name}/image (generated by tests/it/golden.rs: do not edit)\n\n{}", out.stdout)
}

/// Every line of a text report fits an 80-column terminal, but for a single word too long
/// to break (a long path).
fn within_80_columns(text: &str) {
    for line in text.lines() {
        let words = line.trim_end_matches(" \\").split_whitespace().count();
        assert!(
            line.chars().count() <= 80 || words == 1,
            "a line of {} columns:\n{line}\nin\n{text}",
            line.chars().count()
        );
    }
}

/// `unroot convert --dry-run` of a golden image: the plan with every edit's diff.
fn plan_text(s: &Scratch, name: &str) -> String {
    let source = format!("oci:golden-images/{name}/image:latest");
    let out = s
        .unroot_in(
            Path::new(env!("CARGO_MANIFEST_DIR")),
            &[
                "convert",
                "-q",
                "--dry-run",
                &source,
                "--to",
                "oci:OUT:converted",
            ],
        )
        .success();
    // The diffs' lines (from `--- a/PATH` to the blank line that ends the diff) are the
    // files' own, never wrapped; the rest fits.
    let mut in_diff = false;
    let report: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| {
            if l.starts_with("--- a/") {
                in_diff = true;
            } else if l.is_empty() {
                in_diff = false;
            }
            !in_diff
        })
        .collect();
    within_80_columns(&report.join("\n"));
    format!("# `unroot convert --dry-run` of golden-images/{name}/image (generated by tests/it/golden.rs: do not edit)\n\n{}", out.stdout)
}

#[test]
fn golden_images_rebuild_and_convert_as_committed() {
    let s = Scratch::new();
    let mut failures = Vec::new();
    let names = names();
    assert!(
        names.contains(&"sample".to_string()),
        "the bundled sample is missing"
    );
    for name in &names {
        let dir = golden_dir().join(name);
        let spec = std::fs::read_to_string(dir.join("spec.toml")).unwrap();
        let built = s.path(&format!("{name}-image"));
        build(&spec, &format!("oci:{}:latest", built.display()));
        let committed = dir.join("image");
        if update() {
            replace_dir(&built, &committed);
        } else if let Err(e) = same_tree(&built, &committed) {
            failures.push(format!(
                "{name}: the image built from spec.toml differs from image/: {e}"
            ));
            continue;
        }

        let outputs = [
            (
                "expected.txt",
                "the conversion",
                conversion_text(&s, name, &committed),
            ),
            ("analysis.txt", "the analysis", analysis_text(&s, name)),
            ("plan.txt", "the dry run", plan_text(&s, name)),
        ];
        for (file, what, text) in outputs {
            let expected_path = dir.join(file);
            if update() {
                std::fs::write(&expected_path, &text).unwrap();
                continue;
            }
            let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
            if expected != text {
                let actual = s.path(&format!("{name}.{file}"));
                let _ = std::fs::write(&actual, &text);
                failures.push(format!(
                    "{name}: {what} differs from {file} (actual output kept in {})",
                    actual.display()
                ));
            }
        }
    }
    if !failures.is_empty() {
        // Keep the scratch directory so the actual output can be compared.
        let kept = s.dir.keep();
        panic!(
            "{}\n\nif the change is intended, run `UPDATE_GOLDEN=1 cargo test --test it golden` and review the diff (scratch kept in {})",
            failures.join("\n"),
            kept.display()
        );
    }
}
