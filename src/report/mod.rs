//! Reports: what an analysis found and what a conversion did, in the forms people and
//! pipelines use: a text table, JSON (versioned schema in `schemas/`), and SARIF 2.1.0.
//!
//! Invariant: a report holds no times and no host paths beyond the locations the user
//! named, and every list is sorted, so the same image gives the same bytes.

use serde::Serialize;

use crate::analyze::{Finding, Fixer, Location, Severity};
use crate::model::Descriptor;
use crate::pipeline::{
    AnalyzeOutcome, ConvertOutcome, ImageAnalysis, ImageConversion, IndexConversion,
};

pub mod contract;
mod conversion;
pub mod learning;
pub mod sarif;
pub mod text;
pub mod verification;

pub use contract::{Contract, KubernetesOptions};
pub use conversion::{unified_diff, ChangeOut, ConfigChange, Conversion, PortMove};

/// The version of the JSON report's schema (`schemas/report-v1.schema.json`).
pub const SCHEMA_VERSION: u32 = 1;

/// What an analysis (or a conversion) found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Always [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The tool and its version.
    pub tool: Tool,
    /// The image analyzed (for a conversion: the source).
    pub image: ImageInfo,
    /// For a conversion: what was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<Destination>,
    /// Counts.
    pub summary: Summary,
    /// The findings, sorted by severity, rule and location.
    pub findings: Vec<FindingOut>,
    /// The recipes that match the image.
    pub recipes: Vec<RecipeOut>,
    /// What `unroot convert` does (for a conversion: did) to the image.
    pub conversion: Conversion,
    /// How to run the converted image.
    pub contract: Contract,
}

/// The tool.
#[derive(Clone, Debug, Serialize)]
pub struct Tool {
    /// `unroot`.
    pub name: &'static str,
    /// Its version.
    pub version: &'static str,
}

impl Default for Tool {
    fn default() -> Self {
        Tool {
            name: "unroot",
            version: env!("CARGO_PKG_VERSION"),
        }
    }
}

/// What `analyze` and `convert` report about an index: each platform's report, in the
/// index's order.
#[derive(Clone, Debug, Serialize)]
pub struct IndexReport {
    /// Always [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The tool and its version.
    pub tool: Tool,
    /// The index.
    pub index: IndexInfo,
    /// One report per platform.
    pub platforms: Vec<PlatformReport>,
}

/// The index a report is about.
#[derive(Clone, Debug, Serialize)]
pub struct IndexInfo {
    /// Its location, as given.
    pub location: String,
    /// Its digest.
    pub digest: String,
    /// For a conversion: the new index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<IndexDestination>,
    /// Entries not carried over (attestations), with why.
    pub dropped: Vec<String>,
}

/// The index a conversion wrote.
#[derive(Clone, Debug, Serialize)]
pub struct IndexDestination {
    /// Where.
    pub location: String,
    /// The new index's digest.
    pub digest: String,
    /// Whether it was written (`false` for `--dry-run`).
    pub written: bool,
}

/// One platform's report.
#[derive(Clone, Debug, Serialize)]
pub struct PlatformReport {
    /// `os/arch[/variant]`.
    pub platform: String,
    /// The report.
    pub report: Report,
}

impl IndexReport {
    fn new(
        location: String,
        digest: String,
        destination: Option<IndexDestination>,
        dropped: Vec<String>,
        platforms: Vec<(String, Report)>,
    ) -> IndexReport {
        IndexReport {
            schema_version: SCHEMA_VERSION,
            tool: Tool::default(),
            index: IndexInfo {
                location,
                digest,
                destination,
                dropped,
            },
            platforms: platforms
                .into_iter()
                .map(|(platform, report)| PlatformReport { platform, report })
                .collect(),
        }
    }

    /// The report of an index conversion: each platform's, and the new index.
    pub fn from_conversion(index: &IndexConversion) -> IndexReport {
        IndexReport::new(
            index.source.to_string(),
            index.source_digest.to_string(),
            Some(IndexDestination {
                location: index.destination.to_string(),
                digest: index.digest.to_string(),
                written: index.written,
            }),
            index.dropped.iter().map(dropped).collect(),
            index
                .platforms
                .iter()
                .map(|(p, c)| (p.clone(), Report::from_conversion(c)))
                .collect(),
        )
    }

