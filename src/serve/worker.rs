//! What a worker does with one job: resolve the source's digest, skip it when its key is
//! done (in the state store, or in the registry: the destination already carries the
//! source digest and recipe set), else convert it as `unroot convert` would, push it, and
//! record the result. Registry failures that may pass are tried again with backoff; the
//! others fail the job with their reason.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;

use crate::control::secrets::redact;
use crate::control::{Cancel, Event, Events, Meter, NoMeter};
use crate::pipeline::ConvertOutcome;
use crate::report::Outcome;

use super::bot::{Admitted, Bot};
use super::job::Job;
use super::metrics::Metrics;
use super::plan::{plan, Failure};
use super::store::StoreError;

/// How a job ended.
#[derive(Debug)]
pub enum Ended {
    /// Done: what happened, the report, and the digest at the destination.
    Done {
        /// `converted`, `up to date`, `already converted`.
        outcome: &'static str,
        /// The conversion's report (JSON).
        report: Option<serde_json::Value>,
        /// The source digest, the key and the digest now at the destination.
        pushed: Option<(String, String, String)>,
    },
    /// Failed, with the reason.
    Failed(String),
    /// Stopped by a shutdown before it finished: back to the queue.
    Released,
}

/// Runs an admitted job to its end and records it, then lets it leave the running set.
/// Called on a blocking thread.
pub fn run(bot: &Bot, handle: &Handle, job: &Job, admitted: Admitted) -> Result<Ended, StoreError> {
    let ended = record(bot, handle, job, &admitted.cancel);
    drop(admitted);
    ended
}

fn record(bot: &Bot, handle: &Handle, job: &Job, cancel: &Cancel) -> Result<Ended, StoreError> {
    let started = Instant::now();
    let ended = attempt_all(bot, handle, job, cancel);
    let seconds = started.elapsed().as_secs_f64();
    match &ended {
        Ended::Done {
            outcome,
            report,
            pushed,
        } => {
            handle.block_on(
                bot.db.finish(
                    job,
                    outcome,
                    report.as_ref(),
                    pushed.as_ref().map(|(source, key, digest)| {
                        (key.as_str(), source.as_str(), digest.as_str())
                    }),
                ),
            )?;
            bot.metrics.ended(outcome, seconds);
            if *outcome == "converted" {
                let since_event = (super::store::now_ms() - job.created_ms).max(0) as f64 / 1000.0;
                bot.metrics.twin_pushed(since_event);
            }
            tracing::info!(job = %job.id, source = %job.subject, destination = %job.destination, outcome, seconds, "job done");
        }
        Ended::Failed(reason) => {
            handle.block_on(bot.db.fail(&job.id, reason))?;
            bot.metrics.ended("failed", seconds);
            tracing::warn!(job = %job.id, source = %job.subject, destination = %job.destination, reason = %reason, "job failed");
        }
        Ended::Released => {
            handle.block_on(bot.db.release(&job.id))?;
            tracing::info!(job = %job.id, source = %job.subject, "job released: the bot is stopping");
        }
    }
    // Its end is recorded, so its claim is stale already; removing it only keeps the
    // table small, and a failure to is no failure of the job.
    if let Err(e) = handle.block_on(bot.db.unclaim(&job.id)) {
        tracing::warn!(job = %job.id, error = %e, "a claim stays until it is taken over");
    }
    Ok(ended)
}

fn attempt_all(bot: &Bot, handle: &Handle, job: &Job, cancel: &Cancel) -> Ended {
    let (retries, first) = bot.job_retries;
    let mut wait = first;
    let mut attempt = 0;
    loop {
        if bot.stopping.load(Ordering::SeqCst) && cancel.is_cancelled() {
            return Ended::Released;
        }
        match convert(bot, handle, job, cancel) {
            Ok(ended) => return ended,
            Err(Failure::Store(e)) => return Ended::Failed(e.to_string()),
            // Whatever stopped once the token was cancelled stopped because of it.
            Err(Failure::Convert(_)) if cancel.is_cancelled() => return Ended::Released,
            Err(Failure::Convert(e)) => {
                let reason = match e.hint() {
                    Some(hint) => format!("{e} (hint: {hint})"),
                    None => e.to_string(),
                };
                let reason = redact(&reason);
                if let Some(kind) = e.registry_kind() {
                    bot.metrics.registry_error(kind);
                }
                if !e.may_pass() || attempt >= retries {
                    return Ended::Failed(reason);
                }
                attempt += 1;
                tracing::warn!(job = %job.id, attempt, wait_s = wait.as_secs(), reason = %reason, "job failed in a way that may pass; trying again");
                if cancel.sleep(wait).is_err() {
                    return Ended::Released;
                }
                wait = (wait * 2).min(Duration::from_secs(60));
            }
        }
    }
}

