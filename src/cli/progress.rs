//! Progress on stderr: bars (per transfer and for the stage) when stderr is a terminal,
//! one plain line per event otherwise, and with `-q` only the warnings (a registry
//! request tried again, a transfer resumed): a run that waits says why.

use crate::control::Locked;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::control::secrets::redact;
use crate::control::{Event, Events, Meter};

/// Where a run's events go: bars on a terminal, lines otherwise, only the warnings with
/// `quiet`.
pub fn for_stderr(quiet: bool) -> Arc<dyn Events> {
    if quiet {
        Arc::new(Warnings)
    } else if std::io::stderr().is_terminal() {
        Arc::new(Bars::new())
    } else {
        Arc::new(Lines)
    }
}

/// A line on stderr for each event that says why a run waits; nothing else.
pub struct Warnings;

impl Events for Warnings {
    fn event(&self, event: &Event<'_>) {
        if matches!(event, Event::Retry { .. } | Event::Resume { .. }) {
            eprintln!("unroot: {}", redact(&event.to_string()));
        }
    }
}

/// One line per event on stderr.
pub struct Lines;

impl Events for Lines {
    fn event(&self, event: &Event<'_>) {
        eprintln!("unroot: {}", redact(&event.to_string()));
    }
}

/// Bars on a terminal: one per transfer (bytes, rate) above one for the stage; events
/// print above the bars.
pub struct Bars {
    multi: MultiProgress,
    stage: Mutex<Option<ProgressBar>>,
}

impl Bars {
    fn new() -> Bars {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)),
            stage: Mutex::new(None),
        }
    }

    fn end_stage(&self) {
        if let Some(bar) = self.stage.locked().take() {
            bar.finish_and_clear();
        }
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("the templates are valid")
        .progress_chars("=> ")
}

impl Events for Bars {
    fn event(&self, event: &Event<'_>) {
        let _ = self
            .multi
            .println(format!("unroot: {}", redact(&event.to_string())));
    }

    fn stage(&self, label: &str, total: u64) {
        self.end_stage();
        let bar = self.multi.add(ProgressBar::new(total));
        bar.set_style(style(
            "{msg:<24} [{bar:30}] {binary_bytes:>10}/{binary_total_bytes:<10} {binary_bytes_per_sec:>12} eta {eta}",
        ));
        bar.set_message(label.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        *self.stage.locked() = Some(bar);
    }

    fn meter(&self, label: &str, total: u64) -> Arc<dyn Meter> {
        let stage = self.stage.locked().clone();
        let bar = ProgressBar::new(total);
        let bar = match &stage {
            Some(stage) => self.multi.insert_before(stage, bar),
            None => self.multi.add(bar),
        };
        bar.set_style(style(
            "{msg:<24} [{bar:30}] {binary_bytes:>10}/{binary_total_bytes:<10} {binary_bytes_per_sec:>12}",
        ));
        bar.set_message(label.to_string());
        bar.tick();
        Arc::new(BarMeter { bar, stage })
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        self.end_stage();
    }
}

struct BarMeter {
    bar: ProgressBar,
    stage: Option<ProgressBar>,
}

impl Meter for BarMeter {
    fn add(&self, bytes: u64) {
        self.bar.inc(bytes);
        if let Some(stage) = &self.stage {
            stage.inc(bytes);
            if stage.length().is_some_and(|l| stage.position() >= l) {
                stage.finish_and_clear();
            }
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
