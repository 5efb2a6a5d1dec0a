//! Ports on a command line: the `Entrypoint` and `Cmd` arguments that make a service
//! listen on a port (`--port 80`, `-b 0.0.0.0:80`, `[::]:80`, `http.server 80`), also
//! inside the script of `sh -c`.
//!
//! Recognized, in every word of the command (and of an `sh -c` script):
//! - a listen flag with its value, as two words or as `--flag=value`: `-p`, `--port`,
//!   `--http-port`, `--https-port`, `--listen-port`, `--server-port` (a port, or
//!   `HOST:PORT`), `-b`, `--bind`, `--listen`, `--addr`, `--address` (`HOST:PORT`, `:PORT`
//!   or a port);
//! - a listen address alone: `:80`, `0.0.0.0:80`, `[::]:80`, `*:80`, `localhost:80` (an IP
//!   literal, `*`, `localhost` or nothing before the colon: `example.com:80` is more likely
//!   a place to connect to);
//! - a bare port number, only when the image exposes that port (`python3 -m http.server
//!   80` with `ExposedPorts` 80) and it is not the value of an option (`--timeout 80`):
//!   other numbers are counts, sizes and timeouts.

use std::ops::Range;

/// Flags whose value is a port, or `HOST:PORT`.
const PORT_FLAGS: &[&str] = &[
    "-p",
    "--port",
    "--http-port",
    "--https-port",
    "--listen-port",
    "--server-port",
];

/// Flags whose value is a listen address.
const ADDRESS_FLAGS: &[&str] = &["-b", "--bind", "--listen", "--addr", "--address"];

/// Shells whose `-c` argument is a script to search.
const SHELLS: &[&str] = &["sh", "bash", "dash", "ash", "zsh", "ksh", "busybox"];

/// A port found in a command's arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortArg {
    /// The argument it is in (its index in the list).
    pub index: usize,
    /// Where the port's digits are in that argument (bytes).
    pub digits: Range<usize>,
    /// The port.
    pub port: u16,
    /// The words that set it, as written (`-p 80`, `--bind=0.0.0.0:80`).
    pub text: String,
}

/// A word of the command: an argument, or a word of an `sh -c` script.
struct Word<'a> {
    index: usize,
    /// Its start in the argument.
    at: usize,
    text: &'a str,
}

/// The listen ports set by `args`; `exposed` are the ports the image exposes (a bare
/// number is a port only when it is one of them).
pub fn port_args(args: &[String], exposed: &[u16]) -> Vec<PortArg> {
    let words = words(args);
    let mut found = Vec::new();
    let mut k = 0;
    while k < words.len() {
        let w = &words[k];
        let (flag, value) = match w.text.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some((v, w.at + f.len() + 1))),
            _ => (w.text, None),
        };
        let port_flag = PORT_FLAGS.contains(&flag);
        let address_flag = ADDRESS_FLAGS.contains(&flag);
        if port_flag || address_flag {
            let (value, at, index, text, next) = match value {
                Some((v, at)) => (v, at, w.index, w.text.to_string(), k + 1),
                None => match words.get(k + 1) {
                    Some(n) => (
                        n.text,
                        n.at,
                        n.index,
                        format!("{} {}", w.text, n.text),
                        k + 2,
                    ),
                    None => break,
                },
            };
            if let Some((range, port)) = listen_value(value, true) {
                found.push(PortArg {
                    index,
                    digits: at + range.start..at + range.end,
                    port,
                    text,
                });
            }
            k = next;
            continue;
        }
        let alone = listen_value(w.text, false)
            .filter(|(range, _)| range.start > 0)
            .or_else(|| {
                // After an option it is that option's value (`--timeout 80`).
                let after_option = k > 0 && words[k - 1].text.starts_with('-');
                let port: u16 = number(w.text)?;
                (exposed.contains(&port) && !after_option).then_some((0..w.text.len(), port))
            });
        if let Some((range, port)) = alone {
            found.push(PortArg {
                index: w.index,
                digits: w.at + range.start..w.at + range.end,
                port,
                text: w.text.to_string(),
            });
        }
        k += 1;
    }
    found
}

/// `args` with the ports of `found` replaced by `map` (those it maps); the arguments
/// that changed are returned with their index.
pub fn rewrite(
    args: &[String],
    found: &[PortArg],
    map: impl Fn(u16) -> Option<u16>,
) -> (Vec<String>, Vec<(usize, u16, u16)>) {
    let mut out = args.to_vec();
    let mut moved = Vec::new();
    // From the end of each argument, so earlier ranges stay valid.
    let mut order: Vec<&PortArg> = found.iter().collect();
    order.sort_by_key(|f| std::cmp::Reverse((f.index, f.digits.start)));
    for f in order {
        if let Some(to) = map(f.port) {
            out[f.index].replace_range(f.digits.clone(), &to.to_string());
            moved.push((f.index, f.port, to));
        }
    }
    moved.reverse();
    (out, moved)
}

