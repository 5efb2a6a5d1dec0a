//! `unroot serve`'s flags.

use std::sync::Arc;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::duration;
use super::{ByteCount, RegistryArgs};
use crate::control::Cancel;
use crate::error::Error;
use crate::pipeline::{ScanLimits, SessionOptions};

/// `unroot serve`
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The rules file: where to listen, the state store, what to convert to where.
    #[arg(long, short = 'c', value_name = "FILE", env = "UNROOT_RULES")]
    pub config: std::path::PathBuf,

    /// List the watched repositories' tags, queue every one without an up-to-date
    /// converted twin, run the queue, then exit (for cron, beside a registry that cannot
    /// send webhooks), instead of serving.
    #[arg(long)]
    pub once: bool,

    /// How often to reconcile while serving: list the watched repositories' tags and
    /// queue what the webhooks missed (the first pass at start); 0: never.
    #[arg(long, value_name = "DURATION", default_value = "600", value_parser = duration::any)]
    pub reconcile_every: Duration,

    /// How many conversions this process runs at once.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub concurrency: u64,

    /// After SIGTERM, how long running jobs have to finish before they are stopped and
    /// put back in the queue.
    #[arg(long, value_name = "DURATION", default_value = "60", value_parser = duration::any)]
    pub grace: Duration,

    /// How often this process tells the state store it is alive; a process silent for
    /// three of these has its jobs handed to another replica.
    #[arg(long, value_name = "DURATION", default_value = "10", value_parser = duration::positive)]
    pub heartbeat: Duration,

    /// How many times a job tries again, with backoff from 2 s, after a registry failure
    /// that may pass (unreachable, 5xx, 429 beyond --retries).
    #[arg(long, value_name = "N", default_value_t = 6)]
    pub job_retries: u32,

    /// How much the layer cache may hold: what one pass over a layer yields (its
    /// entries in memory, the bodies of files to re-own on disk), so a base layer that
    /// many images share is read once (`K`, `M`, `G` suffixes; 0: no cache, every layer
    /// read for every image).
    #[arg(long, value_name = "BYTES", default_value = "512M")]
    pub layer_cache: ByteCount,

    /// How long an HTTP client has to send a request's headers (from its connection's
    /// start, or its previous response); slower ones are disconnected.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration::positive)]
    pub header_timeout: Duration,

    /// How long an HTTP client has to send a request's body once its headers are in;
    /// slower ones are answered 408 and disconnected.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration::positive)]
    pub body_timeout: Duration,

    /// How many HTTP connections may be open at once; one more is answered 503 and
    /// closed.
    #[arg(long, value_name = "N", default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub max_connections: u64,

    /// Log lines as text or as JSON objects (one per line).
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Registry access for sources and destinations.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// How `unroot serve` logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl ServeArgs {
    /// The bot's options.
    pub fn options(&self) -> crate::serve::server::ServeOptions {
        crate::serve::server::ServeOptions {
            config: self.config.clone(),
            concurrency: self.concurrency as usize,
            grace: self.grace,
            heartbeat: self.heartbeat,
            job_retries: self.job_retries,
            once: self.once,
            reconcile_every: (!self.reconcile_every.is_zero()).then_some(self.reconcile_every),
            door: crate::serve::door::DoorLimits {
                header_timeout: self.header_timeout,
                body_timeout: self.body_timeout,
                max_connections: self.max_connections as usize,
            },
        }
    }

    /// The session options the bot's jobs share (the rules file adds credentials per
    /// registry).
    pub fn session_options(&self) -> Result<SessionOptions, Error> {
        let mut options = self.registry.session_options(
            ScanLimits::default(),
            Arc::new(crate::control::Silent),
            Cancel::new(),
        )?;
        if self.layer_cache.0 > 0 {
            let dir = options.work_dir.clone().unwrap_or_else(std::env::temp_dir);
            options.layer_cache = Some(Arc::new(crate::pipeline::LayerCache::new(
                &dir,
                self.layer_cache.0,
            )));
        }
        Ok(options)
    }
}
