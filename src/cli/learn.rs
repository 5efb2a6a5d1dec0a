//! `unroot learn` (and `convert --learn --write-recipe`): the session learns; this writes
//! the recipe and renders the report.

use crate::control::FileError;
use std::path::Path;

use crate::cli::LearnArgs;
use crate::error::{exit, Error};
use crate::pipeline::{ConvertOptions, ConvertOutcome, ConvertRequest, LearnRequest, Session};

/// The learning these arguments ask for.
pub fn request(args: &LearnArgs) -> Result<LearnRequest, Error> {
    Ok(LearnRequest {
        conversion: ConvertRequest::new(
            &args.image,
            &args.plan.options(),
            &ConvertOptions {
                dry_run: true,
                ..ConvertOptions::default()
            },
        )?,
        options: args.options(),
    })
}

/// Learns, writes the recipe when asked, and returns the report with the exit code (5
/// when the result did not serve).
pub fn run(
    args: &LearnArgs,
    session: &Session,
    request: &LearnRequest,
) -> Result<(String, u8), Error> {
    let learning = session.learn(request)?;
    if let Some(file) = &args.write_recipe {
        write_recipe(file, &learning.recipe)?;
    }
    if let Some(file) = &args.save_traces {
        let runs: Vec<serde_json::Value> = learning
            .traces
            .iter()
            .map(|(run, trace)| serde_json::json!({"run": run, "trace": trace}))
            .collect();
        let mut text = serde_json::to_string_pretty(&runs).expect("traces serialize");
        text.push('\n');
        write_recipe(file, &text)?;
    }
    let mut text = crate::report::learning::render(&learning, args.format);
    if args.format == crate::report::Format::Text {
        text.push_str(&match &args.write_recipe {
            Some(f) => format!(
                "recipe {} written to {}\n",
                learning.recipe_name,
                f.display()
            ),
            None => format!(
                "recipe {}: save it with --write-recipe FILE\n",
                learning.recipe_name
            ),
        });
    }
    let code = if learning.proven {
        exit::SUCCESS
    } else {
        exit::NOT_RUNNING
    };
    Ok((text, code))
}

/// `convert --learn --write-recipe FILE`: the recipe learned, whether the conversion
/// was written or not.
pub fn save_learned(
    file: Option<&Path>,
    outcome: &Result<ConvertOutcome, Error>,
) -> Result<(), Error> {
    let Some(file) = file else {
        return Ok(());
    };
    let recipe = match outcome {
        Ok(ConvertOutcome::Image(c)) => c.learning.as_ref().map(|l| l.recipe.as_str()),
        Err(Error::NotLearned { learning, .. }) => Some(learning.recipe.as_str()),
        _ => None,
    };
    match recipe {
        Some(text) => write_recipe(file, text),
        None => Ok(()),
    }
}

/// Writes a file whole or not at all (a temporary file renamed into place).
fn write_recipe(file: &Path, text: &str) -> Result<(), Error> {
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let io = |op: &'static str| FileError::of(op, file);
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io("write"))?;
    std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(io("write"))?;
    tmp.persist(file).map_err(|e| io("write")(e.error))?;
    Ok(())
}
