//! The image model: digests, references, locations, manifests and configs. Pure data: no
//! I/O happens here.

pub mod config;
pub mod digest;
pub mod location;
pub mod manifest;
pub mod media;
pub mod reference;

pub use config::ImageConfig;
pub use digest::Digest;
pub use location::ImageLocation;
pub use manifest::{Descriptor, ImageIndex, ImageManifest, Manifest, Platform};
pub use reference::ImageRef;
