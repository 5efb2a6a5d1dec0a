//! Recipes: declarative knowledge of services (TOML files under `recipes/`, built into the
//! binary). A recipe is matched by a signature in the image (a file that is present), never
//! by the image's name, so derived images match too. It says where the service's config
//! lives and how it includes more, which directives carry listen ports, which paths the
//! service writes at run time, and where it logs.
//!
//! Invariant: a recipe that loads has every regex compiled and every glob valid; errors
//! name the recipe file with line and column.

use std::collections::{BTreeMap, BTreeSet};

use globset::{Glob, GlobSet, GlobSetBuilder};
use regex::bytes::Regex;
use serde::Deserialize;

use crate::layer::{Content, ImagePath, Kind, MergedView};

/// The recipes shipped with unroot, as (file name, TOML text).
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "recipes/apache.toml",
        include_str!("../../recipes/apache.toml"),
    ),
    (
        "recipes/nginx.toml",
        include_str!("../../recipes/nginx.toml"),
    ),
];

/// A recipe file as written.
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
    logs: Vec<LogSpec>,
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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogSpec {
    config: Option<String>,
    #[serde(default)]
    default: Vec<String>,
}

/// Whether a runtime-writable path is a file or a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathKind {
    /// A file the service creates or writes (a pid file).
    File,
    /// A directory the service writes in.
    Dir,
}

/// Why a recipe cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecipeError {
    /// The TOML is malformed or has unknown keys.
    #[error("recipe `{file}`: {message}")]
    Syntax {
        /// The recipe file.
        file: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A regex or glob does not compile.
    #[error("recipe `{file}`: `{field}`: {message}")]
    Pattern {
        /// The recipe file.
        file: String,
        /// Which field.
        field: String,
        /// The compiler's message.
        message: String,
    },
}

/// A config entry point and the directory its relative includes start from.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The file.
    pub path: ImagePath,
    /// The base of relative paths.
    pub base: ImagePath,
}

/// A directive that carries a listen port.
#[derive(Debug, Clone)]
pub struct PortPattern {
    /// Its name in messages (`listen`, `Listen`, `VirtualHost`).
    pub directive: String,
    /// The regex, with a `port` group.
    pub regex: Regex,
}

/// A path the service writes at run time.
#[derive(Debug, Clone)]
pub struct Writable {
    /// What it is, for messages.
    pub what: String,
    /// File or directory.
    pub kind: PathKind,
    /// A fixed path.
    pub path: Option<String>,
    /// A directive whose group 1 is the path.
    pub config: Option<Regex>,
    /// The path when the directive is absent.
    pub default: Option<String>,
    /// Only when the path exists in the image.
    pub if_exists: bool,
}

/// Where the service logs.
#[derive(Debug, Clone)]
pub struct Logs {
    /// A directive whose group 1 is a log path.
    pub config: Option<Regex>,
    /// The paths when no directive names one.
    pub default: Vec<String>,
}

/// A loaded recipe.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// Its name (`nginx`).
    pub name: String,
    /// One line about it.
    pub summary: String,
    /// The file it came from.
    pub file: String,
    /// Paths whose presence means the service is in the image.
    pub signature: Vec<ImagePath>,
    /// The service's own accounts, most preferred first.
    pub users: Vec<String>,
    /// Config entry points.
    pub entries: Vec<Entry>,
    /// Globs of files to keep while scanning.
    pub capture: Vec<String>,
    /// The include directive (group 1: path or glob).
    pub include: Option<Regex>,
    /// Line comment prefix.
    pub comment: Option<String>,
    /// Where variables come from: a file and a regex (group 1 name, group 2 value).
    pub variables: Option<(ImagePath, Regex)>,
    /// Port directives.
    pub ports: Vec<PortPattern>,
    /// Runtime-writable paths.
    pub writable: Vec<Writable>,
    /// Log locations.
    pub logs: Vec<Logs>,
}

fn compile(file: &str, field: &str, pattern: &str) -> Result<Regex, RecipeError> {
    regex::bytes::RegexBuilder::new(pattern)
        .multi_line(true)
        .build()
        .map_err(|e| RecipeError::Pattern {
            file: file.to_string(),
            field: field.to_string(),
            message: e
                .to_string()
                .lines()
                .last()
                .unwrap_or_default()
                .trim()
                .to_string(),
        })
}

