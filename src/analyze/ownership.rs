//! Ownership: code owned by non-root users (the `COPY --chown` pattern), and files the
//! runtime user can write although it only needs to read them.

use super::{Analyzer, Facts, Finding, Fixer, Location, Rule, Severity};
use crate::layer::Kind;
use crate::plan::generic::is_code;

/// The rules of this analyzer.
pub static RULES: [Rule; 2] = [
    Rule {
        id: "UR401",
        name: "code-owned-by-user",
        severity: Severity::Warning,
        summary: "An executable or library is owned by a non-root user",
        help: "Code the service runs but never writes should be root-owned: a compromised service that owns its binaries can replace them and persist. `COPY --chown=app:app` and `chown -R app /app` cause this.",
        fix: "`unroot convert` re-owns them to root and removes group and other write",
        fixer: Fixer::Unroot,
        refs: &[],
    },
    Rule {
        id: "UR402",
        name: "user-writable-file",
        severity: Severity::Warning,
        summary: "The runtime user can write a file it only needs to read",
        help: "Files outside the directories the service writes (volumes, its home, its state) should not be writable by it; a compromised service could change its own configuration.",
        fix: "make the file root-owned and not group- or world-writable",
        fixer: Fixer::User,
        refs: &[],
    },
];

/// Checks who owns what.
pub struct Ownership;

/// Findings listed per rule before the rest is summed up in one line.
const LIST_AT_MOST: usize = 20;

impl Analyzer for Ownership {
    fn name(&self) -> &'static str {
        "ownership"
    }

    fn rules(&self) -> &'static [Rule] {
        &RULES
    }

    fn run(&self, facts: &Facts<'_>, out: &mut Vec<Finding>) {
        let (uid, gid) = (facts.plan.identity.uid, facts.plan.identity.gid);
        let writable_roots = &facts.plan.writable;
        let mut code = Vec::new();
        let mut writable = Vec::new();
        for (path, node) in facts.view.iter() {
            let m = &node.meta;
            if m.kind != Kind::File {
                continue;
            }
            if m.uid != 0 && is_code(&path, m) {
                code.push((path, node));
                continue;
            }
            let user_can_write = (m.uid == uid && m.mode & 0o200 != 0)
                || (m.uid != uid && m.gid == gid && m.mode & 0o020 != 0);
            if user_can_write && !writable_roots.iter().any(|w| path.is_below(w)) {
                writable.push((path, node));
            }
        }
        let mut report = |rule: &'static Rule,
                          list: Vec<(crate::layer::ImagePath, &crate::layer::Node)>,
                          what: &str| {
            let total = list.len();
            for (path, node) in list.iter().take(LIST_AT_MOST) {
                out.push(Finding::new(
                    rule,
                    Location::file(path, Some(node.layer), None),
                    format!(
                        "{what} owned by {}:{} mode {:04o}",
                        node.meta.uid, node.meta.gid, node.meta.mode
                    ),
                ));
            }
            if total > LIST_AT_MOST {
                let (path, node) = &list[LIST_AT_MOST];
                out.push(Finding::new(
                    rule,
                    Location::file(path, Some(node.layer), None),
                    format!("and {} more like it", total - LIST_AT_MOST),
                ));
            }
        };
        report(&RULES[0], code, "code");
        report(&RULES[1], writable, "writable by the runtime user:");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{Analyzed, CLEAN};

    const CHOWNED: &str = r#"
[config]
User = "app"
[[layer]]
[[layer.entry]]
path = "/etc/passwd"
text = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"
[[layer.entry]]
path = "/app"
type = "dir"
uid = 1000
gid = 1000
[[layer.entry]]
path = "/app/server"
size = 10
mode = 0o755
uid = 1000
gid = 1000
[[layer.entry]]
path = "/app/libx.so.2"
size = 10
uid = 1000
gid = 1000
[[layer.entry]]
path = "/app/config.yml"
text = "debug: false\n"
uid = 1000
gid = 1000
[[layer.entry]]
path = "/etc/app.conf"
text = "x\n"
mode = 0o664
gid = 1000
[[layer.entry]]
path = "/home/app/notes"
text = "mine\n"
uid = 1000
"#;

    #[test]
    fn findings() {
        assert_eq!(
            Analyzed::from_spec(CHOWNED).run(&Ownership),
            [
                "UR401 warning /app/libx.so.2 (layer 1): code owned by 1000:1000 mode 0644",
                "UR401 warning /app/server (layer 1): code owned by 1000:1000 mode 0755",
                "UR402 warning /app/config.yml (layer 1): writable by the runtime user: owned by 1000:1000 mode 0644",
                "UR402 warning /etc/app.conf (layer 1): writable by the runtime user: owned by 0:1000 mode 0664",
            ]
        );
    }

    #[test]
    fn clean_image_reports_nothing() {
        assert_eq!(
            Analyzed::from_spec(CLEAN).run(&Ownership),
            Vec::<String>::new()
        );
    }
}
