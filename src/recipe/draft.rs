//! Writing a recipe: a draft of the sections a recipe has (what `unroot learn` found),
//! rendered as TOML in the shipped recipes' style, each entry after the comment that says
//! why it is there, so that a reviewer can read it and commit it.
//!
//! Invariant: what [`Draft::render`] writes parses back ([`super::Recipe::parse`]) into a
//! recipe with the same entries.

use std::fmt::Write as _;

/// An entry of a draft with the lines that explain it (written as `#` comments above it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Noted<T> {
    /// The entry.
    pub entry: T,
    /// Why it is there: one line each.
    pub why: Vec<String>,
}

/// A `[[ports]]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DraftPort {
    /// The directive's name.
    pub directive: String,
    /// The files it is in.
    pub files: Vec<String>,
    /// The regex, with a `port` group.
    pub pattern: String,
}

/// A `[[writable]]` directory made `UID:0` and group-writable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DraftWritable {
    /// What it is.
    pub what: String,
    /// The directory.
    pub path: String,
    /// Whether it is created when the image lacks it.
    pub create: bool,
}

/// A `[[readable]]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DraftReadable {
    /// What it is.
    pub what: String,
    /// The path.
    pub path: String,
}

/// An `[[edit]]` of kind `remove` (the line is commented out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DraftRemove {
    /// Its name.
    pub name: String,
    /// The files it edits.
    pub files: Vec<String>,
    /// The regex of the lines.
    pub pattern: String,
}

/// An `[[edit]]` of kind `replace`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DraftReplace {
    /// Its name.
    pub name: String,
    /// The files it edits.
    pub files: Vec<String>,
    /// The regex.
    pub pattern: String,
    /// What each match becomes.
    pub with: String,
}

/// A recipe to be written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Draft {
    /// Comment lines at the top of the file.
    pub header: Vec<String>,
    /// `name`.
    pub name: String,
    /// `summary`.
    pub summary: String,
    /// `[match] any`.
    pub matches: Vec<String>,
    /// `[service] users`.
    pub users: Vec<Noted<String>>,
    /// `[service] ports`.
    pub ports: Vec<Noted<String>>,
    /// `[service] user_options`.
    pub user_options: Vec<Noted<String>>,
    /// `[[ports]]`.
    pub port_patterns: Vec<Noted<DraftPort>>,
    /// `[[writable]]`.
    pub writable: Vec<Noted<DraftWritable>>,
    /// `[[readable]]`.
    pub readable: Vec<Noted<DraftReadable>>,
    /// `[[edit]]`s that remove lines.
    pub removes: Vec<Noted<DraftRemove>>,
    /// `[[edit]]`s that replace text.
    pub replaces: Vec<Noted<DraftReplace>>,
}

/// A TOML basic string.
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A regex as a TOML literal string when it can be one (no `'`, no newline), else basic.
fn pattern(s: &str) -> String {
    if s.contains('\'') || s.contains('\n') {
        quoted(s)
    } else {
        format!("'{s}'")
    }
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| quoted(i)).collect();
    format!("[{}]", quoted.join(", "))
}

fn comments(out: &mut String, lines: &[String]) {
    for l in lines {
        for part in l.lines() {
            let _ = writeln!(out, "# {part}");
        }
    }
}

