//! The image model: digests, references, locations, manifests, configs and the port map.
//! Pure data: no I/O happens here.

pub mod command;
pub mod config;
pub mod digest;
pub mod location;
pub mod manifest;
pub mod media;
pub mod ports;
pub mod reference;
pub mod trace;
pub mod units;

pub use config::ImageConfig;
pub use digest::Digest;
pub use location::ImageLocation;
pub use manifest::{Descriptor, ImageIndex, ImageManifest, Manifest, Platform};
pub use reference::ImageRef;
pub use units::human_bytes;