fn convert(bot: &Bot, handle: &Handle, job: &Job, cancel: &Cancel) -> Result<Ended, Failure> {
    let Some(rule) = bot.config.rules.get(job.rule as usize) else {
        return Ok(Ended::Failed(format!(
            "rule {} is no longer in the rules file; queue the image again",
            job.rule
        )));
    };
    let events: Arc<dyn Events> = Arc::new(JobEvents {
        job: job.id.clone(),
        metrics: bot.metrics.clone(),
        db: bot.db.clone(),
        handle: handle.clone(),
        noted: Default::default(),
    });
    let session = bot.session.job(events, cancel.clone());
    let (source, destination) = (job.source_image()?, job.destination_image()?);
    let planned = plan(&session, rule, &source, &destination)?;
    let (digest, key) = (planned.digest.clone(), planned.key.clone());
    handle.block_on(bot.db.resolved(&job.id, &digest.to_string(), &key))?;
    let done = match claim(bot, handle, job, &key, cancel)? {
        Claimed::Mine => planned.twin(bot, handle, &session)?,
        Claimed::DoneMeanwhile(done) => Some(done),
        Claimed::Cancelled => return Ok(Ended::Released),
    };
    if let Some(done) = done {
        return Ok(Ended::Done {
            outcome: "up to date",
            report: None,
            pushed: Some((digest.to_string(), key, done)),
        });
    }
    // A slot of each limited registry the conversion reads from or writes to (resolving
    // and the up-to-date checks are a request or two), taken in one order so that two
    // jobs never wait on each other.
    let mut hosts = vec![source.registry(), destination.registry()];
    hosts.sort_unstable();
    hosts.dedup();
    let mut permits = Vec::new();
    for host in hosts {
        if let Some(slots) = bot.slots.get(host) {
            if slots.available_permits() == 0 {
                tracing::info!(job = %job.id, registry = host, "waiting for a slot of the registry");
            }
            let permit = handle.block_on(async {
                tokio::select! {
                    p = slots.clone().acquire_owned() => p.ok(),
                    _ = wait_cancelled(cancel) => None,
                }
            });
            match permit {
                Some(p) => permits.push(p),
                None => return Ok(Ended::Released),
            }
        }
    }
    tracing::info!(job = %job.id, source = %job.subject, "converting");
    // A stop asked for now lets this job go on: it has the grace period, after which its
    // token is cancelled and it is released.
    let outcome = session.convert(&planned.request);
    tracing::info!(job = %job.id, ok = outcome.is_ok(), "conversion ended");
    drop(permits);
    let outcome = outcome?;
    let report = Outcome::of_conversion(&outcome).to_value();
    Ok(match &outcome {
        ConvertOutcome::Image(c) => Ended::Done {
            outcome: "converted",
            report: Some(report),
            pushed: Some((digest.to_string(), key, c.digest.to_string())),
        },
        ConvertOutcome::Index(i) => Ended::Done {
            outcome: "converted",
            report: Some(report),
            pushed: Some((digest.to_string(), key, i.digest.to_string())),
        },
        // The source is a conversion itself: copied to the destination as it is.
        ConvertOutcome::AlreadyConverted { copied_to, .. } => Ended::Done {
            outcome: "already converted",
            report: Some(report),
            pushed: copied_to
                .as_ref()
                .map(|(_, written)| (digest.to_string(), key, written.to_string())),
        },
    })
}

/// How waiting for a conversion's key ended.
enum Claimed {
    /// The key is this job's to convert (or to find up to date).
    Mine,
    /// Another job converted it while this one waited: its digest.
    DoneMeanwhile(String),
    /// The bot is stopping.
    Cancelled,
}

/// Takes the conversion `key` for `job`: at once when no other job holds it, else after
/// the job holding it ends (it finished the conversion, or failed and let go), checked
/// every quarter second. One job per key converts and pushes, whichever hook or replica
/// queued the others.
fn claim(
    bot: &Bot,
    handle: &Handle,
    job: &Job,
    key: &str,
    cancel: &Cancel,
) -> Result<Claimed, StoreError> {
    let mut said = false;
    loop {
        if let Some(done) = handle.block_on(bot.db.conversion(key))? {
            return Ok(Claimed::DoneMeanwhile(done));
        }
        let Some(holder) = handle.block_on(bot.db.claim_key(key, &job.id, &bot.worker))? else {
            return Ok(Claimed::Mine);
        };
        if !said {
            tracing::info!(job = %job.id, holder = %holder, "waiting: another job converts the same source, recipes and destination");
            said = true;
        }
        if cancel.sleep(Duration::from_millis(250)).is_err() {
            return Ok(Claimed::Cancelled);
        }
    }
}

/// Resolves once `cancel` is cancelled.
async fn wait_cancelled(cancel: &Cancel) {
    while !cancel.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A job's events, logged with its id; its retries noted in the store too (shown by
/// `GET /jobs/ID`); the bytes written to destinations are counted.
struct JobEvents {
    job: String,
    metrics: Arc<Metrics>,
    db: super::store::Db,
    handle: Handle,
    /// How many events were noted; past [`NOTES`], only logged.
    noted: std::sync::atomic::AtomicUsize,
}

/// The most events noted for one job.
const NOTES: usize = 50;

impl Events for JobEvents {
    fn event(&self, event: &Event<'_>) {
        match event {
            Event::Retry {
                error,
                wait,
                attempt,
                attempts,
            } => {
                self.metrics.registry_error("retried");
                let error = redact(&error.to_string());
                tracing::warn!(job = %self.job, attempt, attempts, wait_ms = wait.as_millis() as u64, error = %error, "registry request failed; trying again");
                if self.noted.fetch_add(1, Ordering::Relaxed) < NOTES {
                    // On the job's blocking thread, as every event.
                    let text = redact(&event.to_string());
                    if let Err(e) = self.handle.block_on(self.db.note(&self.job, &text)) {
                        tracing::warn!(job = %self.job, error = %e, "a retry is logged only");
                    }
                }
            }
            other => {
                tracing::debug!(job = %self.job, event = %redact(&other.to_string()), "progress")
            }
        }
    }

    fn meter(&self, label: &str, _total: u64) -> Arc<dyn Meter> {
        if label.starts_with("writing ") {
            Arc::new(Uploaded(self.metrics.clone()))
        } else {
            Arc::new(NoMeter)
        }
    }
}

struct Uploaded(Arc<Metrics>);

impl Meter for Uploaded {
    fn add(&self, bytes: u64) {
        self.0.uploaded(bytes);
    }
    fn finish(&self) {}
}