impl Draft {
    /// The recipe as TOML.
    pub fn render(&self) -> String {
        let mut out = String::new();
        comments(&mut out, &self.header);
        let _ = writeln!(out, "name = {}", quoted(&self.name));
        let _ = writeln!(out, "summary = {}", quoted(&self.summary));
        let _ = writeln!(out, "\n[match]\nany = {}", list(&self.matches));
        if !self.users.is_empty() || !self.ports.is_empty() || !self.user_options.is_empty() {
            out.push_str("\n[service]\n");
            for (key, items) in [
                ("users", &self.users),
                ("ports", &self.ports),
                ("user_options", &self.user_options),
            ] {
                if items.is_empty() {
                    continue;
                }
                for n in items.iter() {
                    comments(&mut out, &n.why);
                }
                let values: Vec<String> = items.iter().map(|n| n.entry.clone()).collect();
                let _ = writeln!(out, "{key} = {}", list(&values));
            }
        }
        for p in &self.port_patterns {
            out.push('\n');
            comments(&mut out, &p.why);
            let _ = writeln!(
                out,
                "[[ports]]\ndirective = {}\nfiles = {}\npattern = {}",
                quoted(&p.entry.directive),
                list(&p.entry.files),
                pattern(&p.entry.pattern)
            );
        }
        for w in &self.writable {
            out.push('\n');
            comments(&mut out, &w.why);
            let _ = writeln!(
                out,
                "[[writable]]\nwhat = {}\nkind = \"dir\"\npath = {}\nmake_writable = true",
                quoted(&w.entry.what),
                quoted(&w.entry.path)
            );
            if w.entry.create {
                out.push_str("create = true\n");
            }
        }
        for r in &self.readable {
            out.push('\n');
            comments(&mut out, &r.why);
            let _ = writeln!(
                out,
                "[[readable]]\nwhat = {}\npath = {}",
                quoted(&r.entry.what),
                // A path with a glob's characters in its name means itself only.
                quoted(&globset::escape(&r.entry.path))
            );
        }
        for e in &self.removes {
            out.push('\n');
            comments(&mut out, &e.why);
            let _ = writeln!(
                out,
                "[[edit]]\nname = {}\nkind = \"remove\"\nfiles = {}\npattern = {}",
                quoted(&e.entry.name),
                list(&e.entry.files),
                pattern(&e.entry.pattern)
            );
        }
        for e in &self.replaces {
            out.push('\n');
            comments(&mut out, &e.why);
            let _ = writeln!(
                out,
                "[[edit]]\nname = {}\nkind = \"replace\"\nfiles = {}\npattern = {}\nwith = {}",
                quoted(&e.entry.name),
                list(&e.entry.files),
                pattern(&e.entry.pattern),
                pattern(&e.entry.with)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::Recipe;

    fn noted<T>(entry: T, why: &str) -> Noted<T> {
        Noted {
            entry,
            why: vec![why.to_string()],
        }
    }

    #[test]
    fn a_draft_renders_as_a_recipe_that_parses_back() {
        let draft = Draft {
            header: vec!["Learned by running it.".into(), "Review it.".into()],
            name: "learned-nsd".into(),
            summary: "nsd \"authoritative\" DNS".into(),
            matches: vec!["/etc/nsd/nsd.conf".into()],
            users: vec![noted("nsd".into(), "it switched to uid 104")],
            ports: vec![
                noted("53/udp".into(), "bound udp"),
                noted("53/tcp".into(), "bound tcp"),
            ],
            user_options: vec![noted("--user".into(), "setgroups refused")],
            port_patterns: vec![noted(
                DraftPort {
                    directive: "port".into(),
                    files: vec!["/etc/nsd/nsd.conf".into()],
                    pattern: r"\bport:\s*(?P<port>\d+)\b".into(),
                },
                "line 3: `port: 53`",
            )],
            writable: vec![noted(
                DraftWritable {
                    what: "written at run time".into(),
                    path: "/run/nsd".into(),
                    create: true,
                },
                "it created /run/nsd/nsd.pid",
            )],
            readable: vec![noted(
                DraftReadable {
                    what: "read at start".into(),
                    path: "/etc/nsd/nsd_server.key".into(),
                },
                "root 0600",
            )],
            removes: vec![noted(
                DraftRemove {
                    name: "do not switch users".into(),
                    files: vec!["/etc/nsd/nsd.conf".into()],
                    pattern: r"^\s*username:\s*nsd\b".into(),
                },
                "setuid refused",
            )],
            replaces: vec![noted(
                DraftReplace {
                    name: "do not switch users".into(),
                    files: vec!["/etc/nsd/nsd.conf".into()],
                    pattern: r#"^(\s*)username:\s*nsd\b"#.into(),
                    with: r#"${1}username: """#.into(),
                },
                "still refused",
            )],
        };
        let text = draft.render();
        assert!(
            text.starts_with("# Learned by running it.\n# Review it.\nname = \"learned-nsd\"\n")
        );
        assert!(
            text.contains("# it switched to uid 104\nusers = [\"nsd\"]"),
            "{text}"
        );
        let r = Recipe::parse(&text, "learned.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(r.name, "learned-nsd");
        assert_eq!(r.summary, "nsd \"authoritative\" DNS");
        assert_eq!(r.users, ["nsd"]);
        assert_eq!(r.listens, ["53/udp", "53/tcp"]);
        assert_eq!(r.user_options, ["--user"]);
        assert_eq!(r.ports.len(), 1);
        assert!(r.ports[0].regex.is_match(b"  port: 53"));
        assert_eq!(r.writable[0].path.as_deref(), Some("/run/nsd"));
        assert!(r.writable[0].make_writable && r.writable[0].create);
        assert_eq!(r.readable[0].path.display(), "/etc/nsd/nsd_server.key");
        assert_eq!(r.edits[0].name, "do not switch users");
        assert!(
            matches!(&r.edits[1].action, crate::recipe::EditAction::Replace { with, .. } if with == r#"${1}username: """#)
        );
        // The files edited and made readable are kept while scanning.
        for f in ["/etc/nsd/nsd.conf", "/etc/nsd/nsd_server.key"] {
            assert!(r.capture.iter().any(|g| g == f), "{f}: {:?}", r.capture);
        }
    }

    #[test]
    fn patterns_with_quotes_stay_patterns() {
        assert_eq!(pattern(r"port='(?P<port>\d+)"), r#""port='(?P<port>\\d+)""#);
        assert_eq!(pattern(r"a\d"), r"'a\d'");
    }
}
