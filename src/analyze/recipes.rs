//! Recipes that do not apply: one matches the image but its edits do not (the service's
//! files are not what the recipe expects), or one asked for with `--recipe` finds nothing of
//! its service in the image; either way `unroot convert` would stop.

use super::{Analyzer, Facts, Finding, Fixer, Location, Rule, Severity};

/// The rules of this analyzer.
pub static RULES: [Rule; 1] = [Rule {
    id: "UR701",
    name: "recipe-does-not-apply",
    severity: Severity::Error,
    summary: "A recipe does not apply to the image",
    help: "The service is present but its files are not laid out as the recipe expects (a directive it must change is missing), or a recipe asked for with `--recipe` finds none of its service's files. `unroot convert` stops rather than write an image that fails at run time; `sed`-based conversions silently produce such images.",
    fix: "convert with `--no-recipes` (the generic conversion only) and edit the service's config yourself, or give a recipe that fits with `--recipe FILE`",
    fixer: Fixer::User,
    refs: &[],
}];

/// Reports recipes that cannot be applied.
pub struct Recipes;

impl Analyzer for Recipes {
    fn name(&self) -> &'static str {
        "recipes"
    }

    fn rules(&self) -> &'static [Rule] {
        &RULES
    }

    fn run(&self, facts: &Facts<'_>, out: &mut Vec<Finding>) {
        for problem in &facts.plan.recipe_problems {
            let at = facts
                .recipes
                .iter()
                .find(|m| m.recipe.name == problem.recipe())
                .map(|m| {
                    Location::file(
                        &m.signature,
                        facts.view.get(&m.signature).map(|n| n.layer),
                        None,
                    )
                })
                .unwrap_or_else(|| Location::config("recipes"));
            out.push(Finding::new(&RULES[0], at, problem.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Analyzed;

    #[test]
    fn a_debian_apache_without_its_envvars_lines() {
        let spec = r#"
[[layer]]
[[layer.entry]]
path = "/usr/sbin/apache2"
size = 10
mode = 0o755
[[layer.entry]]
path = "/etc/apache2/apache2.conf"
text = "Listen 80\n"
[[layer.entry]]
path = "/etc/apache2/envvars"
text = "export APACHE_RUN_USER=www-data\n"
"#;
        assert_eq!(
            Analyzed::from_spec(spec).run(&Recipes),
            ["UR701 error /usr/sbin/apache2 (layer 1): recipe `apache`: edit `run, lock and pid files to /tmp (envvars)` matched nothing in `/etc/apache2/envvars`"]
        );
    }

    #[test]
    fn a_recipe_that_applies_reports_nothing() {
        // Debian's Apache with the envvars lines its recipe edits: the recipe matches and
        // applies, so there is nothing to report (the same image without them is above).
        let spec = r#"
[[layer]]
[[layer.entry]]
path = "/usr/sbin/apache2"
size = 10
mode = 0o755
[[layer.entry]]
path = "/etc/apache2/apache2.conf"
text = "Listen 80\nPidFile ${APACHE_PID_FILE}\n"
[[layer.entry]]
path = "/etc/apache2/envvars"
text = "export APACHE_RUN_USER=www-data\nexport APACHE_RUN_DIR=/var/run/apache2\nexport APACHE_PID_FILE=/var/run/apache2/apache2.pid\nexport APACHE_LOCK_DIR=/var/lock/apache2\n"
"#;
        let analyzed = Analyzed::from_spec(spec);
        assert_eq!(analyzed.plan.recipes, ["apache"], "the recipe applied");
        assert_eq!(analyzed.run(&Recipes), Vec::<String>::new());
    }
}
