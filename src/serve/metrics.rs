//! The bot's counters, served as Prometheus text at `GET /metrics`. Counters are this
//! process's own; the job gauges come from the state store, so every replica reports the
//! shared queue.

use crate::control::Locked;
use crate::pipeline::CacheStats;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::store::Counts;

/// The upper bounds (seconds) of the job duration histogram's buckets.
const JOB_BUCKETS: &[f64] = &[1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0];

/// The upper bounds (seconds) of the event-to-twin histogram's buckets.
const TWIN_BUCKETS: &[f64] = &[
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// A Prometheus histogram: cumulative bucket counts, the sum and the count.
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Mutex<Histogram> {
        Mutex::new(Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        })
    }

    fn observe(&mut self, seconds: f64) {
        for (n, bound) in self.counts.iter_mut().zip(self.bounds) {
            if seconds <= *bound {
                *n += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        family(out, name, "histogram", help);
        for (n, bound) in self.counts.iter().zip(self.bounds) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

/// What this process counted.
pub struct Metrics {
    /// Hook requests that carried events, by hook.
    received: Mutex<BTreeMap<String, u64>>,
    /// Events not converted, by reason (`no rule`, `own output`, ...).
    ignored: Mutex<BTreeMap<String, u64>>,
    /// Events for a job already queued or running.
    deduplicated: AtomicU64,
    /// Events that made a job.
    queued: AtomicU64,
    /// Hook requests refused, by status.
    rejected: Mutex<BTreeMap<u16, u64>>,
    /// Jobs ended, by outcome (`converted`, `up to date`, `failed`, ...).
    ended: Mutex<BTreeMap<String, u64>>,
    /// Job durations, from start to end.
    durations: Mutex<Histogram>,
    /// From the event (the job queued) to its twin pushed.
    event_to_twin: Mutex<Histogram>,
    /// Bytes of blobs uploaded to destinations.
    uploaded: AtomicU64,
    /// Registry errors met by jobs, by what the registry answered.
    registry_errors: Mutex<BTreeMap<String, u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            received: Default::default(),
            ignored: Default::default(),
            deduplicated: Default::default(),
            queued: Default::default(),
            rejected: Default::default(),
            ended: Default::default(),
            durations: Histogram::new(JOB_BUCKETS),
            event_to_twin: Histogram::new(TWIN_BUCKETS),
            uploaded: Default::default(),
            registry_errors: Default::default(),
        }
    }
}

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K, n: u64) {
    *map.locked().entry(key).or_default() += n;
}

impl Metrics {
    /// A hook request with `n` events.
    pub fn received(&self, hook: &str, n: u64) {
        bump(&self.received, hook.to_string(), n);
    }
    /// An event not converted, and why.
    pub fn ignored(&self, why: &str) {
        bump(&self.ignored, why.to_string(), 1);
    }
    /// An event for a live job.
    pub fn deduplicated(&self) {
        self.deduplicated.fetch_add(1, Ordering::Relaxed);
    }
    /// An event that made a job.
    pub fn queued(&self) {
        self.queued.fetch_add(1, Ordering::Relaxed);
    }
    /// A hook request refused with `status`.
    pub fn rejected(&self, status: u16) {
        bump(&self.rejected, status, 1);
    }
    /// A job ended with `outcome` after `seconds`.
    pub fn ended(&self, outcome: &str, seconds: f64) {
        bump(&self.ended, outcome.to_string(), 1);
        self.durations.locked().observe(seconds);
    }
    /// A twin pushed `seconds` after its event was queued.
    pub fn twin_pushed(&self, seconds: f64) {
        self.event_to_twin.locked().observe(seconds);
    }
    /// Blob bytes a job uploaded.
    pub fn uploaded(&self, bytes: u64) {
        self.uploaded.fetch_add(bytes, Ordering::Relaxed);
    }
    /// A registry error a job met.
    pub fn registry_error(&self, kind: &str) {
        bump(&self.registry_errors, kind.to_string(), 1);
    }

