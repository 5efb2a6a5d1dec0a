//! Builds analysis facts from an image spec, for the unit tests of the analyzers and the
//! recipes. Test-only, so it may use every folder; nothing else uses it.

use crate::analyze::{Analyzer, Facts, Finding};
use crate::imagespec::ImageSpec;
use crate::layer::accounts::Accounts;
use crate::layer::Scan;
use crate::model::{ImageConfig, ImageLocation};
use crate::pipeline::{self, Contents, Session, SessionOptions};
use crate::plan::{self, generic, Plan, RecipeFailure};
use crate::recipe::{MatchedRecipe, Selection};

/// An image read for analysis.
pub struct Analyzed {
    pub scan: Scan,
    pub config: ImageConfig,
    pub accounts: Accounts,
    pub plan: Plan,
    pub recipes: Selection,
}

impl Analyzed {
    /// Builds the spec into a temporary layout and scans it as `unroot analyze` does.
    pub fn from_spec(spec: &str) -> Analyzed {
        let dir = tempfile::tempdir().unwrap();
        let loc = ImageLocation::parse(&format!("oci:{}:t", dir.path().display())).unwrap();
        ImageSpec::parse(spec, "test").unwrap().build(&loc).unwrap();
        let session = Session::new(SessionOptions::default());
        let mut resolved = session.resolve(&loc, None).unwrap();
        let Contents::Image(image) = resolved.contents.clone() else {
            panic!("a spec builds one image");
        };
        let recipes = Selection::default();
        let scan = pipeline::scan::scan_layers(
            resolved.source.as_mut(),
            &image,
            &recipes.all(),
            false,
            dir.path(),
            &pipeline::ScanLimits::default(),
            None,
            session.control(),
        )
        .unwrap()
        .scan;
        let accounts = Accounts::read(&scan.view).unwrap_or_default();
        let plan = plan::build(
            &scan,
            &image.config,
            &recipes,
            &generic::Options::default(),
            RecipeFailure::Record,
        )
        .unwrap();
        Analyzed {
            scan,
            config: image.config,
            accounts,
            plan,
            recipes,
        }
    }

    /// One analyzer's findings, one line each: `ID severity location: message`.
    pub fn run(&self, analyzer: &dyn Analyzer) -> Vec<String> {
        let matched = MatchedRecipe::find(&self.recipes, &self.scan.view);
        let facts = Facts {
            view: &self.scan.view,
            layers: &self.scan.layers,
            config: &self.config,
            accounts: &self.accounts,
            plan: &self.plan,
            recipes: &matched,
        };
        let mut out: Vec<Finding> = Vec::new();
        analyzer.run(&facts, &mut out);
        for f in &out {
            assert!(
                analyzer.rules().iter().any(|r| std::ptr::eq(r, f.rule)),
                "{} reports a rule it does not own",
                analyzer.name()
            );
        }
        out.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        out.iter()
            .map(|f| {
                format!(
                    "{} {} {}: {}",
                    f.rule.id, f.rule.severity, f.location, f.message
                )
            })
            .collect()
    }
}

/// The spec of an image with nothing to report: a numeric non-root user with an entry,
/// unprivileged ports, root-owned code.
pub const CLEAN: &str = r#"
[config]
User = "10001:10001"
Env = ["PORT=8080"]
ExposedPorts = ["8080/tcp"]

[[layer]]
[[layer.entry]]
path = "/etc/passwd"
text = "root:x:0:0:root:/root:/sbin/nologin\napp:x:10001:10001::/nonexistent:/sbin/nologin\n"
[[layer.entry]]
path = "/etc/group"
text = "root:x:0:\napp:x:10001:\n"
[[layer.entry]]
path = "/tmp"
type = "dir"
mode = 0o1777
[[layer.entry]]
path = "/usr/bin/app"
size = 100
mode = 0o755
"#;

/// A GNU tar header of `kind`, `size` and `mode`, its ids and time left at 0.
pub fn tar_header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_cksum();
    h
}