    /// Whether any platform has a finding at `level` or worse.
    pub fn fails(&self, level: Severity) -> bool {
        self.platforms.iter().any(|p| p.report.fails(level))
    }

    /// The report as pretty JSON (followed by a newline).
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("reports serialize");
        s.push('\n');
        s
    }
}

/// The image a report is about.
#[derive(Clone, Debug, Serialize)]
pub struct ImageInfo {
    /// Its location, as given.
    pub location: String,
    /// Its manifest digest.
    pub digest: String,
    /// The platform, when picked from an index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Its `User`, as configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// What a conversion wrote.
#[derive(Clone, Debug, Serialize)]
pub struct Destination {
    /// Where.
    pub location: String,
    /// The manifest digest (the config's for docker archives).
    pub digest: String,
    /// Whether it was written (`false` for `--dry-run`: what would be written).
    pub written: bool,
    /// The new layer, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_layer: Option<NewLayerOut>,
    /// With `convert --verify`: each run of the image, which all passed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<Vec<String>>,
    /// With `convert --learn`: what was learned (the recipe, each change with its
    /// evidence), proven by the runs in `verified`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learned: Option<LearnedOut>,
}

/// What `convert --learn` learned.
#[derive(Clone, Debug, Serialize)]
pub struct LearnedOut {
    /// The recipe's name.
    pub recipe: String,
    /// The rounds it took (round 0, the original, included).
    pub rounds: usize,
    /// How long it took.
    pub seconds: f64,
    /// Each change, proven by the last run.
    pub changes: Vec<LearnedChangeOut>,
}

/// One learned change.
#[derive(Clone, Debug, Serialize)]
pub struct LearnedChangeOut {
    /// What it does.
    pub change: String,
    /// What showed it.
    pub evidence: Vec<String>,
}

/// The layer a conversion added.
#[derive(Clone, Debug, Serialize)]
pub struct NewLayerOut {
    /// Its digest.
    pub digest: String,
    /// Its compressed size.
    pub size: u64,
    /// Its entries.
    pub entries: usize,
    /// Bytes of file content it carries.
    pub content_bytes: u64,
}

/// Finding counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Error-level findings.
    pub errors: usize,
    /// Warnings.
    pub warnings: usize,
    /// Informational findings.
    pub infos: usize,
    /// Findings `unroot convert` fixes by default.
    pub fixable_by_unroot: usize,
}

/// A finding as reported.
#[derive(Clone, Debug, Serialize)]
pub struct FindingOut {
    /// Rule id (`UR101`).
    pub id: &'static str,
    /// Rule name (`root-user`).
    pub name: &'static str,
    /// Severity.
    pub severity: Severity,
    /// Where.
    pub location: Location,
    /// What, here.
    pub message: String,
    /// The rule's summary.
    pub summary: &'static str,
    /// How it is fixed.
    pub fix: &'static str,
    /// Who fixes it.
    pub fixer: Fixer,
    /// Equivalent checks of other scanners.
    pub refs: &'static [&'static str],
    /// For `analyze`: whether the converted image no longer has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fixed_by_convert: Option<bool>,
}

impl From<&Finding> for FindingOut {
    fn from(f: &Finding) -> FindingOut {
        FindingOut {
            id: f.rule.id,
            name: f.rule.name,
            severity: f.rule.severity,
            location: f.location.clone(),
            message: f.message.clone(),
            summary: f.rule.summary,
            fix: f.rule.fix,
            fixer: f.rule.fixer,
            refs: f.rule.refs,
            fixed_by_convert: None,
        }
    }
}

/// A matched recipe.
#[derive(Clone, Debug, Serialize)]
pub struct RecipeOut {
    /// Its name.
    pub name: String,
    /// What it is for.
    pub summary: String,
    /// The file that made it match.
    pub signature: String,
    /// The service's config files found.
    pub config_files: Vec<String>,
}

