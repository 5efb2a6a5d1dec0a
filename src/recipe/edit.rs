//! Applying a matched recipe: moving listen ports by the port map, redirecting runtime
//! paths and logs, and the recipe's own edits, on in-memory copies of the service's files.
//!
//! Invariant: only the code part of a line is edited (comments stay as they are), every
//! edit that is not optional must change or confirm something, and the original bytes of
//! every edited file are kept for diffs.

use std::collections::BTreeMap;
use std::sync::Arc;

use globset::{Glob, GlobSetBuilder};
use regex::bytes::Regex;

use super::config::{expand, ConfigFile};
use super::text::{indentation, is_stream, replace_group, split_code};
use super::MatchedRecipe;
use super::{EditAction, Insert, Recipe};
use crate::layer::{Content, ImagePath, Kind, MergedView};
use crate::model::ports::PortMap;

/// One file a recipe changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditedFile {
    /// The file (symlinks resolved: the file that holds the text).
    pub path: ImagePath,
    /// Its bytes before.
    pub original: Arc<Vec<u8>>,
    /// Its bytes after.
    pub text: Vec<u8>,
    /// What changed it, in order.
    pub edits: Vec<String>,
}

/// What applying one recipe gives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Files whose text changed.
    pub files: Vec<EditedFile>,
    /// Environment variables to set.
    pub env: Vec<(String, String)>,
    /// Directories to make `UID:0` and group-writable.
    pub writable_dirs: Vec<ImagePath>,
    /// Ports moved in the config, `(from, to)`.
    pub port_moves: Vec<(u16, u16)>,
}

/// Why a recipe cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// An edit that is not optional changed nothing.
    #[error("recipe `{recipe}`: edit `{edit}` matched nothing in {}", list(files))]
    NoMatch {
        /// The recipe.
        recipe: String,
        /// The edit.
        edit: String,
        /// The files it looked at.
        files: Vec<String>,
    },
    /// A recipe asked for by name (`--recipe`) whose service is not in the image: none
    /// of its signature files and none of its config files are there.
    #[error(
        "recipe `{recipe}` was asked for, but the image has none of its files ({})",
        list(signature)
    )]
    NotInImage {
        /// The recipe.
        recipe: String,
        /// The files that would show its service.
        signature: Vec<String>,
    },
    /// A file to edit was not kept (too large, binary).
    #[error("recipe `{recipe}`: cannot edit `{path}`: {why}")]
    Unreadable {
        /// The recipe.
        recipe: String,
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
}

impl ApplyError {
    /// The recipe's name.
    pub fn recipe(&self) -> &str {
        match self {
            ApplyError::NoMatch { recipe, .. }
            | ApplyError::Unreadable { recipe, .. }
            | ApplyError::NotInImage { recipe, .. } => recipe,
        }
    }
}

