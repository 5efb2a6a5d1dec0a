//! Writing: the plan becomes a new layer, a new config and a new manifest.

pub mod image;
pub mod layer;
pub mod mutate;
pub mod pgzip;
pub mod remap;
