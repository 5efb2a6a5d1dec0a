//! Layers: one blob as a verified stream of entries; whiteouts; the merged view of all
//! layers; the single pass that builds it.

pub mod accounts;
pub mod compression;
pub mod entry;
pub mod feed;
pub mod guard;
pub mod gzip;
pub mod merged;
pub mod path;
pub mod range;
pub mod reader;
pub mod scan;
pub mod stream;

pub use compression::Compression;
pub use entry::{Change, Kind, Meta};
pub use merged::{Content, MergedView, Node};
pub use path::ImagePath;
pub use reader::{LayerError, LayerInfo};
pub use scan::{CapturePolicy, Scan, Want};
