//! The pipeline: a [`Session`] and the one place that wires the work together. Per image,
//! a straight line: resolve (manifest and config) -> scan (one pass over the layers) ->
//! plan -> analysis; for a conversion, mutate (new layer, config, manifest) -> sink.
//! Results are typed ([`ImageAnalysis`], [`ConvertOutcome`]); the front ends make
//! reports of them.
//!
//! Invariant: nothing is written to the destination until every layer has been read and
//! verified and the new layer is complete; the sink then writes blobs before the manifest,
//! and the tag last.

mod analyze;
mod convert;
mod layer_cache;
mod learn;
mod metered;
mod outcome;
mod request;
mod resolve;
pub(crate) mod scan;
mod session;
mod twin;
mod verify;

pub use analyze::run_name;
pub use outcome::{
    AnalyzeOutcome, ConvertOutcome, ImageAnalysis, ImageConversion, IndexConversion,
    NewLayerSummary, RunTarget,
};
pub use request::{
    created_time, default_destination, ConvertOptions, ConvertRequest, ImageRequest, PlanOptions,
    RequestError, CREATED_BY, MAX_ID, SUFFIX,
};
pub use resolve::{Contents, Resolved, ResolvedImage, ResolvedIndex};

pub use layer_cache::{CacheStats, LayerCache};
pub use learn::{LearnOptions, LearnRequest, Learning, Round, Stop, ROUNDS, TIME_LIMIT};
pub use scan::ScanLimits;
pub use session::{Session, SessionOptions};
pub use verify::{Run, Verification, VerifyOptions, VerifyRequest, ID_MAP};
