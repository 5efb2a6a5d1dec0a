//! The `unroot` binary: parse the arguments, make a session, call the library, render the
//! result or the error with its hint, exit with the documented code.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use unroot::cli::{Cli, Command};
use unroot::control::secrets::redact;
use unroot::error::exit;
use unroot::pipeline::{ConvertRequest, ImageRequest};

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    let events = unroot::cli::progress::for_stderr(cli.quiet);
    let result = match &cli.command {
        Command::Convert(args) => {
            ConvertRequest::new(&args.source, &args.plan.options(), &args.options())
                .and_then(|request| args.plan.session(events.clone())?.convert(&request))
                .map(|outcome| unroot::cli::convert::render(args, &outcome))
        }
        Command::Analyze(args) => ImageRequest::new(&args.image, &args.plan.options())
            .and_then(|request| args.plan.session(events.clone())?.analyze(&request))
            .map(|analysis| unroot::cli::analyze::render(args, &analysis)),
        Command::Recipes(command) => unroot::cli::recipes::run(command).map(|text| (text, false)),
    };
    // Bars are cleared before the result or the error is printed.
    drop(events);
    match result {
        Ok((text, gate)) => {
            // A closed pipe (`| head`) is not an error worth reporting.
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            ExitCode::from(if gate { exit::FINDINGS } else { exit::SUCCESS })
        }
        Err(e) => {
            // Every message already carries its cause, so the chain is not printed again.
            // No secret is printed, whatever put it in the message.
            eprintln!("error: {}", redact(&e.to_string()));
            if let Some(hint) = e.hint() {
                eprintln!("\nhint: {}", redact(&hint));
            }
            ExitCode::from(e.exit_code())
        }
    }
}

/// Every layer is read by threads of its own, and glibc gives each thread that allocates an
/// arena of its own, which keeps what it freed: two arenas hold the same work in 1-2 MiB
/// less memory (measured by `benches/convert.sh`) at no cost in time.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable of the allocator; it is called before any thread
    // is started.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
