//! The `unroot` binary: parse the arguments, call the library, render errors with hints,
//! exit with the documented code.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use unroot::cli::{Cli, Command};
use unroot::error::exit;
use unroot::pipeline::{self, Progress};

/// Progress lines on stderr.
struct Stderr;

impl Progress for Stderr {
    fn message(&mut self, line: &str) {
        eprintln!("unroot: {line}");
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Convert(args) => unroot::cli::convert::request(args).and_then(|request| {
            let mut progress: Box<dyn Progress> = if cli.quiet {
                Box::new(pipeline::Silent)
            } else {
                Box::new(Stderr)
            };
            pipeline::convert(&request, progress.as_mut())
        }),
    };
    match result {
        Ok(report) => {
            let text = unroot::cli::convert::render(&report);
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`| head`) is not an error worth reporting.
            let _ = stdout.write_all(text.as_bytes());
            ExitCode::from(exit::SUCCESS)
        }
        Err(e) => {
            // Every message already carries its cause, so the chain is not printed again.
            eprintln!("error: {e}");
            if let Some(hint) = e.hint() {
                eprintln!("\nhint: {hint}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}
