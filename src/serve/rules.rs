//! The bot's rules file: where it listens, where its state lives, and which repositories it
//! converts to where.
//!
//! ```toml
//! listen = "127.0.0.1:8686"
//! state = "sqlite:/var/lib/unroot/state.db"   # or postgres://user:pass@host/db
//! webhook_token_file = "/etc/unroot/hook-token"
//!
//! [[rule]]
//! source = "registry.example:5000/library/*"  # repository glob; all tags
//! exclude_tags = ["*-unprivileged"]
//! destination = "{registry}/{repository}:{tag}-unprivileged"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobBuilder, GlobMatcher};
use regex::Regex;
use serde::Deserialize;

use super::hooks::ImageEvent;
pub use super::state::StateStore;

/// A rules file that cannot be used, naming the file and what to change.
#[derive(Debug, thiserror::Error)]
#[error("rules file `{file}`: {reason}")]
pub struct RulesError {
    /// The file.
    pub file: String,
    /// What is wrong (for TOML errors, with line and column).
    pub reason: String,
}

/// The whole file.
#[derive(Debug)]
pub struct ServeConfig {
    /// The address the hooks and the API listen on.
    pub listen: SocketAddr,
    /// The state store.
    pub state: StateStore,
    /// The file holding the secret every hook must present.
    pub webhook_token_file: PathBuf,
    /// The rules, in the file's order; the first that matches an image applies.
    pub rules: Vec<Rule>,
    /// Settings per registry host (`host[:port]`).
    pub registries: std::collections::BTreeMap<String, RegistrySettings>,
}

/// What the rules file says about one registry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySettings {
    /// How many jobs at once may read from it or write to it.
    pub concurrency: Option<usize>,
    /// An auth file (`auth.json`, docker's `config.json`) with its credentials, read
    /// before the usual ones.
    pub auth_file: Option<PathBuf>,
}

/// One rule: a repository glob and where its conversions go.
#[derive(Debug)]
pub struct Rule {
    /// `registry/repository` glob, as written.
    pub source: String,
    matcher: GlobMatcher,
    exclude: Vec<GlobMatcher>,
    /// The destination template, as written.
    pub destination: String,
    own: Regex,
    /// Platforms to convert (`linux/amd64`); all when empty.
    pub platforms: Vec<String>,
    /// Recipes to apply besides the built-in ones (names or files).
    pub recipes: Vec<String>,
    /// The runtime user id, instead of the one the conversion picks.
    pub uid: Option<u32>,
    /// The runtime group id.
    pub gid: Option<u32>,
    /// Port moves, `FROM:TO`.
    pub ports: Vec<String>,
    /// Run `unroot verify` before pushing.
    pub verify: bool,
    /// Learn by running the image first (`unroot convert --learn`), and push only what
    /// served.
    pub learn: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listen: String,
    state: String,
    webhook_token_file: PathBuf,
    #[serde(default)]
    rule: Vec<RuleFile>,
    #[serde(default)]
    registries: std::collections::BTreeMap<String, RegistrySettings>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    source: String,
    #[serde(default)]
    exclude_tags: Vec<String>,
    destination: String,
    #[serde(default)]
    platforms: Vec<String>,
    #[serde(default)]
    recipes: Vec<String>,
    uid: Option<u32>,
    gid: Option<u32>,
    #[serde(default)]
    ports: Vec<String>,
    #[serde(default)]
    verify: bool,
    #[serde(default)]
    learn: bool,
}

const PLACEHOLDERS: [&str; 4] = ["{registry}", "{repository}", "{name}", "{tag}"];

/// A glob where `*` stays inside one path segment and `**` crosses them.
fn glob(pattern: &str) -> Result<GlobMatcher, String> {
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|g: Glob| g.compile_matcher())
        .map_err(|e| e.to_string())
}

/// A regex matching every reference `template` can produce, for telling the bot's own
/// outputs from new sources.
fn template_regex(template: &str) -> Result<Regex, String> {
    let mut re = String::from("^");
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        re.push_str(&regex::escape(&rest[..open]));
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("an unclosed `{{` in `{template}`"))?;
        let name = &rest[open..open + close + 1];
        re.push_str(match name {
            "{registry}" => "[^/]+",
            "{repository}" => "[^:@]+",
            "{name}" => "[^/:@]+",
            "{tag}" => "[A-Za-z0-9_][A-Za-z0-9_.-]*",
            other => {
                return Err(format!(
                    "unknown placeholder `{other}` in `{template}`; there are {}",
                    PLACEHOLDERS.join(", ")
                ))
            }
        });
        rest = &rest[open + close + 1..];
    }
    re.push_str(&regex::escape(rest));
    re.push('$');
    Regex::new(&re).map_err(|e| e.to_string())
}

