//! The `unroot` binary: parse the arguments, make a session, call the library, render the
//! result or the error with its hint, exit with the documented code.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use unroot::cli::{Cli, Command};
use unroot::control::secrets::redact;
use unroot::control::Cancel;
use unroot::error::exit;
use unroot::pipeline::{ConvertRequest, ImageRequest};

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    #[cfg(feature = "serve")]
    if let Command::Serve(args) = &cli.command {
        return serve(args);
    }
    let events = unroot::cli::progress::for_stderr(cli.quiet);
    let cancel = Cancel::new();
    let signal = stop_on_signals(&cancel);
    let session = |plan: &unroot::cli::PlanArgs| plan.session(events.clone(), cancel.clone());
    let result = match &cli.command {
        Command::Convert(args) => {
            ConvertRequest::new(&args.source, &args.plan.options(), &args.options())
                .and_then(|request| {
                    let outcome = session(&args.plan)?.convert(&request);
                    unroot::cli::learn::save_learned(args.write_recipe.as_deref(), &outcome)?;
                    outcome
                })
                .map(|outcome| gated(unroot::cli::convert::render(args, &outcome)))
        }
        Command::Learn(args) => unroot::cli::learn::request(args)
            .and_then(|request| unroot::cli::learn::run(args, &session(&args.plan)?, &request)),
        Command::Analyze(args) => ImageRequest::new(&args.image, &args.plan.options())
            .and_then(|request| session(&args.plan)?.analyze(&request))
            .map(|analysis| gated(unroot::cli::analyze::render(args, &analysis))),
        Command::Verify(args) => ImageRequest::new(&args.image, &args.plan.options())
            .and_then(|image| session(&args.plan)?.verify(&args.request(image)))
            .map(|v| {
                let code = if v.passed {
                    exit::SUCCESS
                } else {
                    exit::NOT_RUNNING
                };
                (unroot::report::verification::render(&v, args.format), code)
            }),
        Command::Recipes(command) => {
            unroot::cli::recipes::run(command).map(|text| (text, exit::SUCCESS))
        }
        Command::Completions { shell } => {
            Ok((unroot::cli::docs::completions(*shell), exit::SUCCESS))
        }
        Command::Man { dir } => unroot::cli::docs::man_pages(dir).map(|t| (t, exit::SUCCESS)),
        #[cfg(feature = "serve")]
        Command::Serve(_) => unreachable!("served above"),
    };
    let source = match &cli.command {
        Command::Convert(args) => Some(args.source.as_str()),
        Command::Analyze(args) => Some(args.image.as_str()),
        Command::Verify(args) => Some(args.image.as_str()),
        Command::Learn(args) => Some(args.image.as_str()),
        _ => None,
    };
    // Bars are cleared before the result or the error is printed.
    drop(events);
    // What learning found (the evidence, what it could not learn) is the report even when
    // nothing was written.
    if let (Command::Convert(args), Err(unroot::Error::NotLearned { learning, .. })) =
        (&cli.command, &result)
    {
        let _ = std::io::stdout()
            .lock()
            .write_all(unroot::report::learning::render(learning, args.report.format).as_bytes());
    }
    match result {
        Ok((text, code)) => {
            // A closed pipe (`| head`) is not an error worth reporting.
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            ExitCode::from(code)
        }
        Err(unroot::Error::Cancelled) if signal.load(Ordering::SeqCst) != 0 => {
            // What the run had written was removed as the work unwound.
            let number = signal.load(Ordering::SeqCst);
            let name = if number == SIGTERM {
                "SIGTERM"
            } else {
                "SIGINT"
            };
            eprintln!("error: stopped by {name}: nothing was written, and what this run had made was removed");
            ExitCode::from(128 + number as u8)
        }
        Err(e) => {
            // Every message already carries its cause, so the chain is not printed again.
            // No secret is printed, whatever put it in the message.
            eprintln!("error: {}", redact(&e.to_string()));
            let hints: Vec<String> = e
                .hint()
                .into_iter()
                .chain(source.and_then(|s| e.local_path_hint(s)))
                .collect();
            if !hints.is_empty() {
                eprintln!();
            }
            for hint in hints {
                eprintln!("hint: {}", redact(&hint));
            }
            ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(feature = "serve")]
/// `unroot serve`: logs to stderr (text or JSON lines; `RUST_LOG` filters, default
/// `info`), runs until SIGTERM or SIGINT.
fn serve(args: &unroot::cli::ServeArgs) -> ExitCode {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match args.log_format {
        unroot::cli::LogFormat::Json => logs.json().init(),
        unroot::cli::LogFormat::Text => logs.init(),
    }
    let session = match args.session_options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("error: {}", redact(&e.to_string()));
            return ExitCode::from(e.exit_code());
        }
    };
    match unroot::serve::server::serve(args.options(), session) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", redact(&e.to_string()));
            if let Some(hint) = e.hint() {
                eprintln!("\nhint: {}", redact(&hint));
            }
            ExitCode::from(exit::LOCAL)
        }
    }
}

/// The text of a report and its exit code: `--fail-on` tripped or not.
fn gated((text, gate): (String, bool)) -> (String, u8) {
    (text, if gate { exit::FINDINGS } else { exit::SUCCESS })
}

/// SIGINT and SIGTERM cancel the job: it stops at its next wait, removes what it made, and
/// the process exits with 128 + the signal. A second signal ends the process at once.
/// Returns where the first signal's number is kept (0 until one comes).
fn stop_on_signals(cancel: &Cancel) -> Arc<AtomicI32> {
    let seen = Arc::new(AtomicI32::new(0));
    let Ok(mut signals) = Signals::new([SIGINT, SIGTERM]) else {
        return seen;
    };
    let (cancel, first) = (cancel.clone(), seen.clone());
    std::thread::spawn(move || {
        for number in signals.forever() {
            if first
                .compare_exchange(0, number, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                std::process::exit(128 + number);
            }
            cancel.cancel();
        }
    });
    seen
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
