//! Privileges on files: setuid and setgid bits, file capabilities, and world-writable
//! paths.

use super::{Analyzer, Facts, Finding, Fixer, Location, Rule, Severity};
use crate::layer::entry::XATTR_CAPABILITY;
use crate::layer::Kind;

/// The rules of this analyzer.
pub static RULES: [Rule; 3] = [
    Rule {
        id: "UR501",
        name: "setuid-setgid",
        severity: Severity::Warning,
        summary: "A file has the setuid or setgid bit",
        help: "A setuid-root binary is a way back to root for any process of the container. Under `allowPrivilegeEscalation: false` (no_new_privs) the bit is ignored, so most images never need it.",
        fix: "remove the bit (`chmod u-s,g-s`) unless the service really needs it",
        fixer: Fixer::User,
        refs: &["dockle CIS-DI-0008"],
    },
    Rule {
        id: "UR502",
        name: "file-capability",
        severity: Severity::Warning,
        summary: "A file carries Linux capabilities (security.capability)",
        help: "A binary with file capabilities (e.g. `cap_net_bind_service=+ep`) fails to start with EPERM under `capabilities: drop: [ALL]`, as the Pod Security Standards' restricted profile requires, and gains nothing under `allowPrivilegeEscalation: false`.",
        fix: "remove the capability (`setcap -r`) and use an unprivileged port instead",
        fixer: Fixer::User,
        refs: &[],
    },
    Rule {
        id: "UR503",
        name: "world-writable",
        severity: Severity::Warning,
        summary: "A file or directory is writable by everyone",
        help: "Any user of the container can change a world-writable file; in a world-writable directory without the sticky bit, anyone can replace anyone's files.",
        fix: "remove `o+w`, or set the sticky bit on shared directories (as /tmp has)",
        fixer: Fixer::User,
        refs: &[],
    },
];

/// Checks file privileges.
pub struct Privileges;

impl Analyzer for Privileges {
    fn name(&self) -> &'static str {
        "privileges"
    }

    fn rules(&self) -> &'static [Rule] {
        &RULES
    }

    fn run(&self, facts: &Facts<'_>, out: &mut Vec<Finding>) {
        for (path, node) in facts.view.iter() {
            let m = &node.meta;
            let at = || Location::file(&path, Some(node.layer), None);
            if m.kind == Kind::File && m.is_setid() {
                let bits = match (m.mode & 0o4000 != 0, m.mode & 0o2000 != 0) {
                    (true, true) => "setuid and setgid",
                    (true, false) => "setuid",
                    _ => "setgid",
                };
                out.push(Finding::new(
                    &RULES[0],
                    at(),
                    format!("{bits}, owned by {}:{} mode {:04o}", m.uid, m.gid, m.mode),
                ));
            }
            if m.xattrs.contains_key(XATTR_CAPABILITY) {
                out.push(Finding::new(
                    &RULES[1],
                    at(),
                    format!(
                        "file capabilities {}",
                        describe_caps(&m.xattrs[XATTR_CAPABILITY])
                    ),
                ));
            }
            let world_writable = m.mode & 0o002 != 0;
            match m.kind {
                Kind::Dir if world_writable && m.mode & 0o1000 == 0 => {
                    out.push(Finding::new(
                        &RULES[2],
                        at(),
                        format!("directory mode {:04o} has no sticky bit", m.mode),
                    ));
                }
                Kind::File if world_writable => {
                    out.push(Finding::new(
                        &RULES[2],
                        at(),
                        format!("file mode {:04o}", m.mode),
                    ));
                }
                _ => {}
            }
        }
    }
}

/// Names the capabilities of a `security.capability` value (VFS revision 2 or 3).
fn describe_caps(value: &[u8]) -> String {
    const NAMES: [&str; 41] = [
        "chown",
        "dac_override",
        "dac_read_search",
        "fowner",
        "fsetid",
        "kill",
        "setgid",
        "setuid",
        "setpcap",
        "linux_immutable",
        "net_bind_service",
        "net_broadcast",
        "net_admin",
        "net_raw",
        "ipc_lock",
        "ipc_owner",
        "sys_module",
        "sys_rawio",
        "sys_chroot",
        "sys_ptrace",
        "sys_pacct",
        "sys_admin",
        "sys_boot",
        "sys_nice",
        "sys_resource",
        "sys_time",
        "sys_tty_config",
        "mknod",
        "lease",
        "audit_write",
        "audit_control",
        "setfcap",
        "mac_override",
        "mac_admin",
        "syslog",
        "wake_alarm",
        "block_suspend",
        "audit_read",
        "perfmon",
        "bpf",
        "checkpoint_restore",
    ];
    let word = |i: usize| {
        value
            .get(i..i + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let (Some(magic), Some(lo)) = (word(0), word(4)) else {
        return "(unreadable value)".to_string();
    };
    let hi = word(12).unwrap_or(0);
    let permitted = u64::from(lo) | (u64::from(hi) << 32);
    let names: Vec<String> = (0..64)
        .filter(|b| permitted & (1u64 << b) != 0)
        .map(|b| {
            NAMES
                .get(b)
                .map_or(format!("cap_{b}"), |n| format!("cap_{n}"))
        })
        .collect();
    let effective = if magic & 1 != 0 { "+ep" } else { "+p" };
    format!("{}{effective}", names.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{Analyzed, CLEAN};

    const PRIVILEGED: &str = r#"
[[layer]]
[[layer.entry]]
path = "/usr/bin/passwd"
size = 10
mode = 0o4755
[[layer.entry]]
path = "/usr/bin/wall"
size = 10
mode = 0o2755
gid = 5
[[layer.entry]]
path = "/usr/bin/caddy"
size = 10
mode = 0o755
xattrs = { "security.capability" = "AQAAAgAEAAAAAAAAAAAAAAAAAAA=" }
[[layer.entry]]
path = "/tmp"
type = "dir"
mode = 0o1777
[[layer.entry]]
path = "/shared"
type = "dir"
mode = 0o777
[[layer.entry]]
path = "/shared/notes"
text = "x"
mode = 0o666
"#;

    #[test]
    fn findings() {
        assert_eq!(
            Analyzed::from_spec(PRIVILEGED).run(&Privileges),
            [
                "UR501 warning /usr/bin/passwd (layer 1): setuid, owned by 0:0 mode 4755",
                "UR501 warning /usr/bin/wall (layer 1): setgid, owned by 0:5 mode 2755",
                "UR502 warning /usr/bin/caddy (layer 1): file capabilities cap_net_bind_service+ep",
                "UR503 warning /shared (layer 1): directory mode 0777 has no sticky bit",
                "UR503 warning /shared/notes (layer 1): file mode 0666",
            ]
        );
    }

    #[test]
    fn clean_image_reports_nothing() {
        assert_eq!(
            Analyzed::from_spec(CLEAN).run(&Privileges),
            Vec::<String>::new()
        );
    }
}
