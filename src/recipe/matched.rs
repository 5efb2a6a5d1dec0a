//! A recipe that matches an image, with the service's config files as found in it.

use std::collections::BTreeMap;

use super::{config_files, variables, ConfigFile, Recipe, Selection};
use crate::layer::{ImagePath, MergedView};

/// A recipe that matched, with the service's config as found in the image.
#[derive(Debug)]
pub struct MatchedRecipe<'a> {
    /// The recipe.
    pub recipe: &'a Recipe,
    /// The signature file that made it match.
    pub signature: ImagePath,
    /// The service's config files, following includes.
    pub files: Vec<ConfigFile>,
    /// Variables from the image (Debian's envvars).
    pub vars: BTreeMap<String, String>,
}

impl<'a> MatchedRecipe<'a> {
    /// The recipes of a selection that apply to the view: candidates whose signature
    /// matches, and forced ones that find their signature or a config file (a forced
    /// recipe with nothing of its service in the image is no match; the plan reports it).
    pub fn find(selection: &'a Selection, view: &MergedView) -> Vec<MatchedRecipe<'a>> {
        let found = |r: &'a Recipe, forced: bool| {
            let signature = match r.matches(view) {
                Some(s) => s,
                None if forced => ImagePath::root(),
                None => return None,
            };
            let vars = variables(r, view);
            let files = config_files(r, view, &vars);
            if signature.is_root() && files.is_empty() {
                return None;
            }
            Some(MatchedRecipe {
                recipe: r,
                signature,
                files,
                vars,
            })
        };
        selection
            .candidates
            .iter()
            .filter_map(|r| found(r, false))
            .chain(selection.forced.iter().filter_map(|r| found(r, true)))
            .collect()
    }
}

/// What is kept of a matched recipe once the image's view is gone: for reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecipeMatch {
    /// The recipe's name.
    pub name: String,
    /// What it is for.
    pub summary: String,
    /// The file that made it match (`/` for a recipe forced with `--recipe`).
    pub signature: ImagePath,
    /// The service's config files found, following includes.
    pub config_files: Vec<ImagePath>,
}

impl MatchedRecipe<'_> {
    /// What reports say of it.
    pub fn summary(&self) -> RecipeMatch {
        RecipeMatch {
            name: self.recipe.name.clone(),
            summary: self.recipe.summary.clone(),
            signature: self.signature.clone(),
            config_files: self.files.iter().map(|f| f.path.clone()).collect(),
        }
    }
}