impl Recipe {
    /// Parses and checks a recipe; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Recipe, RecipeError> {
        let spec: RecipeFile = toml::from_str(text).map_err(|e| RecipeError::Syntax {
            file: file.to_string(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        let config = spec.config.clone();
        let mut ports = Vec::new();
        for (i, p) in spec.ports.iter().enumerate() {
            let regex = compile(file, &format!("ports[{i}].pattern"), &p.pattern)?;
            if regex.capture_names().all(|n| n != Some("port")) {
                return Err(RecipeError::Pattern {
                    file: file.to_string(),
                    field: format!("ports[{i}].pattern"),
                    message: "the pattern needs a `(?P<port>...)` group".into(),
                });
            }
            ports.push(PortPattern {
                directive: p.directive.clone(),
                regex,
            });
        }
        let mut writable = Vec::new();
        for (i, w) in spec.writable.iter().enumerate() {
            if w.path.is_none() && w.config.is_none() {
                return Err(RecipeError::Pattern {
                    file: file.to_string(),
                    field: format!("writable[{i}]"),
                    message: "give `path` or `config`".into(),
                });
            }
            writable.push(Writable {
                what: w.what.clone(),
                kind: w.kind,
                path: w.path.clone(),
                config: w
                    .config
                    .as_deref()
                    .map(|c| compile(file, &format!("writable[{i}].config"), c))
                    .transpose()?,
                default: w.default.clone(),
                if_exists: w.if_exists,
            });
        }
        let mut logs = Vec::new();
        for (i, l) in spec.logs.iter().enumerate() {
            logs.push(Logs {
                config: l
                    .config
                    .as_deref()
                    .map(|c| compile(file, &format!("logs[{i}].config"), c))
                    .transpose()?,
                default: l.default.clone(),
            });
        }
        let capture = config
            .as_ref()
            .map(|c| c.capture.clone())
            .unwrap_or_default();
        for (i, g) in capture.iter().enumerate() {
            Glob::new(g).map_err(|e| RecipeError::Pattern {
                file: file.to_string(),
                field: format!("config.capture[{i}]"),
                message: e.to_string(),
            })?;
        }
        Ok(Recipe {
            name: spec.name,
            summary: spec.summary,
            file: file.to_string(),
            signature: spec.matcher.any.iter().map(|p| ImagePath::new(p)).collect(),
            users: spec.service.users,
            entries: config
                .as_ref()
                .map(|c| {
                    c.entry
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
                .and_then(|c| c.include.as_deref())
                .map(|p| compile(file, "config.include", p))
                .transpose()?,
            comment: config.as_ref().and_then(|c| c.comment.clone()),
            variables: config
                .as_ref()
                .and_then(|c| c.variables.as_ref())
                .map(|v| {
                    Ok::<_, RecipeError>((
                        ImagePath::new(&v.file),
                        compile(file, "config.variables.pattern", &v.pattern)?,
                    ))
                })
                .transpose()?,
            ports,
            writable,
            logs,
        })
    }

    /// The recipes built into unroot.
    pub fn builtin() -> Vec<Recipe> {
        BUILTIN
            .iter()
            .map(|(file, text)| {
                Recipe::parse(text, file).expect("built-in recipes are checked by the tests")
            })
            .collect()
    }

    /// The signature path found in the image, if the recipe matches.
    pub fn matches(&self, view: &MergedView) -> Option<ImagePath> {
        self.signature
            .iter()
            .find(|p| {
                view.resolve(p)
                    .ok()
                    .and_then(|r| view.get(&r))
                    .is_some_and(|n| n.meta.kind == Kind::File)
            })
            .cloned()
    }
}

/// The globs of files that recipes want kept while scanning.
pub fn capture_set(recipes: &[Recipe]) -> GlobSet {
    let mut b = GlobSetBuilder::new();
    for r in recipes {
        for g in &r.capture {
            // Checked when the recipe was parsed.
            if let Ok(glob) = Glob::new(g) {
                b.add(glob);
            }
        }
    }
    b.build().unwrap_or_else(|_| GlobSet::empty())
}

/// One config file of a service, as found by following includes.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    /// The path as the include (or entry) named it.
    pub path: ImagePath,
    /// Where it leads after symlinks.
    pub resolved: ImagePath,
    /// The layer that holds it.
    pub layer: Option<usize>,
    /// Its text, when it could be read; else why not.
    pub text: Result<std::sync::Arc<Vec<u8>>, ConfigProblem>,
}

/// Why a config file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigProblem {
    /// Larger than the capture cap.
    TooLarge,
    /// Contains NUL bytes: not a text file.
    Binary,
    /// A symlink loop.
    Loop,
    /// Not kept while scanning (outside the recipe's capture globs).
    NotCaptured,
}

/// The most config files followed through includes, against include loops and bombs.
const MAX_CONFIG_FILES: usize = 500;

/// Finds the service's config files: the entry points that exist, and every file their
/// includes name (globs expanded in the image), in reading order, each once.
pub fn config_files(
    recipe: &Recipe,
    view: &MergedView,
    vars: &BTreeMap<String, String>,
) -> Vec<ConfigFile> {
    let mut out: Vec<ConfigFile> = Vec::new();
    let mut seen: BTreeSet<ImagePath> = BTreeSet::new();
    for entry in &recipe.entries {
        if !view.exists(&entry.path) {
            continue;
        }
        let mut queue = vec![entry.path.clone()];
        while let Some(path) = queue.pop() {
            if out.len() >= MAX_CONFIG_FILES {
                break;
            }
            let file = read_config(view, &path);
            if !seen.insert(file.resolved.clone()) {
                continue;
            }
            let mut included = Vec::new();
            if let (Ok(text), Some(include)) = (&file.text, &recipe.include) {
                for line in config_lines(text, recipe.comment.as_deref()) {
                    for cap in include.captures_iter(line) {
                        let target = expand(&String::from_utf8_lossy(&cap[1]), vars);
                        included.extend(expand_glob(view, &entry.base, &target));
                    }
                }
            }
            out.push(file);
            // Depth first, in the order the includes appear.
            queue.extend(included.into_iter().rev());
        }
    }
    out
}

fn read_config(view: &MergedView, path: &ImagePath) -> ConfigFile {
    let resolved = match view.resolve(path) {
        Ok(r) => r,
        Err(_) => {
            return ConfigFile {
                path: path.clone(),
                resolved: path.clone(),
                layer: None,
                text: Err(ConfigProblem::Loop),
            }
        }
    };
    let node = view.get(&resolved);
    let text = match node.and_then(|n| n.content.as_ref()) {
        Some(Content::Bytes(b)) if b.contains(&0) => Err(ConfigProblem::Binary),
        Some(Content::Bytes(b)) => Ok(b.clone()),
        Some(Content::TooLarge) => Err(ConfigProblem::TooLarge),
        _ => Err(ConfigProblem::NotCaptured),
    };
    ConfigFile {
        path: path.clone(),
        layer: node.map(|n| n.layer),
        resolved,
        text,
    }
}

/// The lines of a config file with comments removed (byte lines: files need not be UTF-8).
pub fn config_lines<'a>(
    text: &'a [u8],
    comment: Option<&'a str>,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    text.split(|&b| b == b'\n').map(move |line| match comment {
        Some(c) => {
            let c = c.as_bytes();
            let trimmed = line
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .map_or(&line[..0], |i| &line[i..]);
            if trimmed.starts_with(c) {
                &line[..0]
            } else {
                // A comment after a directive: ` # ...` (not inside a word such as `a#b`).
                match line
                    .windows(c.len() + 1)
                    .position(|w| w[0].is_ascii_whitespace() && &w[1..] == c)
                {
                    Some(i) => &line[..i],
                    None => line,
                }
            }
        }
        None => line,
    })
}

