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
    /// matches, and forced ones.
    pub fn find(selection: &'a Selection, view: &MergedView) -> Vec<MatchedRecipe<'a>> {
        let found = |r: &'a Recipe, forced: bool| {
            let signature = match r.matches(view) {
                Some(s) => s,
                None if forced => ImagePath::root(),
                None => return None,
            };
            let vars = variables(r, view);
            let files = config_files(r, view, &vars);
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