impl ServeConfig {
    /// Reads and checks a rules file.
    pub fn load(path: &Path) -> Result<ServeConfig, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|e| RulesError {
            file: path.display().to_string(),
            reason: e.to_string(),
        })?;
        ServeConfig::parse(&text, &path.display().to_string())
    }

    /// Parses rules text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<ServeConfig, RulesError> {
        let err = |reason: String| RulesError {
            file: file.to_string(),
            reason,
        };
        let f: File =
            toml::from_str(text).map_err(|e| err(e.to_string().trim_end().to_string()))?;
        let listen = f.listen.parse().map_err(|_| {
            err(format!(
                "`listen = \"{}\"`: write an address and port, `127.0.0.1:8686`",
                f.listen
            ))
        })?;
        let state = StateStore::parse(&f.state).map_err(err)?;
        if f.rule.is_empty() {
            return Err(err("no `[[rule]]`: the bot would convert nothing".into()));
        }
        let rules = f
            .rule
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let at = |what: &str, e: String| err(format!("rule[{i}].{what}: {e}"));
                if !r.source.contains('/') {
                    return Err(at(
                        "source",
                        format!(
                            "`{}` names no registry: write `HOST[:PORT]/REPOSITORY-GLOB`",
                            r.source
                        ),
                    ));
                }
                let matcher = glob(&r.source).map_err(|e| at("source", e))?;
                let exclude = r
                    .exclude_tags
                    .iter()
                    .map(|t| glob(t))
                    .collect::<Result<_, _>>()
                    .map_err(|e| at("exclude_tags", e))?;
                let own = template_regex(&r.destination).map_err(|e| at("destination", e))?;
                if ["one.example/a:1", "two.example:5000/b/c:v2"]
                    .iter()
                    .all(|sample| own.is_match(sample))
                {
                    return Err(at(
                        "destination",
                        format!("`{}` would name the sources themselves: add a tag suffix (`{{tag}}-unprivileged`) or another registry or repository", r.destination),
                    ));
                }
                if !r.destination.contains("{tag}") && !r.destination.contains('@') {
                    return Err(at(
                        "destination",
                        format!(
                            "`{}` has no `{{tag}}`: every tag would convert to one destination",
                            r.destination
                        ),
                    ));
                }
                Ok(Rule {
                    source: r.source,
                    matcher,
                    exclude,
                    destination: r.destination,
                    own,
                    platforms: r.platforms,
                    recipes: r.recipes,
                    uid: r.uid,
                    gid: r.gid,
                    ports: r.ports,
                    verify: r.verify,
                    learn: r.learn,
                })
            })
            .collect::<Result<_, _>>()?;
        for (host, settings) in &f.registries {
            if host.contains('/') || host.is_empty() {
                return Err(err(format!(
                    "registries.\"{host}\": name a registry host, `registry.example:5000`"
                )));
            }
            if settings.concurrency == Some(0) {
                return Err(err(format!(
                    "registries.\"{host}\".concurrency: 0 would run nothing; give 1 or more"
                )));
            }
        }
        Ok(ServeConfig {
            listen,
            state,
            webhook_token_file: f.webhook_token_file,
            rules,
            registries: f.registries,
        })
    }

    /// What the rules make of an image event.
    pub fn route(&self, event: &ImageEvent) -> Route<'_> {
        let image = &event.image;
        self.route_name(image.registry(), image.repository(), image.tag())
    }

    /// What the rules make of `registry/repository` with `tag` (`None`: the repository
    /// as a whole, as the reconcile asks before listing its tags).
    pub fn route_name(&self, registry: &str, repository: &str, tag: Option<&str>) -> Route<'_> {
        let full = format!("{registry}/{repository}");
        let reference = match tag {
            Some(tag) => format!("{full}:{tag}"),
            None => full.clone(),
        };
        if self.rules.iter().any(|r| r.own.is_match(&reference)) {
            return Route::OwnOutput;
        }
        let Some(rule) = self.rules.iter().find(|r| r.matcher.is_match(&full)) else {
            return Route::NoRule;
        };
        if let Some(tag) = tag {
            if rule.exclude.iter().any(|g| g.is_match(tag)) {
                return Route::ExcludedTag;
            }
        }
        Route::Convert(rule)
    }
}

/// Where an event goes.
#[derive(Debug)]
pub enum Route<'a> {
    /// Convert with this rule.
    Convert(&'a Rule),
    /// No rule watches the repository.
    NoRule,
    /// The tag is excluded by the rule that watches the repository.
    ExcludedTag,
    /// The reference is one a rule writes: the bot's own output.
    OwnOutput,
}

impl Rule {
    /// The registry the rule watches and its repository pattern (`library/*`), as
    /// written; `None` for a source with no `/` (refused when the rules are read).
    pub fn watched(&self) -> Option<(&str, &str)> {
        self.source.split_once('/')
    }

