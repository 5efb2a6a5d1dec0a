//! `unroot recipes list|show|check`.

use std::fmt::Write as _;

use crate::cli::RecipesCommand;
use crate::error::Error;
use crate::recipe::{Recipe, RecipeError};

/// Runs a `recipes` subcommand; returns what to print.
pub fn run(command: &RecipesCommand) -> Result<String, Error> {
    match command {
        RecipesCommand::List => {
            let mut out = String::new();
            let recipes = Recipe::builtin();
            let width = recipes.iter().map(|r| r.name.len()).max().unwrap_or(0);
            for r in &recipes {
                let signature: Vec<String> = r.signature.iter().map(|p| p.display()).collect();
                let _ = writeln!(
                    out,
                    "{:width$}  {} (matches {})",
                    r.name,
                    r.summary,
                    signature.join(", ")
                );
            }
            Ok(out)
        }
        RecipesCommand::Show { name } => Recipe::builtin()
            .into_iter()
            .find(|r| &r.name == name)
            .map(|r| r.source)
            .ok_or_else(|| Error::Recipe(RecipeError::Unknown { name: name.clone() })),
        RecipesCommand::Check { file } => {
            let r = Recipe::load(file)?;
            Ok(format!(
                "ok: recipe `{}` ({}): {} port directive{}, {} runtime path{}, {} edit{}\n",
                r.name,
                r.summary,
                r.ports.len(),
                plural(r.ports.len()),
                r.writable.len(),
                plural(r.writable.len()),
                r.edits.len(),
                plural(r.edits.len())
            ))
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
