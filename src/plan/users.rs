//! The runtime user's accounts: which accounts a distribution owns, a free login name,
//! and adding the entry for the runtime user while leaving every other line as it is.

use crate::layer::accounts::{GroupEntry, PasswdEntry};

/// Accounts that distributions create for themselves; they own files in base images but are
/// never the image's service user.
pub const SYSTEM_ACCOUNTS: &[&str] = &[
    "root",
    "daemon",
    "bin",
    "sys",
    "sync",
    "games",
    "man",
    "lp",
    "mail",
    "news",
    "uucp",
    "proxy",
    "backup",
    "list",
    "irc",
    "gnats",
    "nobody",
    "_apt",
    "systemd-network",
    "systemd-resolve",
    "systemd-timesync",
    "systemd-journal",
    "messagebus",
    "sshd",
    "adm",
    "halt",
    "shutdown",
    "operator",
    "postmaster",
    "cron",
    "ftp",
    "at",
    "squid",
    "xfs",
    "cyrus",
    "vpopmail",
    "ntp",
    "smmsp",
    "guest",
    "nfsnobody",
    "tss",
    "polkitd",
    "dbus",
];

/// Appends a line to a text file's bytes, adding the missing final newline first.
pub fn append_line(original: &[u8], line: &str) -> Vec<u8> {
    let mut out = original.to_vec();
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.extend_from_slice(line.as_bytes());
    out.push(b'\n');
    out
}

/// A login name not yet used in `passwd`, preferring `nonroot` (as distroless does).
pub fn free_name(passwd: &[PasswdEntry], groups: &[GroupEntry], uid: u64) -> String {
    let taken = |n: &str| passwd.iter().any(|p| p.name == n) || groups.iter().any(|g| g.name == n);
    ["nonroot", "unroot"]
        .iter()
        .map(|s| s.to_string())
        .find(|n| !taken(n))
        .unwrap_or_else(|| format!("unroot{uid}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::accounts::parse_passwd;

    #[test]
    fn appends_lines_keeping_the_rest() {
        assert_eq!(append_line(b"a\nb", "c"), b"a\nb\nc\n");
        assert_eq!(append_line(b"a\n", "c"), b"a\nc\n");
        assert_eq!(append_line(b"", "c"), b"c\n");
    }

    #[test]
    fn picks_a_free_name() {
        let p = parse_passwd(b"nonroot:x:1:1::/:/bin/sh\n");
        assert_eq!(free_name(&p, &[], 65532), "unroot");
        assert_eq!(free_name(&[], &[], 65532), "nonroot");
    }
}