    /// The destination for a source image and tag.
    pub fn destination_for(&self, registry: &str, repository: &str, tag: &str) -> String {
        let name = repository.rsplit('/').next().unwrap_or(repository);
        self.destination
            .replace("{registry}", registry)
            .replace("{repository}", repository)
            .replace("{name}", name)
            .replace("{tag}", tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = r#"
listen = "127.0.0.1:8686"
state = "sqlite:/var/lib/unroot/state.db"
webhook_token_file = "/etc/unroot/hook-token"

[[rule]]
source = "registry.example:5000/library/*"
exclude_tags = ["*-unprivileged"]
destination = "{registry}/{repository}:{tag}-unprivileged"

[[rule]]
source = "registry.example:5000/teams/**"
destination = "mirror.example/unprivileged/{name}:{tag}"
verify = true
ports = ["80:8000"]
"#;

    fn event(repository: &str, tag: &str) -> ImageEvent {
        event_at("registry.example:5000", repository, tag)
    }

    fn event_at(registry: &str, repository: &str, tag: &str) -> ImageEvent {
        ImageEvent::new(registry, repository, Some(tag), None, None).unwrap()
    }

    #[test]
    fn rules_route_images_and_know_their_own_outputs() {
        let c = ServeConfig::parse(RULES, "rules.toml").unwrap();
        assert_eq!(c.listen, "127.0.0.1:8686".parse().unwrap());
        assert_eq!(
            c.state,
            StateStore::Sqlite("/var/lib/unroot/state.db".into())
        );
        let Route::Convert(r) = c.route(&event("library/nginx", "1.27")) else {
            panic!()
        };
        assert_eq!(
            r.destination_for("registry.example:5000", "library/nginx", "1.27"),
            "registry.example:5000/library/nginx:1.27-unprivileged"
        );
        assert!(matches!(
            c.route(&event("library/nginx", "1.27-unprivileged")),
            Route::OwnOutput
        ));
        // `*` stays in one segment; `**` crosses.
        assert!(matches!(c.route(&event("library/a/b", "1")), Route::NoRule));
        let Route::Convert(r) = c.route(&event("teams/web/app", "2")) else {
            panic!()
        };
        assert!(r.verify);
        assert_eq!(
            r.destination_for("registry.example:5000", "teams/web/app", "2"),
            "mirror.example/unprivileged/app:2"
        );
        let elsewhere = event_at("other.example", "library/nginx", "1");
        assert!(matches!(c.route(&elsewhere), Route::NoRule));
        // An excluded tag that no destination produces.
        let c = ServeConfig::parse(
            &RULES.replace(
                "exclude_tags = [\"*-unprivileged\"]",
                "exclude_tags = [\"*-rc*\"]",
            ),
            "rules.toml",
        )
        .unwrap();
        assert!(matches!(
            c.route(&event("library/nginx", "2-rc1")),
            Route::ExcludedTag
        ));
        // The bot's pushes to another registry are its own too.
        let mirror = event_at("mirror.example", "unprivileged/app", "2");
        assert!(matches!(c.route(&mirror), Route::OwnOutput));
    }

    #[test]
    fn mistakes_name_the_file_the_field_and_the_fix() {
        let cases = [
            (
                RULES.replace("sqlite:/var/lib/unroot/state.db", "mysql://x"),
                "write `sqlite:/PATH/state.db` or `postgres://",
            ),
            (
                RULES.replace("127.0.0.1:8686", "localhost"),
                "`listen = \"localhost\"`: write an address and port",
            ),
            (
                RULES.replace("{tag}-unprivileged", "latest-unprivileged"),
                "rule[0].destination: ",
            ),
            (
                RULES.replace(":{tag}\"", ":{version}\""),
                "unknown placeholder `{version}`",
            ),
            (
                RULES.replace("registry.example:5000/library/*", "library"),
                "rule[0].source: `library` names no registry",
            ),
            (
                RULES.replace("verify = true", "verfiy = true"),
                "unknown field `verfiy`",
            ),
            (
                RULES.split("[[rule]]").next().unwrap().to_string(),
                "no `[[rule]]`",
            ),
            (
                RULES.replace("{tag}-unprivileged", "{tag}"),
                "would name the sources themselves",
            ),
            (
                format!("{RULES}\n[registries.\"r.example\"]\nconcurrency = 0\n"),
                "registries.\"r.example\".concurrency: 0 would run nothing",
            ),
            (
                format!("{RULES}\n[registries.\"r.example\"]\nconcurency = 2\n"),
                "unknown field `concurency`",
            ),
            (
                format!("{RULES}\n[registries.\"r.example/x\"]\nconcurrency = 2\n"),
                "name a registry host",
            ),
        ];
        for (text, want) in cases {
            let e = ServeConfig::parse(&text, "rules.toml")
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("rules file `rules.toml`: "), "{e}");
            assert!(e.contains(want), "{e:?} lacks {want:?}");
        }
        let e = ServeConfig::parse(
            &RULES.replace("verify = true", "verfiy = true"),
            "rules.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("line 14, column 1"), "{e}");
        assert_eq!(
            StateStore::parse("postgres://u:p@127.0.0.1/unroot"),
            Ok(StateStore::Postgres(
                "postgres://u:p@127.0.0.1/unroot".into()
            ))
        );
    }
}