fn list(files: &[String]) -> String {
    if files.is_empty() {
        "any file (none of its files is in the image)".to_string()
    } else {
        files
            .iter()
            .map(|f| format!("`{f}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The working copies of the files being edited, in reading order.
struct Work {
    order: Vec<ImagePath>,
    files: BTreeMap<ImagePath, EditedFile>,
    comment: Option<String>,
    /// Lines inserted so far (trimmed), so later inserts into the same block follow them.
    inserted: Vec<Vec<u8>>,
}

impl Work {
    fn add(&mut self, path: ImagePath, text: Arc<Vec<u8>>) {
        if !self.files.contains_key(&path) {
            self.order.push(path.clone());
            self.files.insert(
                path.clone(),
                EditedFile {
                    path,
                    text: text.as_ref().clone(),
                    original: text,
                    edits: Vec::new(),
                },
            );
        }
    }

    /// Applies `f` to the code part of every line of the given files; returns how many
    /// lines changed. `f` returns the new code part, or `None` to keep the line.
    fn edit_lines(
        &mut self,
        paths: &[ImagePath],
        name: &str,
        mut f: impl FnMut(&[u8]) -> Option<Vec<u8>>,
    ) -> usize {
        let mut changed = 0;
        for p in paths {
            let Some(file) = self.files.get_mut(p) else {
                continue;
            };
            let mut out = Vec::with_capacity(file.text.len() + 64);
            let mut here = 0;
            for line in file.text.split_inclusive(|&b| b == b'\n') {
                let (code, rest) = split_code(line, self.comment.as_deref());
                match f(code) {
                    Some(new) if new != code => {
                        out.extend_from_slice(&new);
                        out.extend_from_slice(rest);
                        here += 1;
                    }
                    _ => out.extend_from_slice(line),
                }
            }
            if here > 0 {
                file.text = out;
                if !file.edits.iter().any(|e| e == name) {
                    file.edits.push(name.to_string());
                }
                changed += here;
            }
        }
        changed
    }

    /// Whether `regex` matches the code of any line of the given files.
    fn any_line(&self, paths: &[ImagePath], regex: &Regex) -> bool {
        paths.iter().filter_map(|p| self.files.get(p)).any(|f| {
            f.text
                .split_inclusive(|&b| b == b'\n')
                .any(|line| regex.is_match(split_code(line, self.comment.as_deref()).0))
        })
    }

    /// Inserts `insert.text` after the first line whose code matches `insert.into` (at the
    /// top of the first file when there is no `into`). Returns whether it did.
    fn insert(&mut self, paths: &[ImagePath], insert: &Insert, name: &str) -> bool {
        let comment = self.comment.clone();
        for p in paths {
            let Some(file) = self.files.get_mut(p) else {
                continue;
            };
            let lines: Vec<&[u8]> = file.text.split_inclusive(|&b| b == b'\n').collect();
            let at = match &insert.into {
                None => Some((0, Vec::new())),
                Some(into) => lines
                    .iter()
                    .position(|l| into.is_match(split_code(l, comment.as_deref()).0))
                    .map(|i| {
                        let indent = indentation(lines[i]);
                        let inner = lines[i + 1..]
                            .iter()
                            .map(|l| indentation(l))
                            .find(|ind| !ind.is_empty() && ind.len() > indent.len())
                            .unwrap_or_else(|| [indent.as_slice(), b"    "].concat());
                        // After what earlier inserts put there, so the order is the recipe's.
                        let mut at = i + 1;
                        while at < lines.len()
                            && self
                                .inserted
                                .iter()
                                .any(|t| t.as_slice() == lines[at].trim_ascii())
                        {
                            at += 1;
                        }
                        (at, inner)
                    }),
            };
            let Some((index, indent)) = at else { continue };
            let mut block = Vec::new();
            if index > 0 && !lines[index - 1].ends_with(b"\n") {
                block.push(b'\n');
            }
            for line in insert.text.lines() {
                block.extend_from_slice(&indent);
                block.extend_from_slice(line.as_bytes());
                block.push(b'\n');
                self.inserted.push(line.trim().as_bytes().to_vec());
            }
            let mut out: Vec<u8> = lines[..index].concat();
            out.extend_from_slice(&block);
            out.extend_from_slice(&lines[index..].concat());
            file.text = out;
            if !file.edits.iter().any(|e| e == name) {
                file.edits.push(name.to_string());
            }
            return true;
        }
        false
    }
}

/// Applies a matched recipe with the port map; returns what changed.
pub fn apply(
    matched: &MatchedRecipe<'_>,
    view: &MergedView,
    ports: &PortMap,
) -> Result<Outcome, ApplyError> {
    let recipe: &Recipe = matched.recipe;
    let mut work = Work {
        order: Vec::new(),
        files: BTreeMap::new(),
        comment: recipe.comment.clone(),
        inserted: Vec::new(),
    };
    let mut config: Vec<ImagePath> = Vec::new();
    for f in &matched.files {
        if let ConfigFile {
            resolved,
            text: Ok(text),
            ..
        } = f
        {
            work.add(resolved.clone(), text.clone());
            if !config.contains(resolved) {
                config.push(resolved.clone());
            }
        }
    }
    let mut outcome = Outcome::default();

    // Listen ports, through the port map: in the config, and in the other files named.
    for pattern in &recipe.ports {
        let name = format!("move `{}` ports", pattern.directive);
        let mut targets = config.clone();
        if let Some(globs) = &pattern.files {
            for path in files_matching(view, globs) {
                if let Some(Content::Bytes(b)) = view.get(&path).and_then(|n| n.content.as_ref()) {
                    work.add(path.clone(), b.clone());
                    targets.push(path);
                }
            }
        }
        let idx = pattern
            .regex
            .capture_names()
            .position(|n| n == Some("port"))
            .expect("checked at load");
        let moves = &mut outcome.port_moves;
        work.edit_lines(&targets, &name, |code| {
            replace_group(code, &pattern.regex, idx, |_, port| {
                let p: u16 = std::str::from_utf8(port).ok()?.parse().ok()?;
                let to = ports.map(p)?;
                if !moves.contains(&(p, to)) {
                    moves.push((p, to));
                }
                Some(to.to_string().into_bytes())
            })
        });
    }

    // Runtime paths: redirected where the service allows it, else made writable.
    for w in &recipe.writable {
        if w.when.as_ref().is_some_and(|p| !view.exists(p)) {
            continue;
        }
        if let (Some(regex), Some(redirect)) = (&w.config, &w.redirect) {
            let name = format!("{} -> {redirect}", w.what);
            if work.any_line(&config, regex) {
                work.edit_lines(&config, &name, |code| {
                    replace_group(code, regex, 1, |_, value| {
                        let raw = String::from_utf8_lossy(value);
                        // A value from a variable is moved where the variable is set.
                        if raw.contains("${") {
                            return None;
                        }
                        let v = expand(&raw, &matched.vars);
                        (v != *redirect && !v.starts_with("/tmp/"))
                            .then(|| redirect.clone().into_bytes())
                    })
                });
            } else if let Some(insert) = &w.insert {
                work.insert(&config, insert, &name);
            }
        }
        if w.make_writable {
            let value = match (&w.path, &w.config) {
                (Some(p), _) => Some(p.clone()),
                (None, Some(regex)) => {
                    first_value(&work, &config, regex, &matched.vars).or_else(|| w.default.clone())
                }
                _ => None,
            };
            if let Some(v) = value.filter(|v| v.starts_with('/') && !v.contains("${")) {
                let path = ImagePath::new(&v);
                if view.exists(&path) || w.create {
                    let dir = view.resolve(&path).unwrap_or(path);
                    if !outcome.writable_dirs.contains(&dir) {
                        outcome.writable_dirs.push(dir);
                    }
                }
            }
        }
    }

    // Logs to the standard streams (log files already linked to them are left alone).
    for logs in &recipe.logs {
        let (Some(regex), Some(to)) = (&logs.config, &logs.to) else {
            continue;
        };
        let name = format!("log to {to}");
        work.edit_lines(&config, &name, |code| {
            replace_group(code, regex, 1, |_, value| {
                let v = expand(&String::from_utf8_lossy(value), &matched.vars);
                let linked = v.starts_with('/')
                    && view
                        .resolve(&ImagePath::new(&v))
                        .is_ok_and(|r| is_stream(&r.display()));
                (!is_stream(&v) && !linked).then(|| to.clone().into_bytes())
            })
        });
    }

    // The recipe's own edits.
    for edit in &recipe.edits {
        let targets = match &edit.files {
            None => config.clone(),
            Some(globs) => {
                let found = files_matching(view, globs);
                for path in &found {
                    match view.get(path).and_then(|n| n.content.as_ref()) {
                        Some(Content::Bytes(b)) => work.add(path.clone(), b.clone()),
                        other => {
                            return Err(ApplyError::Unreadable {
                                recipe: recipe.name.clone(),
                                path: path.display(),
                                why: match other {
                                    Some(Content::TooLarge) => "it is larger than 1 MiB".into(),
                                    _ => "it was not kept while reading the layers".into(),
                                },
                            })
                        }
                    }
                }
                found
            }
        };
        if targets.is_empty() {
            // None of the files it edits is in this image: the edit does not apply.
            continue;
        }
        let done = match &edit.action {
            EditAction::Replace {
                pattern,
                with,
                unless,
            } => {
                let changed = work.edit_lines(&targets, &edit.name, |code| {
                    pattern
                        .is_match(code)
                        .then(|| pattern.replace_all(code, with.as_bytes()).into_owned())
                }) > 0;
                changed || unless.as_ref().is_some_and(|u| work.any_line(&targets, u))
            }
            EditAction::Remove { pattern } => {
                let comment = recipe.comment.clone().unwrap_or_else(|| "#".to_string());
                work.edit_lines(&targets, &edit.name, |code| {
                    pattern.is_match(code).then(|| {
                        let indent = indentation(code);
                        [
                            indent.as_slice(),
                            comment.as_bytes(),
                            b" ",
                            &code[indent.len()..],
                        ]
                        .concat()
                    })
                }) > 0
            }
            EditAction::Insert { insert, unless } => {
                let satisfied = unless.as_ref().is_some_and(|u| work.any_line(&targets, u));
                satisfied || work.insert(&targets, insert, &edit.name)
            }
        };
        if !done && !edit.optional {
            return Err(ApplyError::NoMatch {
                recipe: recipe.name.clone(),
                edit: edit.name.clone(),
                files: targets.iter().map(|p| p.display()).collect(),
            });
        }
    }

    outcome.env = recipe.env.clone();
    outcome.files = work
        .order
        .iter()
        .filter_map(|p| work.files.remove(p))
        .filter(|f| f.text != *f.original)
        .collect();
    Ok(outcome)
}

/// The first value a directive's group 1 takes in the working copies.
fn first_value(
    work: &Work,
    paths: &[ImagePath],
    regex: &Regex,
    vars: &BTreeMap<String, String>,
) -> Option<String> {
    for p in paths {
        let f = work.files.get(p)?;
        for line in f.text.split_inclusive(|&b| b == b'\n') {
            if let Some(c) = regex.captures(split_code(line, work.comment.as_deref()).0) {
                return Some(expand(&String::from_utf8_lossy(&c[1]), vars));
            }
        }
    }
    None
}

/// The files of the view that `globs` name (symlinks resolved), each once.
pub fn files_matching(view: &MergedView, globs: &[String]) -> Vec<ImagePath> {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        if let Ok(glob) = Glob::new(g) {
            b.add(glob);
        }
    }
    let Ok(set) = b.build() else {
        return Vec::new();
    };
    let mut out: Vec<ImagePath> = Vec::new();
    for (path, node) in view.iter() {
        if !matches!(node.meta.kind, Kind::File | Kind::Symlink) || !set.is_match(path.display()) {
            continue;
        }
        let Ok(resolved) = view.resolve(&path) else {
            continue;
        };
        if view
            .get(&resolved)
            .is_some_and(|n| n.meta.kind == Kind::File)
            && !out.contains(&resolved)
        {
            out.push(resolved);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nginx recipe on a config that already sets some temp paths (under /var/cache):
    /// those move, the missing ones are added, none is duplicated.
    #[test]
    fn nginx_temp_paths_are_moved_or_added_never_duplicated() {
        let spec = r#"
[[layer]]
[[layer.entry]]
path = "/usr/sbin/nginx"
size = 10
mode = 0o755
[[layer.entry]]
path = "/etc/nginx/nginx.conf"
text = "events {}\nhttp {\n    proxy_temp_path /var/cache/nginx/proxy_temp 1 2;\n    client_body_temp_path /tmp/already;\n    server { listen 80; listen [::]:80 ipv6only=on; listen 127.0.0.1:8081; }\n}\n"
"#;
        let analyzed = crate::testkit::Analyzed::from_spec(spec);
        let view = &analyzed.scan.view;
        let matched = MatchedRecipe::find(&analyzed.recipes, view);
        let nginx = matched.iter().find(|m| m.recipe.name == "nginx").unwrap();
        let outcome = apply(nginx, view, &PortMap::default()).unwrap();
        let file = outcome
            .files
            .iter()
            .find(|f| f.path == ImagePath::new("/etc/nginx/nginx.conf"))
            .unwrap();
        let text = String::from_utf8_lossy(&file.text);
        for directive in [
            "proxy_temp_path",
            "client_body_temp_path",
            "fastcgi_temp_path",
            "uwsgi_temp_path",
            "scgi_temp_path",
            "pid",
        ] {
            assert_eq!(
                text.matches(&format!("{directive} ")).count(),
                1,
                "{directive} in\n{text}"
            );
        }
        assert!(
            text.contains("proxy_temp_path /tmp/proxy_temp 1 2;"),
            "{text}"
        );
        assert!(
            text.contains("client_body_temp_path /tmp/already;"),
            "a path already in /tmp stays: {text}"
        );
        assert!(
            text.contains("listen 8080; listen [::]:8080 ipv6only=on; listen 127.0.0.1:8081;"),
            "{text}"
        );
        assert!(text.starts_with("pid /tmp/nginx.pid;\n"), "{text}");
    }
}
