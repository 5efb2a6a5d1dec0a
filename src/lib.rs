//! unroot converts container images that run as root into images that run unprivileged,
//! without a daemon and without a rebuild: it reads an image, streams its layers once,
//! and writes the original layers plus one new layer and a new config.

#![deny(missing_docs)]

pub mod error;
pub mod layer;
pub mod model;
pub mod pipeline;
pub mod plan;
pub mod transport;
pub mod write;

pub use error::Error;
pub mod analyze;
pub mod cli;
pub mod imagespec;
pub mod recipe;
pub mod report;

#[cfg(test)]
mod testkit;
