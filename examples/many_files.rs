//! Writes an OCI layout with one layer of many files, for the memory benchmark of the
//! merged view (`benches/many_files.sh`).
//!
//! usage: many_files LAYOUT FILES NAME_BYTES
//!   FILES files of no content, spread over directories 100 to a directory, each path
//!   about NAME_BYTES long (long directory components, shared as in real trees).
use std::io::Write;

use sha2::Digest as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, layout, files, name_bytes] = args.as_slice() else {
        eprintln!("usage: many_files LAYOUT FILES NAME_BYTES");
        std::process::exit(2);
    };
    let (files, name_bytes): (usize, usize) = (files.parse()?, name_bytes.parse()?);
    let layout = std::path::Path::new(layout);
    std::fs::create_dir_all(layout.join("blobs/sha256"))?;
    // Directory components of up to 200 bytes, as many as make the path long enough.
    let levels = name_bytes.div_ceil(200).max(1);
    let long = |level: usize| format!("l{level}-{}", "d".repeat(200.min(name_bytes) - 4));
    let mut tar = tar::Builder::new(Vec::new());
    for i in 0..files {
        let mut path = String::from("srv");
        for level in 0..levels {
            path.push('/');
            path.push_str(&long(level));
        }
        path.push_str(&format!("/g{}/f{i}", i / 100));
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(0);
        h.set_mode(0o644);
        h.set_mtime(0);
        tar.append_data(&mut h, &path, std::io::empty())?;
    }
    let tar = tar.into_inner()?;
    let diff_id = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&tar)));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar)?;
    let layer = gz.finish()?;
    let put = |bytes: &[u8]| -> std::io::Result<(String, usize)> {
        let hex = hex::encode(sha2::Sha256::digest(bytes));
        std::fs::write(layout.join("blobs/sha256").join(&hex), bytes)?;
        Ok((format!("sha256:{hex}"), bytes.len()))
    };
    let (layer_digest, layer_size) = put(&layer)?;
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"User": "1000"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    });
    let (config_digest, config_size) = put(&serde_json::to_vec(&config)?)?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer_size}],
    });
    let (manifest_digest, manifest_size) = put(&serde_json::to_vec(&manifest)?)?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest, "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": "latest"}}],
    });
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&index)?)?;
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    Ok(())
}