/// The port in a listen value: a number, or `HOST:PORT` (`any_host`: any host name, as
/// after `--bind`; else only an IP literal, `*`, `localhost` or nothing). The range is
/// that of the digits.
fn listen_value(value: &str, any_host: bool) -> Option<(Range<usize>, u16)> {
    if let Some(port) = number(value) {
        return any_host.then_some((0..value.len(), port));
    }
    let colon = value.rfind(':')?;
    let (host, digits) = (&value[..colon], &value[colon + 1..]);
    let port = number(digits)?;
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        inner
            .strip_suffix(']')
            .is_some_and(|v6| v6.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        host.is_empty()
            || host == "*"
            || host == "localhost"
            || host.parse::<std::net::Ipv4Addr>().is_ok()
            || (any_host
                && !host.bytes().all(|b| b.is_ascii_digit())
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'))
    };
    host_ok.then_some((colon + 1..value.len(), port))
}

/// A port number written as digits only (1 to 65535).
fn number(text: &str) -> Option<u16> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>().ok().filter(|p| *p > 0)
}

/// The words of a command: its arguments, with the script of `sh -c SCRIPT` split into
/// its words (quotes removed, positions kept).
fn words(args: &[String]) -> Vec<Word<'_>> {
    let shell = args.first().is_some_and(|a| {
        let name = a.rsplit('/').next().unwrap_or(a);
        SHELLS.contains(&name)
    });
    let mut out = Vec::new();
    for (index, arg) in args.iter().enumerate() {
        let script = shell
            && index > 0
            && args[index - 1].starts_with('-')
            && args[index - 1].ends_with('c')
            && !args[index - 1].starts_with("--");
        if !script {
            out.push(Word {
                index,
                at: 0,
                text: arg,
            });
            continue;
        }
        let bytes = arg.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i].is_ascii_whitespace() || b";|&()<>`".contains(&bytes[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len()
                && !bytes[i].is_ascii_whitespace()
                && !b";|&()<>`".contains(&bytes[i])
            {
                i += 1;
            }
            // A quoted word: its content ("0.0.0.0:80" or '--port=80').
            let (mut s, mut e) = (start, i);
            while e > s + 1 && (bytes[s] == b'"' || bytes[s] == b'\'') && bytes[e - 1] == bytes[s] {
                s += 1;
                e -= 1;
            }
            out.push(Word {
                index,
                at: s,
                text: &arg[s..e],
            });
        }
    }
    out
}

/// A user a command switches to (`gosu app server`, `memcached -u memcache`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropUser {
    /// The user as written (a name or a number), without its group.
    pub user: String,
    /// The words that say it, as written (`gosu app:app`, `-u memcache`).
    pub text: String,
    /// Whether a privilege-dropping tool says it (`gosu`, `setpriv`, ...), rather than a
    /// daemon's `-u`/`--user` flag (which names a user only if the image has it).
    pub tool: bool,
}

/// Tools whose next argument is the user (`USER[:GROUP]`) to run the rest as.
const DROP_TOOLS: &[&str] = &["gosu", "su-exec", "s6-setuidgid", "setuidgid"];

/// Options of `su` and `runuser` that take a value (so the value is not the user).
const SU_VALUE_OPTIONS: &[&str] = &[
    "-c",
    "-s",
    "-g",
    "-G",
    "-w",
    "--command",
    "--shell",
    "--group",
];

