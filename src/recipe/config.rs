//! A service's config as found in the image: entry points, includes followed (globs
//! expanded in the image), variables, and comment-free lines.

use std::collections::{BTreeMap, BTreeSet};

use super::Recipe;
use crate::layer::{Content, ImagePath, Kind, MergedView};

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
                        let mut target = expand(&String::from_utf8_lossy(&cap[1]), vars);
                        if let Some(files) = &recipe.include_files {
                            target = format!("{}/{files}", target.trim_end_matches('/'));
                        }
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
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
