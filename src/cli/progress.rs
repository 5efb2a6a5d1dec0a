//! Progress on stderr: bars (per transfer and for the stage) when stderr is a terminal,
//! one plain line per step otherwise, nothing with `-q`.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::pipeline::{Meter, Progress, Silent};
use crate::transport::registry::Notify;

/// The progress display for a run, and where registry retry messages go.
pub fn for_stderr(quiet: bool) -> (Box<dyn Progress>, Notify) {
    if quiet {
        (Box::new(Silent), Notify::default())
    } else if std::io::stderr().is_terminal() {
        let bars = Bars::new();
        let multi = bars.multi.clone();
        let notify = Notify::to(move |line| {
            let _ = multi.println(format!("unroot: {line}"));
        });
        (Box::new(bars), notify)
    } else {
        (
            Box::new(Lines),
            Notify::to(|line| eprintln!("unroot: {line}")),
        )
    }
}

/// One line per step on stderr.
pub struct Lines;

impl Progress for Lines {
    fn message(&mut self, line: &str) {
        eprintln!("unroot: {line}");
    }
}

/// Bars on a terminal: one per transfer (bytes, rate) above one for the stage.
pub struct Bars {
    multi: MultiProgress,
    stage: Option<ProgressBar>,
}

impl Bars {
    fn new() -> Bars {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)),
            stage: None,
        }
    }

    fn end_stage(&mut self) {
        if let Some(bar) = self.stage.take() {
            bar.finish_and_clear();
        }
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("the templates are valid")
        .progress_chars("=> ")
}

impl Progress for Bars {
    fn message(&mut self, line: &str) {
        let _ = self.multi.println(format!("unroot: {line}"));
    }

    fn stage(&mut self, label: &str, total: u64) {
        self.end_stage();
        let bar = self.multi.add(ProgressBar::new(total));
        bar.set_style(style(
            "{msg:<24} [{bar:30}] {binary_bytes:>10}/{binary_total_bytes:<10} {binary_bytes_per_sec:>12} eta {eta}",
        ));
        bar.set_message(label.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        self.stage = Some(bar);
    }

    fn meter(&mut self, label: &str, total: u64) -> Arc<dyn Meter> {
        let bar = ProgressBar::new(total);
        let bar = match &self.stage {
            Some(stage) => self.multi.insert_before(stage, bar),
            None => self.multi.add(bar),
        };
        bar.set_style(style(
            "{msg:<24} [{bar:30}] {binary_bytes:>10}/{binary_total_bytes:<10} {binary_bytes_per_sec:>12}",
        ));
        bar.set_message(label.to_string());
        bar.tick();
        Arc::new(BarMeter {
            bar,
            stage: self.stage.clone(),
        })
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
