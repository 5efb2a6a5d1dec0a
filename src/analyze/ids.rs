//! User and group ids: owners outside the range a rootless runtime maps, and the account
//! files' own problems (duplicate ids, empty passwords).

use std::collections::BTreeMap;

use super::{Analyzer, Facts, Finding, Fixer, Location, Rule, Severity};

/// The rules of this analyzer.
pub static RULES: [Rule; 3] = [
    Rule {
        id: "UR601",
        name: "id-out-of-range",
        severity: Severity::Error,
        summary: "A file is owned by a uid or gid above 65535",
        help: "Rootless runtimes map 65536 ids by default (/etc/subuid); unpacking a layer with an owner outside that range fails (\"potentially insufficient UIDs or GIDs available in user namespace\"). A new layer cannot fix it: the runtime fails on the lower layer first, so that layer must be rewritten.",
        fix: "`unroot convert --remap-ids` rewrites the layers that hold them (ids above 65535 become the runtime UID and group 0), keeping every other layer as it is",
        fixer: Fixer::User,
        refs: &[],
    },
    Rule {
        id: "UR602",
        name: "duplicate-id",
        severity: Severity::Warning,
        summary: "Two accounts share a uid (or two groups a gid)",
        help: "Accounts that share an id share every file and process; the second name is an alias that hides who owns what.",
        fix: "give each account its own id",
        fixer: Fixer::User,
        refs: &["dockle DKL-LI-0002"],
    },
    Rule {
        id: "UR603",
        name: "empty-password",
        severity: Severity::Error,
        summary: "An account has an empty password field",
        help: "An empty password field lets anyone log in as that account without a password wherever a login happens (su, login, ssh with PermitEmptyPasswords).",
        fix: "put `x` (shadowed) or `*` (locked) in the password field",
        fixer: Fixer::User,
        refs: &["dockle DKL-LI-0001"],
    },
];

/// Checks ids.
pub struct Ids;

impl Analyzer for Ids {
    fn name(&self) -> &'static str {
        "ids"
    }

    fn rules(&self) -> &'static [Rule] {
        &RULES
    }

    fn run(&self, facts: &Facts<'_>, out: &mut Vec<Finding>) {
        // Per layer (hidden entries count too: runtimes unpack every layer in order and
        // fail on the first such entry), with an example.
        for (layer, info) in facts.layers.iter().enumerate() {
            let Some((path, uid, gid)) = &info.out_of_range_example else {
                continue;
            };
            let count = info.out_of_range;
            out.push(Finding::new(
                &RULES[0],
                Location::file(path, Some(layer), None),
                format!(
                    "owned by {uid}:{gid}; layer {} ({}) holds {count} such entr{}",
                    layer + 1,
                    info.digest.short(),
                    if count == 1 { "y" } else { "ies" }
                ),
            ));
        }

        let accounts = facts.accounts;
        let passwd_at = Location::file(
            &accounts.passwd_path,
            facts.view.get(&accounts.passwd_path).map(|n| n.layer),
            None,
        );
        let group_at = Location::file(
            &accounts.group_path,
            facts.view.get(&accounts.group_path).map(|n| n.layer),
            None,
        );
        let mut by_uid: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
        for p in &accounts.passwd {
            by_uid.entry(p.uid).or_default().push(&p.name);
            if p.password.is_empty() {
                out.push(Finding::new(
                    &RULES[2],
                    passwd_at.clone(),
                    format!("`{}` has no password", p.name),
                ));
            }
        }
        for (uid, names) in by_uid.iter().filter(|(_, n)| n.len() > 1) {
            out.push(Finding::new(
                &RULES[1],
                passwd_at.clone(),
                format!("uid {uid} is shared by {}", names.join(", ")),
            ));
        }
        let mut by_gid: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
        for g in &accounts.groups {
            by_gid.entry(g.gid).or_default().push(&g.name);
        }
        for (gid, names) in by_gid.iter().filter(|(_, n)| n.len() > 1) {
            out.push(Finding::new(
                &RULES[1],
                group_at.clone(),
                format!("gid {gid} is shared by {}", names.join(", ")),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{Analyzed, CLEAN};

    const IDS: &str = r#"
[[layer]]
[[layer.entry]]
path = "/etc/passwd"
text = "root:x:0:0:root:/root:/bin/sh\ntoor::0:0:root:/root:/bin/sh\nguest::405:100::/:/bin/sh\n"
[[layer.entry]]
path = "/etc/group"
text = "root:x:0:\nusers:x:100:\nstaff:x:100:\n"
[[layer.entry]]
path = "/opt/a"
text = "a"
uid = 100000
[[layer.entry]]
path = "/opt/b"
text = "b"
gid = 70000

[[layer]]
[[layer.entry]]
path = "/srv/c"
text = "c"
uid = 4000000000
gid = 4000000000
"#;

    #[test]
    fn findings() {
        let lines = Analyzed::from_spec(IDS).run(&Ids);
        assert_eq!(lines.len(), 6, "{lines:#?}");
        assert!(
            lines[0].starts_with("UR601 error /opt/a (layer 1): owned by 100000:0; layer 1 ("),
            "{}",
            lines[0]
        );
        assert!(lines[0].ends_with(") holds 2 such entries"), "{}", lines[0]);
        assert!(
            lines[1].starts_with(
                "UR601 error /srv/c (layer 2): owned by 4000000000:4000000000; layer 2 ("
            ),
            "{}",
            lines[1]
        );
        assert_eq!(
            lines[2..],
            [
                "UR603 error /etc/passwd (layer 1): `guest` has no password",
                "UR603 error /etc/passwd (layer 1): `toor` has no password",
                "UR602 warning /etc/group (layer 1): gid 100 is shared by users, staff",
                "UR602 warning /etc/passwd (layer 1): uid 0 is shared by root, toor",
            ]
        );
    }

    #[test]
    fn clean_image_reports_nothing() {
        assert_eq!(Analyzed::from_spec(CLEAN).run(&Ids), Vec::<String>::new());
    }
}
