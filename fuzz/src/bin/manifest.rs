//! Manifests, indexes and configs as registries and layouts serve them.
use unroot::model::{media, ImageConfig, Manifest};

fn main() {
    afl::fuzz!(|data: &[u8]| {
        for media_type in [
            None,
            Some(media::OCI_MANIFEST),
            Some(media::OCI_INDEX),
            Some(media::DOCKER_MANIFEST),
            Some(media::DOCKER_MANIFEST_LIST),
        ] {
            let _ = Manifest::parse(data, media_type);
        }
        if let Ok(config) = ImageConfig::parse(data) {
            let _ = config.diff_ids();
            let _ = config.exposed_ports();
            let _ = config.env();
            let _ = config.to_bytes();
        }
    });
}