/// The users that `args` switch to, in the order they appear: privilege-dropping tools
/// (`gosu`, `su-exec`, `s6-setuidgid`, `setuidgid`, `chpst -u`, `setpriv --reuid`,
/// `runuser -u`, `su`, `chroot --userspec`, `start-stop-daemon --chuid`) and the
/// `-u`/`--user` flags of daemons (`memcached -u memcache`), also inside `sh -c`.
pub fn drop_users(args: &[String]) -> Vec<DropUser> {
    let words = words(args);
    let text: Vec<&str> = words.iter().map(|w| w.text).collect();
    let mut out = Vec::new();
    let push = |out: &mut Vec<DropUser>, user: &str, text: String, tool: bool| {
        let user = user.split(':').next().unwrap_or_default();
        if !user.is_empty() && !user.starts_with('-') && !user.starts_with('$') {
            out.push(DropUser {
                user: user.to_string(),
                text,
                tool,
            });
        }
    };
    // The value of an option in the words after `from`: `--opt=V` or `--opt V`.
    let option = |from: usize, names: &[&str]| -> Option<(String, String)> {
        for k in from..text.len() {
            for name in names {
                if let Some(v) = text[k].strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
                    return Some((v.to_string(), text[k].to_string()));
                }
                if text[k] == *name {
                    let v = text.get(k + 1)?;
                    return Some((v.to_string(), format!("{name} {v}")));
                }
            }
        }
        None
    };
    let mut k = 0;
    while k < text.len() {
        let name = text[k].rsplit('/').next().unwrap_or(text[k]);
        let tool_text = |rest: &str| format!("{name} {rest}");
        if DROP_TOOLS.contains(&name) {
            if let Some(user) = text.get(k + 1) {
                push(&mut out, user, tool_text(user), true);
            }
        } else if name == "chpst" {
            if let Some((user, t)) = option(k + 1, &["-u"]) {
                push(&mut out, &user, tool_text(&t), true);
            }
        } else if name == "setpriv" {
            if let Some((user, t)) = option(k + 1, &["--reuid"]) {
                push(&mut out, &user, tool_text(&t), true);
            }
        } else if name == "chroot" {
            if let Some((user, t)) = option(k + 1, &["--userspec"]) {
                push(&mut out, &user, tool_text(&t), true);
            }
        } else if name == "start-stop-daemon" {
            if let Some((user, t)) = option(k + 1, &["--chuid", "-c"]) {
                push(&mut out, &user, tool_text(&t), true);
            }
        } else if name == "runuser" || name == "su" {
            let flagged = option(k + 1, &["-u", "--user"]).filter(|_| name == "runuser");
            match flagged {
                Some((user, t)) => push(&mut out, &user, tool_text(&t), true),
                None => {
                    // The first word that is neither an option nor an option's value.
                    let mut j = k + 1;
                    while j < text.len() {
                        let w = text[j];
                        if SU_VALUE_OPTIONS.contains(&w) {
                            j += 2;
                        } else if w.starts_with('-') {
                            j += 1;
                        } else {
                            push(&mut out, w, tool_text(w), true);
                            break;
                        }
                    }
                }
            }
        } else if let Some(v) = text[k].strip_prefix("--user=") {
            push(&mut out, v, text[k].to_string(), false);
        } else if text[k] == "-u" || text[k] == "--user" {
            if let Some(user) = text.get(k + 1) {
                push(&mut out, user, format!("{} {user}", text[k]), false);
            }
        }
        k += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// (argument index, port, text) of each port found.
    fn found(list: &[&str], exposed: &[u16]) -> Vec<(usize, u16, String)> {
        port_args(&args(list), exposed)
            .into_iter()
            .map(|f| (f.index, f.port, f.text))
            .collect()
    }

    fn moved(list: &[&str], exposed: &[u16]) -> Vec<String> {
        let a = args(list);
        let f = port_args(&a, exposed);
        rewrite(&a, &f, |p| {
            (p < 1024).then_some(if p == 80 { 8080 } else { p + 8000 })
        })
        .0
    }

    #[test]
    fn flags_addresses_and_exposed_numbers() {
        assert_eq!(
            found(&["python3", "-m", "http.server", "80"], &[80]),
            [(3, 80, "80".to_string())]
        );
        // Not exposed: a number is just a number.
        assert_eq!(found(&["python3", "-m", "http.server", "80"], &[]), []);
        assert_eq!(found(&["sleep", "80"], &[443]), []);
        assert_eq!(found(&["srv", "--timeout", "80", "-w", "4"], &[80]), []);
        assert_eq!(
            found(&["gunicorn", "-b", "0.0.0.0:80", "app:app"], &[]),
            [(2, 80, "-b 0.0.0.0:80".to_string())]
        );
        assert_eq!(
            found(&["httpd", "-f", "-p", "80", "-h", "/srv"], &[]),
            [(3, 80, "-p 80".to_string())]
        );
        assert_eq!(
            found(&["/app/bin/server", "--port", "80"], &[]),
            [(2, 80, "--port 80".to_string())]
        );
        assert_eq!(
            found(
                &[
                    "srv",
                    "--port=443",
                    "--bind=[::]:80",
                    "--listen",
                    "myhost:25"
                ],
                &[]
            ),
            [
                (1, 443, "--port=443".to_string()),
                (2, 80, "--bind=[::]:80".to_string()),
                (4, 25, "--listen myhost:25".to_string())
            ]
        );
        assert_eq!(
            found(&["php", "-S", "0.0.0.0:80", "-t", "/srv"], &[]),
            [(2, 80, "0.0.0.0:80".to_string())]
        );
        assert_eq!(found(&["caddy", ":80"], &[]), [(1, 80, ":80".to_string())]);
        assert_eq!(found(&["x", "[::]:443", "*:21"], &[]).len(), 2);
    }

    #[test]
    fn what_is_not_a_listen_port() {
        // Places to connect to, prefixes, mappings, times, versions.
        for list in [
            &["curl", "example.com:80"][..],
            &["nginx", "-p", "/usr/share/nginx"],
            &["run", "-p", "8080:80"],
            &["app", "--timeout", "80"],
            &["app", "--port", "99999"],
            &["app", "--port", "0"],
            &["app", "v1.2:80x"],
            &["app", "--port"],
        ] {
            assert_eq!(found(list, &[]), [], "{list:?}");
        }
    }

    #[test]
    fn scripts_of_sh_c_are_searched_and_rewritten_in_place() {
        let list = [
            "/bin/sh",
            "-c",
            "echo hi > /tmp/x && exec httpd -f -p 80 -h /srv; nc -l \"0.0.0.0:21\"",
        ];
        assert_eq!(
            found(&list, &[]),
            [
                (2, 80, "-p 80".to_string()),
                (2, 21, "0.0.0.0:21".to_string())
            ]
        );
        assert_eq!(
            moved(&list, &[])[2],
            "echo hi > /tmp/x && exec httpd -f -p 8080 -h /srv; nc -l \"0.0.0.0:8021\""
        );
        // `-ec` is `-e -c`; an argument that is not a script is not split.
        assert_eq!(found(&["bash", "-ec", "exec srv --port=80"], &[]).len(), 1);
        assert_eq!(found(&["app", "-c", "exec srv --port=80"], &[]), []);
    }

    fn users(list: &[&str]) -> Vec<(String, String, bool)> {
        drop_users(&args(list))
            .into_iter()
            .map(|d| (d.user, d.text, d.tool))
            .collect()
    }

    #[test]
    fn users_commands_drop_to() {
        let one = |list: &[&str]| users(list).into_iter().next().map(|u| (u.0, u.1));
        let u = |user: &str, text: &str| Some((user.to_string(), text.to_string()));
        assert_eq!(
            one(&["gosu", "postgres", "postgres"]),
            u("postgres", "gosu postgres")
        );
        assert_eq!(
            one(&["/sbin/su-exec", "app:app", "srv"]),
            u("app", "su-exec app:app")
        );
        assert_eq!(
            one(&["s6-setuidgid", "nginx", "nginx"]),
            u("nginx", "s6-setuidgid nginx")
        );
        assert_eq!(
            one(&["chpst", "-u", "www:www", "httpd"]),
            u("www", "chpst -u www:www")
        );
        assert_eq!(
            one(&[
                "setpriv",
                "--reuid=999",
                "--regid=999",
                "--init-groups",
                "mysqld"
            ]),
            u("999", "setpriv --reuid=999")
        );
        assert_eq!(
            one(&["runuser", "-u", "redis", "--", "redis-server"]),
            u("redis", "runuser -u redis")
        );
        assert_eq!(
            one(&["su", "-s", "/bin/sh", "-c", "exec srv", "daemon"]),
            u("daemon", "su daemon")
        );
        assert_eq!(
            one(&["chroot", "--userspec=1001:0", "/", "srv"]),
            u("1001", "chroot --userspec=1001:0")
        );
        assert_eq!(
            one(&[
                "start-stop-daemon",
                "--start",
                "--chuid",
                "bind:bind",
                "--exec",
                "/usr/sbin/named"
            ]),
            u("bind", "start-stop-daemon --chuid bind:bind")
        );
        assert_eq!(
            users(&["memcached", "-u", "memcache", "-p", "11211"]),
            [("memcache".into(), "-u memcache".into(), false)]
        );
        assert_eq!(
            users(&[
                "/bin/sh",
                "-c",
                "chown -R app /data && exec gosu app \"$@\"",
                "--"
            ]),
            [("app".into(), "gosu app".into(), true)]
        );
        // Variables, options and nothing at all are no users.
        assert_eq!(users(&["gosu", "$USER", "srv"]), []);
        assert_eq!(users(&["srv", "--user"]), []);
        assert_eq!(users(&["nginx", "-g", "daemon off;"]), []);
    }

    #[test]
    fn rewrite_moves_only_what_the_map_moves() {
        assert_eq!(
            moved(
                &["gunicorn", "-b", "0.0.0.0:80", "--bind=[::]:443", "app"],
                &[]
            ),
            ["gunicorn", "-b", "0.0.0.0:8080", "--bind=[::]:8443", "app"]
        );
        // Unprivileged ports stay.
        assert_eq!(
            moved(&["srv", "--port", "8000"], &[]),
            ["srv", "--port", "8000"]
        );
        let a = args(&["srv", "-p", "80", "--listen", ":53"]);
        let f = port_args(&a, &[]);
        let (_, changes) = rewrite(&a, &f, |p| Some(p + 8000));
        assert_eq!(changes, [(2, 80, 8080), (4, 53, 8053)]);
    }
}