/// Why an index entry was not carried over.
fn dropped(desc: &Descriptor) -> String {
    format!(
        "{} ({}): it refers to the source image's digests, so it would be stale",
        desc.digest,
        desc.annotations
            .get("vnd.docker.reference.type")
            .map_or("attestation", String::as_str)
    )
}

/// The forms a report is printed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Readable, grouped by severity; wrapped to the terminal (or `$COLUMNS`, else 80).
    Text,
    /// JSON, schema `schemas/report-v1.schema.json`.
    Json,
    /// SARIF 2.1.0 (GitHub code scanning).
    Sarif,
}

/// A report of what `analyze` found, or of what `convert` did.
pub enum Outcome {
    /// One image.
    Image(Box<Report>),
    /// An index.
    Index(IndexReport),
    /// The source was converted already: nothing was done.
    AlreadyConverted {
        /// The source.
        location: String,
        /// Its digest.
        digest: String,
        /// The history entry that says so.
        created_by: String,
        /// Where it was copied unchanged, and the digest there.
        copied_to: Option<(String, String)>,
    },
}

impl Report {
    /// The report of an analysis.
    pub fn from_analysis(analysis: &ImageAnalysis) -> Report {
        let findings = &analysis.findings;
        let mut summary = Summary::default();
        for (i, f) in findings.iter().enumerate() {
            match f.rule.severity {
                Severity::Error => summary.errors += 1,
                Severity::Warning => summary.warnings += 1,
                Severity::Info => summary.infos += 1,
            }
            if analysis.fixed.get(i).copied().unwrap_or(false) {
                summary.fixable_by_unroot += 1;
            }
        }
        Report {
            schema_version: SCHEMA_VERSION,
            tool: Tool::default(),
            image: ImageInfo {
                location: analysis.location.to_string(),
                digest: analysis.digest.to_string(),
                platform: analysis.platform.as_ref().map(|p| p.to_string()),
                user: analysis.config_before.user().map(String::from),
            },
            destination: None,
            summary,
            findings: findings
                .iter()
                .enumerate()
                .map(|(i, f)| FindingOut {
                    fixed_by_convert: analysis.fixed.get(i).copied(),
                    ..FindingOut::from(f)
                })
                .collect(),
            recipes: analysis
                .recipes
                .iter()
                .map(|m| RecipeOut {
                    name: m.name.clone(),
                    summary: m.summary.clone(),
                    signature: m.signature.display(),
                    config_files: m.config_files.iter().map(|f| f.display()).collect(),
                })
                .collect(),
            conversion: Conversion::from_plan(
                &analysis.plan,
                &analysis.config_before,
                &analysis.config_after,
            ),
            contract: Contract::new(&analysis.contract, &analysis.run_as),
        }
    }

    /// The report of a conversion: the converted image's analysis, and what was written.
    pub fn from_conversion(conversion: &ImageConversion) -> Report {
        let mut report = Report::from_analysis(&conversion.analysis);
        report.destination = Some(Destination {
            location: conversion.destination.to_string(),
            digest: conversion.digest.to_string(),
            written: conversion.written,
            new_layer: conversion.new_layer.as_ref().map(|l| NewLayerOut {
                digest: l.digest.to_string(),
                size: l.size,
                entries: l.entries,
                content_bytes: l.content_bytes,
            }),
            verified: conversion.verified.clone(),
            learned: conversion.learning.as_ref().map(|l| LearnedOut {
                recipe: l.recipe_name.clone(),
                rounds: l.rounds.len(),
                seconds: (l.seconds * 10.0).round() / 10.0,
                changes: l
                    .knowledge
                    .learned
                    .iter()
                    .map(|c| LearnedChangeOut {
                        change: c.change.describe(),
                        evidence: c.evidence.clone(),
                    })
                    .collect(),
            }),
        });
        report
    }

    /// Whether any finding is at `level` or worse.
    pub fn fails(&self, level: Severity) -> bool {
        self.findings.iter().any(|f| f.severity <= level)
    }

