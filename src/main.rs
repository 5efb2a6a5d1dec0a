//! The `unroot` binary: parse the arguments, call the library, render errors with hints,
//! exit with the documented code.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use unroot::cli::{Cli, Command};
use unroot::error::exit;
use unroot::pipeline;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (mut progress, notify) = unroot::cli::progress::for_stderr(cli.quiet);
    let result = match &cli.command {
        Command::Convert(args) => unroot::cli::convert::request(args)
            .and_then(|mut request| {
                request.image.registry.notify = notify.clone();
                pipeline::convert(&request, progress.as_mut())
            })
            .map(|outcome| {
                let gate = args
                    .fail_on
                    .severity()
                    .is_some_and(|s| unroot::cli::convert::fails(&outcome, s));
                (unroot::cli::convert::render(&outcome, args.format), gate)
            }),
        Command::Analyze(args) => unroot::cli::image_request(&args.image, &args.plan)
            .and_then(|mut request| {
                request.registry.notify = notify.clone();
                pipeline::analyze(&request, progress.as_mut())
            })
            .map(|analysis| {
                let gate = args
                    .fail_on
                    .severity()
                    .is_some_and(|s| unroot::cli::analyze::fails(&analysis, s));
                (unroot::cli::analyze::render(args, &analysis), gate)
            }),
        Command::Recipes(command) => unroot::cli::recipes::run(command).map(|text| (text, false)),
    };
    // Bars are cleared before the result or the error is printed.
    drop(progress);
    match result {
        Ok((text, gate)) => {
            // A closed pipe (`| head`) is not an error worth reporting.
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            ExitCode::from(if gate { exit::FINDINGS } else { exit::SUCCESS })
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
