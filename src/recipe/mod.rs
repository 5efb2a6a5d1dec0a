//! Recipes: declarative knowledge of services (TOML files under `recipes/`, built into the
//! binary). A recipe is matched by a signature in the image (a file that is present), never
//! by the image's name, so derived images match too. It says where the service's config
//! lives and how it includes more, which directives carry listen ports (moved by the port
//! map), which paths the service writes at run time (redirected to /tmp, or made writable),
//! where it logs, and which other edits make it run unprivileged.
//!
//! Invariant: a recipe that loads has every regex compiled and every glob valid; errors
//! name the recipe file with line and column.

use globset::{Glob, GlobSet, GlobSetBuilder};
use regex::bytes::Regex;
use serde::Deserialize;

use crate::layer::{ImagePath, Kind, MergedView};

mod config;
pub mod draft;
pub mod edit;
mod matched;
mod spec;
mod text;

pub use config::{config_files, config_lines, expand, variables, ConfigFile, ConfigProblem};
pub use matched::{MatchedRecipe, RecipeMatch};
pub use text::is_stream;

/// The recipes shipped with unroot, as (file name, TOML text).
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "recipes/apache.toml",
        include_str!("../../recipes/apache.toml"),
    ),
    (
        "recipes/caddy.toml",
        include_str!("../../recipes/caddy.toml"),
    ),
    (
        "recipes/dnsmasq.toml",
        include_str!("../../recipes/dnsmasq.toml"),
    ),
    (
        "recipes/haproxy.toml",
        include_str!("../../recipes/haproxy.toml"),
    ),
    ("recipes/knot.toml", include_str!("../../recipes/knot.toml")),
    (
        "recipes/lighttpd.toml",
        include_str!("../../recipes/lighttpd.toml"),
    ),
    (
        "recipes/mariadb.toml",
        include_str!("../../recipes/mariadb.toml"),
    ),
    (
        "recipes/memcached.toml",
        include_str!("../../recipes/memcached.toml"),
    ),
    (
        "recipes/mosquitto.toml",
        include_str!("../../recipes/mosquitto.toml"),
    ),
    (
        "recipes/nginx.toml",
        include_str!("../../recipes/nginx.toml"),
    ),
    ("recipes/nsd.toml", include_str!("../../recipes/nsd.toml")),
    (
        "recipes/php-fpm.toml",
        include_str!("../../recipes/php-fpm.toml"),
    ),
    (
        "recipes/postgresql.toml",
        include_str!("../../recipes/postgresql.toml"),
    ),
    (
        "recipes/redis.toml",
        include_str!("../../recipes/redis.toml"),
    ),
    (
        "recipes/squid.toml",
        include_str!("../../recipes/squid.toml"),
    ),
    (
        "recipes/tinyproxy.toml",
        include_str!("../../recipes/tinyproxy.toml"),
    ),
];

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
    /// A regex or glob does not compile, or a field is missing.
    #[error("recipe `{file}`: `{field}`: {message}")]
    Pattern {
        /// The recipe file.
        file: String,
        /// Which field.
        field: String,
        /// The compiler's message.
        message: String,
    },
    /// A recipe file cannot be read.
    #[error("cannot read recipe `{file}`: {message}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        message: String,
    },
    /// `--recipe NAME` names no built-in recipe and no file.
    #[error("no recipe `{name}`: it is neither a built-in recipe ({}) nor a file", builtin_names().join(", "))]
    Unknown {
        /// What was asked for.
        name: String,
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

/// A directive that carries a listen port, which the conversion moves by the port map.
#[derive(Debug, Clone)]
pub struct PortPattern {
    /// Its name in messages (`listen`, `Listen`, `VirtualHost`).
    pub directive: String,
    /// The regex, with a `port` group.
    pub regex: Regex,
    /// Globs of other files where the port is moved too (entrypoint scripts); the config
    /// files always.
    pub files: Option<Vec<String>>,
}

/// Text to add to a config when a directive is missing.
#[derive(Debug, Clone)]
pub struct Insert {
    /// The line after which to insert (a block opener such as `http {`); `None`: at the
    /// top of the first config file.
    pub into: Option<Regex>,
    /// The text, one directive per line.
    pub text: String,
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
    /// Only when this path exists in the image.
    pub when: Option<ImagePath>,
    /// Where the conversion moves it (the directive's value is replaced).
    pub redirect: Option<String>,
    /// What the conversion adds when no directive names the path.
    pub insert: Option<Insert>,
    /// The conversion makes the directory (the fixed path, or the one the directive
    /// names) `UID:0` and group-writable, when it exists.
    pub make_writable: bool,
    /// ... and creates it when it does not (a directory the init system makes at boot,
    /// such as Debian's /run/php).
    pub create: bool,
}

/// A directory the service must own, with a mode it checks (PostgreSQL's data directory:
/// its owner, 0700). It is not made group-writable: it keeps the runtime user as owner
/// and its mode, and its parent is the writable mount, where a process running as any UID
/// in group 0 creates it at start.
#[derive(Debug, Clone)]
pub struct Owned {
    /// What it is, for messages.
    pub what: String,
    /// The config's environment variable that names it, when set.
    pub env: Option<String>,
    /// The path when the variable is not set.
    pub path: String,
    /// The mode the service requires.
    pub mode: u32,
}

impl Owned {
    /// The directory in an image whose config has this `Env`.
    pub fn resolve(&self, env: &[String]) -> ImagePath {
        let named = self.env.as_deref().and_then(|name| {
            env.iter().find_map(|kv| {
                kv.split_once('=')
                    .filter(|(k, v)| *k == name && v.starts_with('/'))
                    .map(|(_, v)| v.to_string())
            })
        });
        ImagePath::new(named.as_deref().unwrap_or(&self.path))
    }
}

/// A file or directory the service reads that only root (or its group) may (private
/// keys, a config `root:svc 0640`): the conversion makes it the runtime user's, group 0,
/// readable by both.
#[derive(Debug, Clone)]
pub struct Readable {
    /// What it is, for messages.
    pub what: String,
    /// The path, or a glob of paths (every file and directory it matches).
    pub path: ImagePath,
}

/// Whether a recipe's path is a glob (`/var/lib/knot/**`) rather than one path.
pub fn is_glob(path: &str) -> bool {
    path.contains(['*', '?', '[', '{'])
}

/// Where the service logs.
#[derive(Debug, Clone)]
pub struct Logs {
    /// A directive whose group 1 is a log path.
    pub config: Option<Regex>,
    /// The paths when no directive names one.
    pub default: Vec<String>,
    /// Where the conversion points log files that are not streams (`/dev/stdout`).
    pub to: Option<String>,
}

/// What an edit does.
#[derive(Debug, Clone)]
pub enum EditAction {
    /// Replaces every match of the pattern (`$1`, `${name}` refer to groups).
    Replace {
        /// The pattern.
        pattern: Regex,
        /// The replacement.
        with: String,
        /// What shows the edit is already done (in an image converted before).
        unless: Option<Regex>,
    },
    /// Comments out every line whose directive matches.
    Remove {
        /// The pattern.
        pattern: Regex,
    },
    /// Inserts text after the first line that matches `into` (or at the top), unless
    /// `unless` matches somewhere in the files already.
    Insert {
        /// Where.
        insert: Insert,
        /// The directive that makes the insert unnecessary.
        unless: Option<Regex>,
    },
}

/// An edit of the service's files.
#[derive(Debug, Clone)]
pub struct Edit {
    /// Its name in messages and reports.
    pub name: String,
    /// Globs of the files it edits; `None`: the service's config files.
    pub files: Option<Vec<String>>,
    /// What it does.
    pub action: EditAction,
    /// Whether matching nothing is fine. Otherwise it is an error: a silent no-op is how
    /// `sed`-based conversions break when a file changes.
    pub optional: bool,
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
    /// Its TOML text.
    pub source: String,
    /// Paths whose presence means the service is in the image.
    pub signature: Vec<ImagePath>,
    /// The service's own accounts, most preferred first.
    pub users: Vec<String>,
    /// The ports the service listens on (`53/udp`, `8080/tcp`), as `ExposedPorts` keys:
    /// exposed, and moved where the command line names them.
    pub listens: Vec<String>,
    /// Options of the service's command line that make it switch users (`--user`, `-u`):
    /// removed with their value, since switching users needs root.
    pub user_options: Vec<String>,
    /// Config entry points.
    pub entries: Vec<Entry>,
    /// Globs of files to keep while scanning (the config's and the edits').
    pub capture: Vec<String>,
    /// The include directive (group 1: path or glob).
    pub include: Option<Regex>,
    /// When the include directive names a directory: the glob of its files to read
    /// (`*.conf` for mosquitto's `include_dir`).
    pub include_files: Option<String>,
    /// Line comment prefix.
    pub comment: Option<String>,
    /// Where variables come from: a file and a regex (group 1 name, group 2 value).
    pub variables: Option<(ImagePath, Regex)>,
    /// Port directives.
    pub ports: Vec<PortPattern>,
    /// Runtime-writable paths.
    pub writable: Vec<Writable>,
    /// Directories the service must own.
    pub owned: Vec<Owned>,
    /// Files and directories the service reads that only root may.
    pub readable: Vec<Readable>,
    /// Log locations.
    pub logs: Vec<Logs>,
    /// Other edits, in order.
    pub edits: Vec<Edit>,
    /// Environment variables the conversion sets.
    pub env: Vec<(String, String)>,
}

/// The names of the built-in recipes.
pub fn builtin_names() -> Vec<String> {
    BUILTIN
        .iter()
        .map(|(file, _)| {
            file.trim_start_matches("recipes/")
                .trim_end_matches(".toml")
                .to_string()
        })
        .collect()
}

impl Recipe {
    /// The recipes built into unroot.
    pub fn builtin() -> Vec<Recipe> {
        BUILTIN
            .iter()
            .map(|(file, text)| {
                Recipe::parse(text, file).expect("built-in recipes are checked by the tests")
            })
            .collect()
    }

    /// A built-in recipe by name, or a recipe file.
    pub fn load(name_or_file: &str) -> Result<Recipe, RecipeError> {
        if let Some(r) = Recipe::builtin()
            .into_iter()
            .find(|r| r.name == name_or_file)
        {
            return Ok(r);
        }
        let path = std::path::Path::new(name_or_file);
        if !path.exists() {
            return Err(RecipeError::Unknown {
                name: name_or_file.to_string(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|e| RecipeError::Read {
            file: name_or_file.to_string(),
            message: e.to_string(),
        })?;
        Recipe::parse(&text, name_or_file)
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

/// Which recipes a conversion or analysis uses.
#[derive(Debug, Clone)]
pub struct Selection {
    /// Recipes that apply when their signature matches.
    pub candidates: Vec<Recipe>,
    /// Recipes that apply whatever the image holds (`--recipe`).
    pub forced: Vec<Recipe>,
}

impl Selection {
    /// The built-in recipes (unless `no_builtin`) plus the forced ones.
    pub fn new(no_builtin: bool, forced: Vec<Recipe>) -> Selection {
        let candidates = if no_builtin {
            Vec::new()
        } else {
            Recipe::builtin()
                .into_iter()
                .filter(|b| !forced.iter().any(|f| f.name == b.name))
                .collect()
        };
        Selection { candidates, forced }
    }

    /// The digest of the selection: of each recipe's name and text, candidates then
    /// forced ones, in order. Converted images carry it, so a bot can tell an image
    /// converted with other recipes from an up-to-date one.
    pub fn digest(&self) -> crate::model::Digest {
        let mut text = Vec::new();
        for (kind, recipes) in [("candidate", &self.candidates), ("forced", &self.forced)] {
            for r in recipes {
                for part in [kind, &r.name, &r.source] {
                    text.extend_from_slice(&(part.len() as u64).to_be_bytes());
                    text.extend_from_slice(part.as_bytes());
                }
            }
        }
        crate::model::Digest::sha256_of(&text)
    }

    /// Every recipe of the selection.
    pub fn all(&self) -> Vec<Recipe> {
        self.candidates
            .iter()
            .chain(&self.forced)
            .cloned()
            .collect()
    }
}

impl Default for Selection {
    fn default() -> Self {
        Selection::new(false, Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_recipes_load() {
        let recipes = Recipe::builtin();
        assert_eq!(
            recipes.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            [
                "apache",
                "caddy",
                "dnsmasq",
                "haproxy",
                "knot",
                "lighttpd",
                "mariadb",
                "memcached",
                "mosquitto",
                "nginx",
                "nsd",
                "php-fpm",
                "postgresql",
                "redis",
                "squid",
                "tinyproxy"
            ]
        );
    }

    #[test]
    fn selections_differ_in_digest_by_recipe_text_and_role() {
        let builtin = Selection::default();
        assert_eq!(builtin.digest(), Selection::default().digest());
        let none = Selection::new(true, Vec::new());
        assert_ne!(builtin.digest(), none.digest());
        let nginx = Recipe::builtin()
            .into_iter()
            .find(|r| r.name == "nginx")
            .unwrap();
        let forced = Selection::new(false, vec![nginx.clone()]);
        assert_ne!(
            forced.digest(),
            builtin.digest(),
            "forcing a recipe is another set"
        );
        let mut edited = nginx;
        edited.source.push_str("\n# a comment\n");
        assert_ne!(
            Selection::new(false, vec![edited]).digest(),
            forced.digest()
        );
    }

    #[test]
    fn create_needs_a_fixed_path_made_writable() {
        let base = "name = \"x\"\nsummary = \"x\"\n[match]\nany = [\"/x\"]\n[[writable]]\nwhat = \"run dir\"\nkind = \"dir\"\n";
        for body in [
            "path = \"/run/x\"\ncreate = true\n",
            "config = 'dir (\\S+)'\nmake_writable = true\ncreate = true\n",
        ] {
            let err = Recipe::parse(&format!("{base}{body}"), "x.toml").unwrap_err();
            assert!(err.to_string().contains("writable[0].create"), "{err}");
        }
        let ok = Recipe::parse(
            &format!("{base}path = \"/run/x\"\nmake_writable = true\ncreate = true\n"),
            "x.toml",
        )
        .unwrap();
        assert!(ok.writable[0].create);
    }

    #[test]
    fn readable_paths_are_kept_while_scanning_globs_as_globs() {
        let base = "name = \"x\"\nsummary = \"x\"\n[match]\nany = [\"/x\"]\n";
        let r = Recipe::parse(
            &format!("{base}[[readable]]\nwhat = \"keys\"\npath = \"/etc/x/key[1]\"\n[[readable]]\nwhat = \"zones\"\npath = \"/var/lib/x/**/*.zone\"\n"),
            "x.toml",
        )
        .unwrap();
        let set = capture_set(&[r]);
        assert!(set.is_match("/var/lib/x/a/b.zone"));
        assert!(set.is_match("/var/lib/x/b.zone"));
        assert!(!set.is_match("/var/lib/x/journal.mdb"));
        assert!(set.is_match("/etc/x/key1"));
        let err = Recipe::parse(
            &format!("{base}[[readable]]\nwhat = \"x\"\npath = \"/etc/x/{{a\"\n"),
            "x.toml",
        )
        .unwrap_err();
        assert!(err.to_string().contains("readable[0].path"), "{err}");
        let err = Recipe::parse(
            &format!("{base}[[readable]]\nwhat = \"x\"\npath = \"etc/x\"\n"),
            "x.toml",
        )
        .unwrap_err();
        assert!(err.to_string().contains("an absolute path"), "{err}");
    }

    #[test]
    fn the_documented_schema_is_a_recipe() {
        let doc = include_str!("../../recipes/README.md");
        let start = doc
            .find("```toml\n")
            .expect("recipes/README.md has a toml block")
            + 8;
        let len = doc[start..].find("```").unwrap();
        let recipe = Recipe::parse(&doc[start..start + len], "recipes/README.md").unwrap();
        assert_eq!(recipe.name, "nginx");
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
}
