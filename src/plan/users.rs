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

/// The non-root user the image's command switches to (`gosu app ...`, `memcached -u
/// memcache`): `(uid, gid, why)`. A tool's user may be a number; a daemon's `-u` flag
/// counts only when it names an account of the image.
pub fn command_user(
    config: &crate::model::ImageConfig,
    passwd: &[PasswdEntry],
) -> Option<(u64, Option<u64>, String)> {
    let mut args = config.entrypoint();
    args.extend(config.cmd());
    for d in crate::model::command::drop_users(&args) {
        let why = |who: String| format!("{who}, the user the command switches to (`{}`)", d.text);
        if let Some(p) = passwd.iter().find(|p| p.name == d.user) {
            if p.uid != 0 {
                return Some((p.uid, Some(p.gid), why(format!("`{}`", p.name))));
            }
            continue;
        }
        match d.user.parse::<u64>() {
            Ok(uid) if d.tool && uid != 0 => {
                let entry = passwd.iter().find(|p| p.uid == uid);
                let who = entry.map_or(format!("uid {uid}"), |p| format!("`{}`", p.name));
                return Some((uid, entry.map(|p| p.gid), why(who)));
            }
            _ => {}
        }
    }
    None
}

/// Options of `setpriv` that take a value as the next word.
const SETPRIV_VALUE_OPTIONS: &[&str] = &[
    "--reuid",
    "--regid",
    "--ruid",
    "--rgid",
    "--euid",
    "--egid",
    "--groups",
    "--inh-caps",
    "--ambient-caps",
    "--bounding-set",
    "--securebits",
    "--pdeathsig",
    "--selinux-label",
    "--apparmor-profile",
    "--landlock-access",
    "--landlock-rule",
    "--seccomp-filter",
];

/// `args` without a privilege drop at their start (`gosu USER`, `su-exec USER`,
/// `s6-setuidgid USER`, `setuidgid USER`, `chpst -u USER`, `runuser -u USER --`,
/// `setpriv [OPTIONS]`), which fails as a non-root user (it cannot set groups); with the
/// words removed.
pub fn strip_drop(args: &[String]) -> Option<(Vec<String>, String)> {
    let name = |w: &String| w.rsplit('/').next().unwrap_or(w).to_string();
    let first = name(args.first()?);
    let skip = match first.as_str() {
        "setpriv" => {
            let mut k = 1;
            while let Some(a) = args.get(k) {
                if a == "--" {
                    k += 1;
                    break;
                } else if SETPRIV_VALUE_OPTIONS.contains(&a.as_str()) {
                    k += 2;
                } else if a.starts_with('-') {
                    k += 1;
                } else {
                    break;
                }
            }
            k
        }
        "gosu" | "su-exec" | "s6-setuidgid" | "setuidgid" => 2,
        "chpst" if args.get(1).map(String::as_str) == Some("-u") => 3,
        "runuser"
            if args.get(1).map(String::as_str) == Some("-u")
                && args.get(3).map(String::as_str) == Some("--") =>
        {
            4
        }
        _ => return None,
    };
    // Nothing left to run: not a drop in front of a command.
    if args.len() <= skip {
        return None;
    }
    Some((args[skip..].to_vec(), args[..skip].join(" ")))
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

    /// Root images whose command names the service user: the plan runs as that user
    /// (the drop goes, as it needs root), and says why.
    #[test]
    fn the_user_the_command_switches_to_is_the_service_user() {
        let image = |cmd: &str| {
            crate::testkit::Analyzed::from_spec(&format!(
                r#"
[config]
Cmd = {cmd}
[[layer]]
[[layer.entry]]
path = "/etc/passwd"
text = "root:x:0:0:root:/root:/bin/sh\nmemcache:x:100:101::/nonexistent:/bin/false\napp:x:1001:1001::/home/app:/bin/sh\n"
[[layer.entry]]
path = "/etc/group"
text = "root:x:0:\nmemcache:x:101:\napp:x:1001:\n"
"#
            ))
            .plan
        };
        let plan = image(r#"["gosu", "app:app", "/usr/bin/srv", "--flag"]"#);
        assert_eq!((plan.identity.uid, plan.identity.gid), (1001, 1001));
        assert_eq!(
            plan.identity.why,
            "`app`, the user the command switches to (`gosu app:app`)"
        );
        assert_eq!(
            plan.cmd,
            Some(vec!["/usr/bin/srv".to_string(), "--flag".into()])
        );
        assert!(
            plan.notes
                .iter()
                .any(|n| n.starts_with("`gosu app:app` removed from `Cmd`")),
            "{:?}",
            plan.notes
        );
        // A daemon's own flag names an account of the image: that one, and the command
        // stays (memcached only switches when it runs as root).
        let plan = image(r#"["memcached", "-u", "memcache", "-p", "11211"]"#);
        assert_eq!((plan.identity.uid, plan.identity.gid), (100, 101));
        assert_eq!(
            plan.identity.why,
            "`memcache`, the user the command switches to (`-u memcache`)"
        );
        assert_eq!(plan.cmd, None);
        // A flag naming no account is not a user; nothing else is, so 65532.
        let plan = image(r#"["srv", "--user", "nobody-here"]"#);
        assert_eq!(plan.identity.uid, 65532);
        // setpriv with a number; it goes too.
        let plan = image(
            r#"["setpriv", "--reuid=1001", "--regid", "1001", "--clear-groups", "srv", "-x"]"#,
        );
        assert_eq!(plan.identity.uid, 1001);
        assert_eq!(plan.cmd, Some(vec!["srv".to_string(), "-x".into()]));
    }
}

/// `args` without the option `option` and its value (`--user NAME`, `--user=NAME`, and
/// for a short option `-uNAME` too), with the words removed; `None` when it is not there.
pub fn strip_option(args: &[String], option: &str) -> Option<(Vec<String>, String)> {
    let short = option.len() == 2 && !option.starts_with("--");
    let mut out = Vec::with_capacity(args.len());
    let mut removed = Vec::new();
    let mut k = 0;
    while k < args.len() {
        let a = &args[k];
        if a == option && k + 1 < args.len() {
            removed.push(format!("{a} {}", args[k + 1]));
            k += 2;
            continue;
        }
        let joined = a
            .strip_prefix(option)
            .filter(|rest| rest.starts_with('=') || (short && !rest.is_empty()));
        if joined.is_some() {
            removed.push(a.clone());
        } else {
            out.push(a.clone());
        }
        k += 1;
    }
    (!removed.is_empty()).then(|| (out, removed.join(" ")))
}

#[cfg(test)]
mod option_tests {
    use super::strip_option;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn options_that_switch_users_go_with_their_value() {
        assert_eq!(
            strip_option(
                &words("privoxy --no-daemon --user privoxy /etc/c"),
                "--user"
            ),
            Some((words("privoxy --no-daemon /etc/c"), "--user privoxy".into()))
        );
        assert_eq!(
            strip_option(&words("webfsd -p 80 -u www-data -g www-data"), "-u"),
            Some((words("webfsd -p 80 -g www-data"), "-u www-data".into()))
        );
        assert_eq!(
            strip_option(&words("d -ubind --user=x"), "-u").map(|r| r.1),
            Some("-ubind".into())
        );
        assert_eq!(
            strip_option(&words("d --user=x"), "--user").map(|r| r.1),
            Some("--user=x".into())
        );
        // Another option that starts the same is not it.
        assert_eq!(strip_option(&words("d --username x"), "--user"), None);
        assert_eq!(strip_option(&words("d -u"), "-u"), None);
    }
}