    /// The report as pretty JSON (followed by a newline).
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("reports serialize");
        s.push('\n');
        s
    }
}

impl Outcome {
    /// The report of an analysis.
    pub fn of_analysis(outcome: &AnalyzeOutcome) -> Outcome {
        match outcome {
            AnalyzeOutcome::Image(a) => Outcome::Image(Box::new(Report::from_analysis(a))),
            AnalyzeOutcome::Index {
                location,
                digest,
                platforms,
            } => Outcome::Index(IndexReport::new(
                location.to_string(),
                digest.to_string(),
                None,
                Vec::new(),
                platforms
                    .iter()
                    .map(|(p, a)| (p.clone(), Report::from_analysis(a)))
                    .collect(),
            )),
        }
    }

    /// The report of a conversion.
    pub fn of_conversion(outcome: &ConvertOutcome) -> Outcome {
        match outcome {
            ConvertOutcome::Image(c) => Outcome::Image(Box::new(Report::from_conversion(c))),
            ConvertOutcome::Index(i) => Outcome::Index(IndexReport::from_conversion(i)),
            ConvertOutcome::AlreadyConverted {
                location,
                digest,
                created_by,
                copied_to,
            } => Outcome::AlreadyConverted {
                location: location.to_string(),
                digest: digest.to_string(),
                created_by: created_by.clone(),
                copied_to: copied_to
                    .as_ref()
                    .map(|(l, d)| (l.to_string(), d.to_string())),
            },
        }
    }

    /// The report as JSON, as `--format json` prints it.
    pub fn to_value(&self) -> serde_json::Value {
        match self {
            Outcome::Image(r) => serde_json::to_value(r).expect("reports serialize"),
            Outcome::Index(i) => serde_json::to_value(i).expect("reports serialize"),
            Outcome::AlreadyConverted {
                location,
                digest,
                created_by,
                copied_to,
            } => {
                let mut already = serde_json::json!({
                    "location": location,
                    "digest": digest,
                    "created_by": created_by,
                });
                if let Some((to, written)) = copied_to {
                    already["copied_to"] = serde_json::json!({ "location": to, "digest": written });
                }
                serde_json::json!({
                    "schema_version": SCHEMA_VERSION,
                    "already_converted": already,
                })
            }
        }
    }

    /// The report in `format`; text lines are not wrapped.
    pub fn render(&self, format: Format) -> String {
        self.render_width(format, usize::MAX)
    }

    /// The report in `format`, text lines wrapped at `width` columns ([`text::fit`]).
    pub fn render_width(&self, format: Format, width: usize) -> String {
        match (self, format) {
            (Outcome::Image(r), Format::Text) => text::render_width(r, width),
            (Outcome::Image(r), Format::Json) => r.to_json(),
            (Outcome::Image(r), Format::Sarif) => sarif::render(r),
            (Outcome::Index(i), Format::Text) => text::render_index_width(i, width),
            (Outcome::Index(i), Format::Json) => i.to_json(),
            (Outcome::Index(i), Format::Sarif) => sarif::render_index(i),
            (
                Outcome::AlreadyConverted {
                    location,
                    digest,
                    created_by,
                    copied_to,
                },
                format,
            ) => match format {
                Format::Text => {
                    let then = match copied_to {
                        None => "nothing to do".to_string(),
                        Some((to, written)) => {
                            format!("copied unchanged\n       to {to}\n  digest {written}")
                        }
                    };
                    text::fit(
                        &format!(
                            "{location}\n  digest {digest}\nalready converted (its history has `{created_by}`): {then}\n"
                        ),
                        width,
                    )
                }
                Format::Json => format!(
                    "{}\n",
                    serde_json::to_string_pretty(&self.to_value()).expect("JSON")
                ),
                Format::Sarif => sarif::render_already_converted(location, digest, created_by),
            },
        }
    }

    /// Whether a finding is at `level` or worse.
    pub fn fails(&self, level: Severity) -> bool {
        match self {
            Outcome::Image(r) => r.fails(level),
            Outcome::Index(i) => i.fails(level),
            Outcome::AlreadyConverted { .. } => false,
        }
    }
}
