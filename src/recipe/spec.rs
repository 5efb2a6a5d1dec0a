//! The recipe file format (TOML) and its checks; see `recipes/README.md`.

use globset::Glob;
use regex::bytes::Regex;
use serde::Deserialize;

use super::{
    Edit, EditAction, Entry, Insert, Logs, Owned, PathKind, PortPattern, Readable, Recipe,
    RecipeError, Writable,
};
use crate::layer::ImagePath;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecipeFile {
    name: String,
    summary: String,
    #[serde(rename = "match")]
    matcher: MatchSpec,
    #[serde(default)]
    service: ServiceSpec,
    #[serde(default)]
    config: Option<ConfigSpec>,
    #[serde(default)]
    ports: Vec<PortSpec>,
    #[serde(default)]
    writable: Vec<WritableSpec>,
    #[serde(default)]
    owned: Vec<OwnedSpec>,
    #[serde(default)]
    readable: Vec<ReadableSpec>,
    #[serde(default)]
    logs: Vec<LogSpec>,
    #[serde(default)]
    edit: Vec<EditSpec>,
    #[serde(default)]
    env: Vec<EnvSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchSpec {
    any: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceSpec {
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    ports: Vec<String>,
    #[serde(default)]
    user_options: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadableSpec {
    what: String,
    path: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigSpec {
    entry: Vec<EntrySpec>,
    #[serde(default)]
    capture: Vec<String>,
    #[serde(default)]
    include: Option<String>,
    #[serde(default)]
    include_files: Option<String>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    variables: Option<VariablesSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntrySpec {
    path: String,
    base: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct VariablesSpec {
    file: String,
    pattern: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PortSpec {
    directive: String,
    pattern: String,
    #[serde(default)]
    files: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct InsertSpec {
    #[serde(default)]
    into: Option<String>,
    text: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct WritableSpec {
    what: String,
    kind: PathKind,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    config: Option<String>,
    #[serde(default)]
    default: Option<String>,
    #[serde(default)]
    if_exists: bool,
    #[serde(default)]
    when: Option<String>,
    #[serde(default)]
    redirect: Option<String>,
    #[serde(default)]
    insert: Option<InsertSpec>,
    #[serde(default)]
    make_writable: bool,
    #[serde(default)]
    create: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnedSpec {
    what: String,
    #[serde(default)]
    env: Option<String>,
    path: String,
    mode: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogSpec {
    config: Option<String>,
    #[serde(default)]
    default: Vec<String>,
    #[serde(default)]
    to: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum EditKind {
    Replace,
    Remove,
    Insert,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct EditSpec {
    name: String,
    kind: EditKind,
    #[serde(default)]
    files: Option<Vec<String>>,
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default)]
    with: Option<String>,
    #[serde(default)]
    into: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    unless: Option<String>,
    #[serde(default)]
    optional: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvSpec {
    name: String,
    value: String,
}

struct Checker<'a> {
    file: &'a str,
}

impl Checker<'_> {
    fn err(&self, field: &str, message: impl Into<String>) -> RecipeError {
        RecipeError::Pattern {
            file: self.file.to_string(),
            field: field.to_string(),
            message: message.into(),
        }
    }

    fn regex(&self, field: &str, pattern: &str) -> Result<Regex, RecipeError> {
        regex::bytes::RegexBuilder::new(pattern)
            .multi_line(true)
            .build()
            .map_err(|e| {
                self.err(
                    field,
                    e.to_string().lines().last().unwrap_or_default().trim(),
                )
            })
    }

    fn glob(&self, field: &str, glob: &str) -> Result<(), RecipeError> {
        Glob::new(glob)
            .map(|_| ())
            .map_err(|e| self.err(field, e.to_string()))
    }

    fn insert(&self, field: &str, spec: &InsertSpec) -> Result<Insert, RecipeError> {
        Ok(Insert {
            into: spec
                .into
                .as_deref()
                .map(|p| self.regex(&format!("{field}.into"), p))
                .transpose()?,
            text: spec.text.clone(),
        })
    }
}

impl Recipe {
    /// Parses and checks a recipe; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Recipe, RecipeError> {
        let spec: RecipeFile = toml::from_str(text).map_err(|e| {
            // The parser's message is a header with the position, a picture of the line,
            // and the problem: keep the first and the last.
            let full = e.to_string();
            let lines: Vec<&str> = full
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            let message = match (lines.first(), lines.last()) {
                (Some(first), Some(last)) if lines.len() > 1 => format!("{first}: {last}"),
                _ => full.trim().to_string(),
            };
            RecipeError::Syntax {
                file: file.to_string(),
                message,
            }
        })?;
        let c = Checker { file };
        let config = spec.config.clone();

        let mut ports = Vec::new();
        for (i, p) in spec.ports.iter().enumerate() {
            let field = format!("ports[{i}].pattern");
            let regex = c.regex(&field, &p.pattern)?;
            if regex.capture_names().all(|n| n != Some("port")) {
                return Err(c.err(&field, "the pattern needs a `(?P<port>...)` group"));
            }
            if let Some(files) = &p.files {
                for (j, g) in files.iter().enumerate() {
                    c.glob(&format!("ports[{i}].files[{j}]"), g)?;
                }
            }
            ports.push(PortPattern {
                directive: p.directive.clone(),
                regex,
                files: p.files.clone(),
            });
        }

        let mut writable = Vec::new();
        for (i, w) in spec.writable.iter().enumerate() {
            let field = format!("writable[{i}]");
            if w.path.is_none() && w.config.is_none() {
                return Err(c.err(&field, "give `path` or `config`"));
            }
            if w.redirect.is_some() && w.config.is_none() {
                return Err(c.err(
                    &field,
                    "`redirect` moves a path a directive names, so it needs `config`",
                ));
            }
            if w.create && (!w.make_writable || w.path.is_none()) {
                return Err(c.err(
                    &format!("{field}.create"),
                    "`create` makes a missing directory: it needs `make_writable = true` and a fixed `path`",
                ));
            }
            writable.push(Writable {
                what: w.what.clone(),
                kind: w.kind,
                path: w.path.clone(),
                config: w
                    .config
                    .as_deref()
                    .map(|p| c.regex(&format!("{field}.config"), p))
                    .transpose()?,
                default: w.default.clone(),
                if_exists: w.if_exists,
                when: w.when.as_deref().map(ImagePath::new),
                redirect: w.redirect.clone(),
                insert: w
                    .insert
                    .as_ref()
                    .map(|ins| c.insert(&format!("{field}.insert"), ins))
                    .transpose()?,
                make_writable: w.make_writable,
                create: w.create,
            });
        }

        let mut owned = Vec::new();
        for (i, o) in spec.owned.iter().enumerate() {
            let field = format!("owned[{i}]");
            if !o.path.starts_with('/') || o.path == "/" {
                return Err(c.err(
                    &format!("{field}.path"),
                    "an absolute path below `/` (its parent is mounted writable)",
                ));
            }
            if o.mode > 0o7777 || o.mode & 0o700 != 0o700 {
                return Err(c.err(
                    &format!("{field}.mode"),
                    "a mode such as 0o700 that lets the owner read, write and enter",
                ));
            }
            owned.push(Owned {
                what: o.what.clone(),
                env: o.env.clone(),
                path: o.path.clone(),
                mode: o.mode,
            });
        }

        let listens = service_ports(&c, &spec.service.ports)?;
        for (i, o) in spec.service.user_options.iter().enumerate() {
            if !o.starts_with('-') || o.contains(char::is_whitespace) || o.contains('=') {
                return Err(c.err(
                    &format!("service.user_options[{i}]"),
                    format!("`{o}` is not an option such as `--user` or `-u`"),
                ));
            }
        }
        let readable = readable_paths(&c, &spec.readable)?;

        let mut logs = Vec::new();
        for (i, l) in spec.logs.iter().enumerate() {
            logs.push(Logs {
                config: l
                    .config
                    .as_deref()
                    .map(|p| c.regex(&format!("logs[{i}].config"), p))
                    .transpose()?,
                default: l.default.clone(),
                to: l.to.clone(),
            });
        }

        let mut capture = config
            .as_ref()
            .map(|c| c.capture.clone())
            .unwrap_or_default();
        // The files the port moves and the edits change must be kept while scanning.
        capture.extend(
            spec.ports
                .iter()
                .flat_map(|p| p.files.clone().unwrap_or_default()),
        );
        // ... and so must the files made readable (a new layer carries them whole).
        capture.extend(readable.iter().map(|r| {
            let path = r.path.display();
            if super::is_glob(&path) {
                path
            } else {
                globset::escape(&path)
            }
        }));
        for (i, g) in capture.iter().enumerate() {
            c.glob(&format!("config.capture[{i}]"), g)?;
        }

        let mut edits = Vec::new();
        for (i, e) in spec.edit.iter().enumerate() {
            let field = format!("edit[{i}]");
            let need = |v: &Option<String>, what: &str| {
                v.clone().ok_or_else(|| {
                    c.err(
                        &field,
                        format!("a `{:?}` edit needs `{what}`", e.kind).to_lowercase(),
                    )
                })
            };
            let action = match e.kind {
                EditKind::Replace => EditAction::Replace {
                    pattern: c.regex(&format!("{field}.pattern"), &need(&e.pattern, "pattern")?)?,
                    with: need(&e.with, "with")?,
                    unless: e
                        .unless
                        .as_deref()
                        .map(|p| c.regex(&format!("{field}.unless"), p))
                        .transpose()?,
                },
                EditKind::Remove => EditAction::Remove {
                    pattern: c.regex(&format!("{field}.pattern"), &need(&e.pattern, "pattern")?)?,
                },
                EditKind::Insert => EditAction::Insert {
                    insert: Insert {
                        into: e
                            .into
                            .as_deref()
                            .map(|p| c.regex(&format!("{field}.into"), p))
                            .transpose()?,
                        text: need(&e.text, "text")?,
                    },
                    unless: e
                        .unless
                        .as_deref()
                        .map(|p| c.regex(&format!("{field}.unless"), p))
                        .transpose()?,
                },
            };
            if let Some(files) = &e.files {
                for (j, g) in files.iter().enumerate() {
                    c.glob(&format!("{field}.files[{j}]"), g)?;
                    // The files an edit changes must be kept while scanning.
                    capture.push(g.clone());
                }
            }
            edits.push(Edit {
                name: e.name.clone(),
                files: e.files.clone(),
                action,
                optional: e.optional,
            });
        }

        Ok(Recipe {
            name: spec.name,
            summary: spec.summary,
            file: file.to_string(),
            source: text.to_string(),
            signature: spec.matcher.any.iter().map(|p| ImagePath::new(p)).collect(),
            users: spec.service.users,
            listens,
            user_options: spec.service.user_options,
            entries: config
                .as_ref()
                .map(|cfg| {
                    cfg.entry
                        .iter()
                        .map(|e| Entry {
                            path: ImagePath::new(&e.path),
                            base: ImagePath::new(&e.base),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            capture,
            include: config
                .as_ref()
                .and_then(|cfg| cfg.include.as_deref())
                .map(|p| c.regex("config.include", p))
                .transpose()?,
            include_files: config.as_ref().and_then(|cfg| cfg.include_files.clone()),
            comment: config.as_ref().and_then(|cfg| cfg.comment.clone()),
            variables: config
                .as_ref()
                .and_then(|cfg| cfg.variables.as_ref())
                .map(|v| {
                    Ok::<_, RecipeError>((
                        ImagePath::new(&v.file),
                        c.regex("config.variables.pattern", &v.pattern)?,
                    ))
                })
                .transpose()?,
            ports,
            writable,
            owned,
            readable,
            logs,
            edits,
            env: spec.env.into_iter().map(|e| (e.name, e.value)).collect(),
        })
    }
}

/// `[service] ports`: `PORT/tcp` or `PORT/udp` each (`PORT` alone is TCP), as
/// `ExposedPorts` keys.
fn service_ports(c: &Checker<'_>, ports: &[String]) -> Result<Vec<String>, RecipeError> {
    ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
            match (port.parse::<u16>(), proto) {
                (Ok(n), "tcp" | "udp") if n > 0 => Ok(format!("{n}/{proto}")),
                _ => Err(c.err(
                    &format!("service.ports[{i}]"),
                    format!("`{p}` is not a port such as `53/udp` or `8080/tcp`"),
                )),
            }
        })
        .collect()
}

/// `[[readable]]`: absolute paths, or globs of them.
fn readable_paths(c: &Checker<'_>, specs: &[ReadableSpec]) -> Result<Vec<Readable>, RecipeError> {
    specs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if !r.path.starts_with('/') || r.path == "/" {
                return Err(c.err(
                    &format!("readable[{i}].path"),
                    "an absolute path below `/`, or a glob of them",
                ));
            }
            if super::is_glob(&r.path) {
                if let Err(e) = globset::Glob::new(&r.path) {
                    return Err(c.err(&format!("readable[{i}].path"), e.to_string()));
                }
            }
            Ok(Readable {
                what: r.what.clone(),
                path: ImagePath::new(&r.path),
            })
        })
        .collect()
}
