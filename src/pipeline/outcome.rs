//! What the pipeline returns: typed results, from which the front ends build their
//! reports (text, JSON, SARIF) or their records (the bot's jobs).

use crate::analyze::contract::RuntimeContract;
use crate::analyze::Finding;
use crate::model::{Descriptor, Digest, ImageConfig, ImageLocation, Platform};
use crate::plan::Plan;
use crate::recipe::RecipeMatch;

/// What the analysis of one image found: of the source for `analyze`, of the converted
/// image for `convert`.
#[derive(Clone, Debug)]
pub struct ImageAnalysis {
    /// The source, as given.
    pub location: ImageLocation,
    /// The source manifest's digest.
    pub digest: Digest,
    /// The platform, when picked from an index.
    pub platform: Option<Platform>,
    /// The findings, sorted.
    pub findings: Vec<Finding>,
    /// For `analyze`: per finding, whether the converted image no longer has it (the
    /// analyzers run again over the image as `convert` would write it); empty for the
    /// analysis of a converted image.
    pub fixed: Vec<bool>,
    /// The recipes that match.
    pub recipes: Vec<RecipeMatch>,
    /// What the conversion does (for `convert`: did).
    pub plan: Plan,
    /// The source's config.
    pub config_before: ImageConfig,
    /// The converted image's config.
    pub config_after: ImageConfig,
    /// How to run the converted image.
    pub contract: RuntimeContract,
    /// The image the contract's commands run (the destination).
    pub run_as: RunTarget,
}

/// The image a runtime contract's commands run: where the conversion wrote it (or, for
/// an analysis or a dry run, would write it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunTarget {
    /// The destination; `None` when there is none to name.
    pub location: Option<ImageLocation>,
    /// Its manifest digest, once it was written to a registry.
    pub digest: Option<Digest>,
    /// Whether the image is there now (`false` for an analysis or a dry run: it is where
    /// `unroot convert` would write it).
    pub written: bool,
}

/// What converting one image did.
#[derive(Clone, Debug)]
pub struct ImageConversion {
    /// Where it was written (or would be, for a dry run).
    pub destination: ImageLocation,
    /// The destination manifest's digest (the config's for docker archives).
    pub digest: Digest,
    /// The manifest's descriptor (what an index lists).
    pub manifest: Descriptor,
    /// Whether it was written (`false` for a dry run).
    pub written: bool,
    /// The new layer, when a file changed.
    pub new_layer: Option<NewLayerSummary>,
    /// The analysis of the converted image: what remains, the changes, the contract.
    pub analysis: ImageAnalysis,
    /// With `--verify`: each run of the converted image, which all passed.
    pub verified: Option<Vec<String>>,
    /// With `--learn`: what was learned, and how it was proven.
    pub learning: Option<Box<super::Learning>>,
}

/// The layer a conversion added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewLayerSummary {
    /// Its digest.
    pub digest: Digest,
    /// Its compressed size.
    pub size: u64,
    /// Its entries.
    pub entries: usize,
    /// Bytes of file content it carries.
    pub content_bytes: u64,
}

/// What `convert` did.
#[derive(Clone, Debug)]
pub enum ConvertOutcome {
    /// One image was converted (or planned, for a dry run).
    Image(Box<ImageConversion>),
    /// An index: every platform converted, then a new index.
    Index(IndexConversion),
    /// The source was converted by unroot already: nothing was written.
    AlreadyConverted {
        /// The source.
        location: ImageLocation,
        /// Its digest.
        digest: Digest,
        /// The history entry that says so.
        created_by: String,
        /// Where it was copied unchanged, with the digest written there (`--to` named a
        /// destination); `None`: nothing was written.
        copied_to: Option<(ImageLocation, Digest)>,
    },
}

/// What converting an index did.
#[derive(Clone, Debug)]
pub struct IndexConversion {
    /// The source index.
    pub source: ImageLocation,
    /// Its digest.
    pub source_digest: Digest,
    /// Where the new index was written.
    pub destination: ImageLocation,
    /// The new index's digest.
    pub digest: Digest,
    /// Whether it was written (`false` for a dry run).
    pub written: bool,
    /// Each platform's conversion, in the index's order.
    pub platforms: Vec<(String, ImageConversion)>,
    /// Entries not carried over: attestations, which name the source's digests.
    pub dropped: Vec<Descriptor>,
}

/// What `analyze` found.
#[derive(Clone, Debug)]
pub enum AnalyzeOutcome {
    /// One image.
    Image(Box<ImageAnalysis>),
    /// An index: each platform's analysis, in the index's order.
    Index {
        /// The index.
        location: ImageLocation,
        /// Its digest.
        digest: Digest,
        /// Each platform and its analysis.
        platforms: Vec<(String, ImageAnalysis)>,
    },
}
