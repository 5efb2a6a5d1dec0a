//! unroot converts container images that run as root into images that run unprivileged,
//! without a daemon and without a rebuild: it reads an image, streams its layers once,
//! and writes the original layers plus one new layer and a new config.
//!
//! Front ends (the CLI, and servers) make a [`pipeline::Session`] and call
//! [`Session::analyze`](pipeline::Session::analyze) or
//! [`Session::convert`](pipeline::Session::convert); they build their reports from the
//! typed results with [`report`]:
//!
//! ```no_run
//! use unroot::pipeline::{ConvertOptions, ConvertRequest, PlanOptions, Session, SessionOptions};
//! use unroot::report::{Format, Outcome};
//!
//! # fn main() -> Result<(), unroot::Error> {
//! let request = ConvertRequest::new(
//!     "registry.local:5000/app:1.4",
//!     &PlanOptions::default(),
//!     &ConvertOptions::default(),
//! )?;
//! let session = Session::new(SessionOptions::default());
//! let outcome = session.convert(&request)?;
//! print!("{}", Outcome::of_conversion(&outcome).render(Format::Text));
//! # Ok(())
//! # }
//! ```
//!
//! Folders depend downward only, in this order (each may use those below it, never one
//! above):
//!
//! ```text
//! cli        clap definitions and rendering; no logic
//! serve      the registry bot: webhook payloads -> image events (jobs over a Session)
//! report     text, JSON, SARIF; the runtime contract as docker and Kubernetes settings
//! pipeline   Session: resolve -> scan -> plan -> analysis; mutate -> sink; verify; learn
//! runtime    unpack layers into a root filesystem, run it with an OCI runtime, watch it, trace it
//! analyze    passes over the merged view and the plan -> findings; the runtime contract
//! write      plan -> new layer, id remap, config, manifest
//! plan       recipe outcomes + the generic conversion -> Plan; traced runs -> learned changes
//! recipe     recipe syntax, matching, edits; learned recipes written out
//! transport  sources and sinks: registries (pool, client), layouts, archives; credentials
//! layer      one layer as a verified stream; whiteouts; merged view; account files
//! control    events and cancellation of a job; the lock policy; the local-file error
//! model      digests, references, locations, manifests, configs, the port map (pure data)
//! ```
//!
//! `error` gathers the folders' errors into one type with hints and exit codes;
//! `imagespec` builds images from a declarative spec (tests, golden images, benchmarks).

#![deny(missing_docs)]

pub mod analyze;
pub mod cli;
pub mod control;
pub mod error;
pub mod imagespec;
pub mod layer;
pub mod model;
pub mod pipeline;
pub mod plan;
pub mod recipe;
pub mod report;
pub mod runtime;
#[cfg(feature = "serve")]
pub mod serve;
pub mod transport;
pub mod write;

pub use error::Error;

#[cfg(test)]
mod testkit;
