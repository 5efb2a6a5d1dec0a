//! The runtime user: root, a name instead of a number, or a user without an account.

use super::{Analyzer, Facts, Finding, Fixer, Location, Rule, Severity};
use crate::layer::accounts;

/// The rules of this analyzer.
pub static RULES: [Rule; 3] = [
    Rule {
        id: "UR101",
        name: "root-user",
        severity: Severity::Error,
        summary: "The image runs as root",
        help: "With no `User`, `User 0`, `root`, or a name whose uid is 0, every process of the container runs as uid 0. A breakout or a mounted host path then belongs to root, and Kubernetes' `runAsNonRoot` refuses the image.",
        fix: "`unroot convert` sets a numeric non-root `User` (the image's own service account when it has one, else 65532) and adds its passwd entry",
        fixer: Fixer::Unroot,
        refs: &["dockle CIS-DI-0001", "hadolint DL3002", "trivy DS002", "trivy KSV012"],
    },
    Rule {
        id: "UR102",
        name: "named-user",
        severity: Severity::Error,
        summary: "The image's User is a name, not a number",
        help: "The kubelet cannot verify that a named user is non-root and refuses to start the pod under `runAsNonRoot: true` (\"image has non-numeric user\").",
        fix: "`unroot convert` replaces the name with `UID:GID` from /etc/passwd",
        fixer: Fixer::Unroot,
        refs: &["trivy KSV012"],
    },
    Rule {
        id: "UR103",
        name: "user-without-account",
        severity: Severity::Warning,
        summary: "The image's User has no entry in /etc/passwd",
        help: "A named user without an entry stops the container from starting; a numeric one runs, but with no home directory and no name, which breaks programs that look themselves up (ssh, git, some language runtimes).",
        fix: "`unroot convert` adds the passwd (and group) entry",
        fixer: Fixer::Unroot,
        refs: &[],
    },
];

/// Checks the config's `User` against the account files.
pub struct User;

impl Analyzer for User {
    fn name(&self) -> &'static str {
        "user"
    }

    fn rules(&self) -> &'static [Rule] {
        &RULES
    }

    fn run(&self, facts: &Facts<'_>, out: &mut Vec<Finding>) {
        let raw = facts.config.user();
        let accounts = facts.accounts;
        let resolved = accounts::resolve_user(raw, &accounts.passwd, &accounts.groups);
        let at = || Location::config("User");
        let shown = raw.unwrap_or("");
        match resolved.uid {
            Some(0) => {
                let how = match raw {
                    None => "no `User` is set, so it runs as root".to_string(),
                    Some(u) if u.split(':').next() == Some("0") => format!("`User` is `{u}`"),
                    Some(u) if u.split(':').next() == Some("root") => format!("`User` is `{u}`"),
                    Some(u) => format!("`User` is `{u}`, whose uid in /etc/passwd is 0"),
                };
                out.push(Finding::new(&RULES[0], at(), how));
            }
            Some(uid) if resolved.name.is_some() => out.push(Finding::new(
                &RULES[1],
                at(),
                format!(
                    "`User` is `{shown}` (uid {uid}); use `{uid}:{}`",
                    resolved.gid.unwrap_or(uid)
                ),
            )),
            Some(uid) => {
                if !accounts.passwd.iter().any(|p| p.uid == uid) {
                    out.push(Finding::new(
                        &RULES[2],
                        at(),
                        format!("uid {uid} has no entry in /etc/passwd"),
                    ));
                }
            }
            None => {
                out.push(Finding::new(
                    &RULES[1],
                    at(),
                    format!("`User` is `{shown}`, a name"),
                ));
                out.push(Finding::new(
                    &RULES[2],
                    at(),
                    format!("`{shown}` has no entry in /etc/passwd, so the container cannot start"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{Analyzed, CLEAN};

    fn with_user(user: Option<&str>) -> Vec<String> {
        let spec = match user {
            Some(u) => CLEAN.replace("User = \"10001:10001\"", &format!("User = \"{u}\"")),
            None => CLEAN.replace("User = \"10001:10001\"\n", ""),
        };
        Analyzed::from_spec(&spec).run(&User)
    }

    #[test]
    fn findings() {
        assert_eq!(
            with_user(None),
            ["UR101 error config User: no `User` is set, so it runs as root"]
        );
        assert_eq!(
            with_user(Some("0:0")),
            ["UR101 error config User: `User` is `0:0`"]
        );
        assert_eq!(
            with_user(Some("root")),
            ["UR101 error config User: `User` is `root`"]
        );
        assert_eq!(
            with_user(Some("app")),
            ["UR102 error config User: `User` is `app` (uid 10001); use `10001:10001`"]
        );
        assert_eq!(
            with_user(Some("4242")),
            ["UR103 warning config User: uid 4242 has no entry in /etc/passwd"]
        );
        assert_eq!(
            with_user(Some("ghost")),
            [
                "UR102 error config User: `User` is `ghost`, a name",
                "UR103 warning config User: `ghost` has no entry in /etc/passwd, so the container cannot start"
            ]
        );
    }

    #[test]
    fn clean_image_reports_nothing() {
        assert_eq!(Analyzed::from_spec(CLEAN).run(&User), Vec::<String>::new());
    }
}
