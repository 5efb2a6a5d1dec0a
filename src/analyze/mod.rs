//! Analysis: independent passes over the merged view (and the captured text files) that
//! find what ties an image to root. Each analyzer is one file with its rules; each finding
//! names a stable rule id, a severity, where it is, one line of explanation, and the fix.
//!
//! Invariant: findings come out sorted (severity, rule, location, message) and carry no
//! times or host paths, so the same image always gives the same report.

use std::fmt;

use serde::Serialize;

use crate::layer::accounts::Accounts;
use crate::layer::{ImagePath, LayerInfo, MergedView};
use crate::model::ImageConfig;
use crate::plan::Plan;
use crate::recipe::MatchedRecipe;

pub mod contract;
pub mod ids;
pub mod ownership;
pub mod ports;
pub mod privileges;
pub mod recipes;
pub mod runtime_paths;
pub mod service_config;
pub mod user;

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The image cannot run unprivileged as it is.
    Error,
    /// It runs, but weaker than it should, or breaks in some runtimes.
    Warning,
    /// Worth knowing.
    Info,
}

impl Severity {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Who fixes a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fixer {
    /// `unroot convert` fixes it by default.
    Unroot,
    /// The user (or a recipe, or a flag) must.
    User,
}

/// A check, with the text that explains it.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// Stable id, e.g. `UR101`.
    pub id: &'static str,
    /// Short kebab-case name, e.g. `root-user`.
    pub name: &'static str,
    /// Default severity.
    pub severity: Severity,
    /// One sentence: what is wrong.
    pub summary: &'static str,
    /// Why it matters, in a few sentences.
    pub help: &'static str,
    /// How it is fixed.
    pub fix: &'static str,
    /// Who fixes it.
    pub fixer: Fixer,
    /// Equivalent checks of other scanners (`dockle CIS-DI-0001`, `hadolint DL3002`...).
    pub refs: &'static [&'static str],
}

/// Where a finding is.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Location {
    /// A field of the image config (`User`, `ExposedPorts`, `Env`).
    Config {
        /// The field.
        field: String,
    },
    /// A file of the image.
    File {
        /// Its path.
        path: String,
        /// The layer that holds it (0 = base).
        layer: Option<usize>,
        /// The line, for config files.
        #[serde(skip_serializing_if = "Option::is_none")]
        line: Option<usize>,
    },
}

impl Location {
    /// A file location.
    pub fn file(path: &ImagePath, layer: Option<usize>, line: Option<usize>) -> Location {
        Location::File {
            path: path.display(),
            layer,
            line,
        }
    }

    /// A config field location.
    pub fn config(field: &str) -> Location {
        Location::Config {
            field: field.to_string(),
        }
    }

    /// Whether two locations are the same place whatever layer holds the file (a path the
    /// new layer rewrites is still that path).
    pub fn same_place(&self, other: &Location) -> bool {
        match (self, other) {
            (
                Location::File { path, line, .. },
                Location::File {
                    path: p, line: l, ..
                },
            ) => path == p && line == l,
            (a, b) => a == b,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Config { field } => write!(f, "config {field}"),
            Location::File { path, layer, line } => {
                write!(f, "{path}")?;
                if let Some(l) = line {
                    write!(f, ":{l}")?;
                }
                if let Some(l) = layer {
                    write!(f, " (layer {})", l + 1)?;
                }
                Ok(())
            }
        }
    }
}

/// One problem found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The rule.
    #[serde(serialize_with = "rule_id")]
    pub rule: &'static Rule,
    /// Where.
    pub location: Location,
    /// One line about this instance.
    pub message: String,
}

fn rule_id<S: serde::Serializer>(rule: &&'static Rule, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(rule.id)
}

impl Finding {
    /// A finding of `rule` at `location`.
    pub fn new(rule: &'static Rule, location: Location, message: impl Into<String>) -> Finding {
        Finding {
            rule,
            location,
            message: message.into(),
        }
    }

    pub(crate) fn sort_key(&self) -> (Severity, &str, &Location, &str) {
        (
            self.rule.severity,
            self.rule.id,
            &self.location,
            &self.message,
        )
    }
}

/// Everything the analyzers look at.
pub struct Facts<'a> {
    /// The final filesystem.
    pub view: &'a MergedView,
    /// The layers, base first.
    pub layers: &'a [LayerInfo],
    /// The image config.
    pub config: &'a ImageConfig,
    /// `/etc/passwd` and `/etc/group` (empty when absent or unreadable).
    pub accounts: &'a Accounts,
    /// What the conversion would do (its runtime user, writable paths).
    pub plan: &'a Plan,
    /// The recipes that match.
    pub recipes: &'a [MatchedRecipe<'a>],
}

/// One analysis pass.
pub trait Analyzer {
    /// Its name (the file it lives in).
    fn name(&self) -> &'static str;
    /// The rules it checks.
    fn rules(&self) -> &'static [Rule];
    /// Adds its findings.
    fn run(&self, facts: &Facts<'_>, out: &mut Vec<Finding>);
}

/// Every analyzer, in a fixed order.
pub fn analyzers() -> Vec<Box<dyn Analyzer>> {
    vec![
        Box::new(user::User),
        Box::new(ports::Ports),
        Box::new(runtime_paths::RuntimePaths),
        Box::new(service_config::ServiceConfig),
        Box::new(ownership::Ownership),
        Box::new(privileges::Privileges),
        Box::new(ids::Ids),
        Box::new(recipes::Recipes),
    ]
}

/// Every rule, by id.
pub fn rules() -> Vec<&'static Rule> {
    let mut all: Vec<&'static Rule> = analyzers().iter().flat_map(|a| a.rules().iter()).collect();
    all.sort_by_key(|r| r.id);
    all
}

/// Runs every analyzer; findings sorted.
pub fn analyze(facts: &Facts<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    for a in analyzers() {
        a.run(facts, &mut out);
    }
    out.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    out.dedup();
    out
}

/// Whether `uid:gid` may write `path` (a directory: create in it; a file: write it, or
/// create it when it does not exist). Follows symlinks; a missing directory counts as
/// writable when its nearest existing ancestor is.
pub fn writable_by(view: &MergedView, path: &ImagePath, uid: u64, gid: u64) -> bool {
    let Ok(resolved) = view.resolve(path) else {
        return false;
    };
    let mut p = Some(resolved);
    while let Some(here) = p {
        if let Some(node) = view.get(&here) {
            let m = &node.meta;
            let bit = if m.uid == uid {
                0o200
            } else if m.gid == gid {
                0o020
            } else {
                0o002
            };
            return uid == 0 || m.mode & bit != 0;
        }
        if here.is_root() {
            // The root directory itself, when the image has no entry for it, is root's.
            return uid == 0;
        }
        p = here.parent();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_ids_are_unique_and_well_formed() {
        let rules = rules();
        let mut ids: Vec<&str> = rules.iter().map(|r| r.id).collect();
        ids.dedup();
        assert_eq!(ids.len(), rules.len(), "duplicate rule ids");
        for r in rules {
            assert!(r.id.starts_with("UR") && r.id.len() == 5, "{}", r.id);
            assert!(
                r.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{}",
                r.name
            );
            assert!(!r.summary.ends_with('.'), "{}: no trailing period", r.id);
        }
    }
}