    /// The Prometheus text exposition, with the store's job counts.
    pub fn render(&self, jobs: Option<&Counts>, cache: Option<&CacheStats>) -> String {
        let mut out = String::new();
        let lock = |m: &Mutex<BTreeMap<String, u64>>| m.locked().clone();
        family(
            &mut out,
            "unroot_events_received_total",
            "counter",
            "Events received, by hook.",
        );
        for (hook, n) in lock(&self.received) {
            let _ = writeln!(
                out,
                "unroot_events_received_total{{hook=\"{}\"}} {n}",
                label(&hook)
            );
        }
        family(
            &mut out,
            "unroot_events_ignored_total",
            "counter",
            "Events not converted, by reason.",
        );
        for (why, n) in lock(&self.ignored) {
            let _ = writeln!(
                out,
                "unroot_events_ignored_total{{reason=\"{}\"}} {n}",
                label(&why)
            );
        }
        family(
            &mut out,
            "unroot_events_deduplicated_total",
            "counter",
            "Events for a job already queued or running.",
        );
        let _ = writeln!(
            out,
            "unroot_events_deduplicated_total {}",
            self.deduplicated.load(Ordering::Relaxed)
        );
        family(
            &mut out,
            "unroot_events_queued_total",
            "counter",
            "Events that made a job.",
        );
        let _ = writeln!(
            out,
            "unroot_events_queued_total {}",
            self.queued.load(Ordering::Relaxed)
        );
        family(
            &mut out,
            "unroot_hook_rejected_total",
            "counter",
            "Hook requests refused, by HTTP status.",
        );
        for (status, n) in self.rejected.locked().iter() {
            let _ = writeln!(out, "unroot_hook_rejected_total{{status=\"{status}\"}} {n}");
        }
        if let Some(c) = jobs {
            family(
                &mut out,
                "unroot_jobs",
                "gauge",
                "Jobs in the state store, by state.",
            );
            for (state, n) in [
                ("queued", c.queued),
                ("running", c.running),
                ("done", c.done),
                ("failed", c.failed),
            ] {
                let _ = writeln!(out, "unroot_jobs{{state=\"{state}\"}} {n}");
            }
        }
        family(
            &mut out,
            "unroot_jobs_ended_total",
            "counter",
            "Jobs this process ended, by outcome.",
        );
        for (outcome, n) in lock(&self.ended) {
            let _ = writeln!(
                out,
                "unroot_jobs_ended_total{{outcome=\"{}\"}} {n}",
                label(&outcome)
            );
        }
        self.durations.locked().render(
            &mut out,
            "unroot_job_duration_seconds",
            "How long jobs took, from start to end.",
        );
        self.event_to_twin.locked().render(
            &mut out,
            "unroot_event_to_twin_seconds",
            "From an event's job queued to its converted twin pushed.",
        );
        family(
            &mut out,
            "unroot_uploaded_bytes_total",
            "counter",
            "Blob bytes uploaded to destinations.",
        );
        let _ = writeln!(
            out,
            "unroot_uploaded_bytes_total {}",
            self.uploaded.load(Ordering::Relaxed)
        );
        family(
            &mut out,
            "unroot_registry_errors_total",
            "counter",
            "Registry errors jobs met, by kind.",
        );
        for (kind, n) in lock(&self.registry_errors) {
            let _ = writeln!(
                out,
                "unroot_registry_errors_total{{kind=\"{}\"}} {n}",
                label(&kind)
            );
        }
        if let Some(c) = cache {
            for (name, kind, help, value) in [
                (
                    "unroot_layer_cache_hits_total",
                    "counter",
                    "Layers whose scan came from the layer cache (not read).",
                    c.hits,
                ),
                (
                    "unroot_layer_cache_misses_total",
                    "counter",
                    "Layers read because the layer cache did not hold them.",
                    c.misses,
                ),
                (
                    "unroot_layer_cache_layers",
                    "gauge",
                    "Layers the layer cache holds.",
                    c.layers,
                ),
                (
                    "unroot_layer_cache_bytes",
                    "gauge",
                    "Bytes the layer cache holds (entries in memory, bodies on disk).",
                    c.bytes,
                ),
                (
                    "unroot_layer_cache_budget_bytes",
                    "gauge",
                    "The layer cache's budget (--layer-cache).",
                    c.budget,
                ),
            ] {
                family(&mut out, name, kind, help);
                let _ = writeln!(out, "{name} {value}");
            }
        }
        out
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value as the text format wants it.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histogram_and_gauges() {
        let m = Metrics::default();
        m.received("distribution", 3);
        m.ignored("no rule");
        m.ignored("no rule");
        m.deduplicated();
        m.ended("converted", 4.0);
        m.ended("converted", 40.0);
        // The kinds the worker counts: `Error::registry_kind`'s, and a request retried.
        m.registry_error("error status");
        m.registry_error("retried");
        m.registry_error("retried");
        m.rejected(413);
        m.twin_pushed(0.3);
        m.twin_pushed(7.0);
        let text = m.render(
            Some(&Counts {
                queued: 1,
                running: 2,
                done: 3,
                failed: 4,
            }),
            Some(&CacheStats {
                hits: 5,
                misses: 6,
                layers: 2,
                bytes: 4096,
                budget: 1 << 20,
            }),
        );
        for line in [
            "unroot_events_received_total{hook=\"distribution\"} 3",
            "unroot_events_ignored_total{reason=\"no rule\"} 2",
            "unroot_events_deduplicated_total 1",
            "unroot_jobs{state=\"failed\"} 4",
            "unroot_jobs_ended_total{outcome=\"converted\"} 2",
            "unroot_job_duration_seconds_bucket{le=\"2.5\"} 0",
            "unroot_job_duration_seconds_bucket{le=\"5\"} 1",
            "unroot_job_duration_seconds_bucket{le=\"60\"} 2",
            "unroot_job_duration_seconds_bucket{le=\"+Inf\"} 2",
            "unroot_job_duration_seconds_sum 44",
            "unroot_registry_errors_total{kind=\"error status\"} 1",
            "unroot_registry_errors_total{kind=\"retried\"} 2",
            "unroot_hook_rejected_total{status=\"413\"} 1",
            "unroot_event_to_twin_seconds_bucket{le=\"0.25\"} 0",
            "unroot_event_to_twin_seconds_bucket{le=\"0.5\"} 1",
            "unroot_event_to_twin_seconds_bucket{le=\"10\"} 2",
            "unroot_event_to_twin_seconds_bucket{le=\"+Inf\"} 2",
            "unroot_event_to_twin_seconds_sum 7.3",
            "unroot_event_to_twin_seconds_count 2",
            "# TYPE unroot_event_to_twin_seconds histogram",
            "unroot_layer_cache_hits_total 5",
            "unroot_layer_cache_misses_total 6",
            "unroot_layer_cache_bytes 4096",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }
}
