//! `unroot completions SHELL` and `unroot man DIR`: the shell completion scripts and man
//! pages, made from the same clap definitions as `--help`.

use crate::control::FileError;
use std::path::Path;

use clap::CommandFactory;

use crate::error::Error;

use super::Cli;

/// The completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> String {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "unroot", &mut out);
    String::from_utf8(out).expect("completion scripts are text")
}

/// Writes `unroot.1` and a page per subcommand (`unroot-convert.1`, `unroot-recipes-list.1`,
/// ...) into `dir`; returns what it wrote, one path a line.
pub fn man_pages(dir: &Path) -> Result<String, Error> {
    let io = FileError::of;
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let mut written = String::new();
    let mut pages = Vec::new();
    collect(Cli::command().name("unroot"), "unroot", &mut pages);
    for (name, command) in pages {
        let path = dir.join(format!("{name}.1"));
        let mut page = Vec::new();
        clap_mangen::Man::new(command.name(name.clone()))
            .render(&mut page)
            .map_err(io("render the man page", &path))?;
        // Written whole or not at all: a reader never finds half a page.
        let tmp = dir.join(format!(".{name}.1.tmp"));
        std::fs::write(&tmp, page).map_err(io("write", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("rename into place", &path))?;
        written.push_str(&format!("{}\n", path.display()));
    }
    Ok(written)
}

/// The command and its subcommands, each named `parent-child`.
fn collect(command: clap::Command, name: &str, out: &mut Vec<(String, clap::Command)>) {
    let mut command = command;
    command.build();
    for sub in command.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        collect(sub.clone(), &format!("{name}-{}", sub.get_name()), out);
    }
    out.push((name.to_string(), command));
}