/// Expands `$NAME` and `${NAME}`; unknown names expand to nothing (as the shell does).
pub fn expand(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, len) = if let Some(inner) = after.strip_prefix('{') {
            match inner.find('}') {
                Some(end) => (&inner[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        if len == 0 {
            out.push('$');
            rest = after;
            continue;
        }
        out.push_str(vars.get(name).map(String::as_str).unwrap_or_default());
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

/// The variables a recipe reads from the image (Debian's `envvars`).
pub fn variables(recipe: &Recipe, view: &MergedView) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    let Some((path, regex)) = &recipe.variables else {
        return vars;
    };
    let file = read_config(view, path);
    if let Ok(text) = &file.text {
        for line in config_lines(text, Some("#")) {
            if let Some(c) = regex.captures(line) {
                let name = String::from_utf8_lossy(&c[1]).into_owned();
                let value = String::from_utf8_lossy(&c[2]).trim_matches('"').to_string();
                let value = expand(&value, &vars);
                vars.insert(name, value);
            }
        }
    }
    vars
}

/// Resolves a path named in a config: absolute as it is, relative against `base`; a glob
/// is expanded against the files of the image.
fn expand_glob(view: &MergedView, base: &ImagePath, target: &str) -> Vec<ImagePath> {
    let absolute = if target.starts_with('/') {
        target.to_string()
    } else {
        format!("{}/{target}", base.display())
    };
    if !absolute.contains(['*', '?', '[']) {
        return vec![ImagePath::new(&absolute)];
    }
    // Walk below the part before the first wildcard.
    let fixed = &absolute[..absolute.find(['*', '?', '[']).expect("has a wildcard")];
    let dir = ImagePath::new(&fixed[..fixed.rfind('/').unwrap_or(0)]);
    let Ok(glob) = globset::GlobBuilder::new(&absolute)
        .literal_separator(true)
        .build()
    else {
        return Vec::new();
    };
    let matcher = glob.compile_matcher();
    let dir = view.resolve(&dir).unwrap_or(dir);
    view.below(&dir)
        .filter(|(_, n)| matches!(n.meta.kind, Kind::File | Kind::Symlink | Kind::Hardlink))
        .map(|(p, _)| p)
        .filter(|p| {
            // Match the path as named in the config (under the unresolved directory).
            let rel = &p.as_bytes()[dir.as_bytes().len()..];
            let named = format!(
                "{}{}",
                fixed[..fixed.rfind('/').unwrap_or(0)].trim_end_matches('/'),
                String::from_utf8_lossy(rel)
            );
            matcher.is_match(&named)
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_recipes_load() {
        let recipes = Recipe::builtin();
        assert_eq!(
            recipes.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["apache", "nginx"]
        );
    }

    #[test]
    fn syntax_errors_point_at_line_and_column() {
        let err = Recipe::parse("name = \"x\"\nsummary = 3\n", "recipes/x.toml").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("recipe `recipes/x.toml`: TOML parse error at line 2, column 11"),
            "{msg}"
        );
        let err = Recipe::parse(
            "name = \"x\"\nsummary = \"y\"\n[match]\nany = []\n[[ports]]\ndirective = \"listen\"\npattern = 'listen (\\d+)'\n",
            "x.toml",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("needs a `(?P<port>...)` group"),
            "{err}"
        );
        let err = Recipe::parse(
            "name = \"x\"\nsummary = \"y\"\n[match]\nany = []\nbogus = 1\n",
            "x.toml",
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `bogus`"), "{err}");
    }

    #[test]
    fn expands_variables_like_the_shell() {
        let mut vars = BTreeMap::new();
        vars.insert("DIR".to_string(), "/var/log/apache2".to_string());
        assert_eq!(
            expand("${DIR}/error.log", &vars),
            "/var/log/apache2/error.log"
        );
        assert_eq!(expand("$DIR$SUFFIX/x", &vars), "/var/log/apache2/x");
        assert_eq!(expand("cost $", &vars), "cost $");
    }

    #[test]
    fn strips_comments() {
        let text = b"listen 80; # old\n  # listen 81;\nuser a#b;\n";
        let lines: Vec<&[u8]> = config_lines(text, Some("#")).collect();
        assert_eq!(lines, [&b"listen 80;"[..], b"", b"user a#b;", b""]);
    }
}
