//! The bot's process: it reads the rules, opens the store, starts the door, the queue's
//! worker and the reconcile, and stops in order on SIGTERM.

use crate::control::Locked;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;

use super::bot::Bot;
use super::rules::ServeConfig;
use super::store::Db;

/// How the process runs, besides the rules file.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The rules file.
    pub config: PathBuf,
    /// How many jobs this process runs at once.
    pub concurrency: usize,
    /// How long running jobs have to finish after SIGTERM before they are stopped and
    /// put back in the queue.
    pub grace: Duration,
    /// The heartbeat of this process's workers; a replica whose heartbeats stop for
    /// three of them has its jobs handed to another.
    pub heartbeat: Duration,
    /// How many times a job tries again after a registry failure that may pass.
    pub job_retries: u32,
    /// Reconcile once, run what is queued, then exit (for cron), instead of serving.
    pub once: bool,
    /// How often to list the watched repositories and queue what has no up-to-date twin
    /// (the first pass at start); `None`: never.
    pub reconcile_every: Option<Duration>,
    /// The HTTP door's timeouts and connection cap.
    pub door: super::door::DoorLimits,
}

/// Why the bot could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The rules file.
    #[error(transparent)]
    Rules(#[from] super::rules::RulesError),
    /// The token file.
    #[error("webhook token file `{file}`: {reason}")]
    Token {
        /// The file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// The state store.
    #[error(transparent)]
    Store(#[from] super::store::StoreError),
    /// The listening socket.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The workers stopped.
    #[error("the queue's worker stopped: {0}")]
    Worker(String),
}

impl ServeError {
    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            ServeError::Token { .. } => Some("write the secret hooks must present in that file (one line), readable by the bot only: `openssl rand -hex 32 > FILE && chmod 600 FILE`".into()),
            ServeError::Listen { .. } => Some("another process holds the port, or the address is not this machine's; change `listen` in the rules file".into()),
            ServeError::Store(_) => Some("check `state` in the rules file: the SQLite file's directory must be writable; a PostgreSQL URL must reach a server that accepts the user".into()),
            _ => None,
        }
    }
}

fn read_token(config: &ServeConfig) -> Result<String, ServeError> {
    let file = config.webhook_token_file.display().to_string();
    let text =
        std::fs::read_to_string(&config.webhook_token_file).map_err(|e| ServeError::Token {
            file: file.clone(),
            reason: e.to_string(),
        })?;
    let token = text.trim().to_string();
    if token.len() < 16 {
        return Err(ServeError::Token {
            file,
            reason: "the secret is shorter than 16 characters".into(),
        });
    }
    Ok(token)
}

/// Runs the bot until SIGTERM or SIGINT (or, with `once`, until the queue is empty).
pub fn serve(
    options: ServeOptions,
    session: crate::pipeline::SessionOptions,
) -> Result<(), ServeError> {
    let config = ServeConfig::load(&options.config)?;
    let token = read_token(&config)?;
    let files = config
        .registries
        .iter()
        .filter_map(|(host, s)| s.auth_file.clone().map(|f| (host.clone(), f)))
        .collect();
    let session = crate::pipeline::Session::new(session.with_auth_files(files));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .max_blocking_threads(options.concurrency.max(1) + 4)
        .build()
        .map_err(|e| ServeError::Worker(e.to_string()))?;
    runtime.block_on(run(options, config, token, session))
}

async fn run(
    options: ServeOptions,
    config: ServeConfig,
    token: String,
    session: crate::pipeline::Session,
) -> Result<(), ServeError> {
    let db = Db::open(&config.state).await?;
    let listen = config.listen;
    let host = hostname();
    let slots = config
        .registries
        .iter()
        .filter_map(|(host, s)| {
            s.concurrency
                .map(|n| (host.clone(), Arc::new(tokio::sync::Semaphore::new(n))))
        })
        .collect();
    let (nudge, nudges) = super::bot::nudge();
    let bot = Arc::new(Bot {
        nudge,
        slots,
        config,
        db: db.clone(),
        session,
        metrics: Default::default(),
        token,
        worker: format!(
            "unroot-{host}-{}-{}",
            std::process::id(),
            ulid::Ulid::generate()
        ),
        running: Default::default(),
        stopping: Default::default(),
        drained: tokio::sync::watch::Sender::new(false),
        parked: Default::default(),
        job_retries: (options.job_retries, Duration::from_secs(2)),
    });
    // The hooks and the reconcile stop first; the queue's worker last, once every job it
    // gave out is done or back in the queue: a queue worker stopped in the middle of a
    // poll can leave SQLite's write lock held until the process ends, so nothing may
    // need the store after it.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (work_stop_tx, work_stop_rx) = tokio::sync::watch::channel(false);
    let workers = tokio::spawn(super::queue::run_workers(
        bot.clone(),
        options.concurrency,
        options.heartbeat,
        nudges,
        work_stop_rx,
    ));

    if options.once {
        reconcile_now(&bot).await;
        // Wait until nothing is queued or running, then stop.
        loop {
            let counts = db.counts().await?;
            if counts.queued == 0 && counts.running == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let _ = stop_tx.send(true);
        let _ = work_stop_tx.send(true);
        return finish(workers).await;
    }

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: listen,
            source,
        })?;
    tracing::info!(listen = %listen, worker = %bot.worker, state = %bot.config.state, "serving");
    let app = super::http::router(bot.clone());
    let server = tokio::spawn(super::door::serve(
        listener,
        app,
        options.door,
        stop_rx.clone(),
    ));

    if let Some(every) = options.reconcile_every {
        let (bot, mut stop) = (bot.clone(), stop_rx.clone());
        tokio::spawn(async move {
            loop {
                // Replicas on one store share the work: one pass per period in all.
                match bot.db.claim_pass("reconcile", every, &bot.worker).await {
                    Ok(true) => {
                        reconcile_now(&bot).await;
                    }
                    Ok(false) => tracing::info!(
                        "reconcile skipped: another replica (or an earlier run) reconciled less than --reconcile-every ago"
                    ),
                    Err(e) => tracing::warn!(error = %e, "reconcile"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        });
    }

    let signal = wait_for_signal().await;
    tracing::info!(
        signal,
        grace_s = options.grace.as_secs(),
        "stopping: no new hooks or jobs; running jobs have the grace period to finish"
    );
    bot.stop_admitting();
    let _ = stop_tx.send(true);
    let _ = server.await;
    let deadline = Instant::now() + options.grace;
    while !bot.running.locked().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let left: Vec<_> = bot.running.locked().values().cloned().collect();
    if !left.is_empty() {
        tracing::warn!(
            jobs = left.len(),
            "grace period over: stopping the jobs still running and putting them back in the queue"
        );
        for cancel in left {
            cancel.cancel();
        }
        while !bot.running.locked().is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The jobs the queue gave out since the stop go back to it, then the queue's worker
    // stops.
    bot.drained.send_replace(true);
    let deadline = Instant::now() + Duration::from_secs(10);
    while bot.parked.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = work_stop_tx.send(true);
    finish(workers).await
}

async fn finish(workers: tokio::task::JoinHandle<Result<(), String>>) -> Result<(), ServeError> {
    match tokio::time::timeout(Duration::from_secs(10), workers).await {
        Ok(Ok(result)) => result.map_err(ServeError::Worker),
        Ok(Err(e)) => Err(ServeError::Worker(e.to_string())),
        // The queue's worker did not wind down in time; what it held is handed out
        // again by the queue once its heartbeats stop.
        Err(_) => Ok(()),
    }
}

/// One reconcile pass on a blocking thread; its errors and its summary are logged.
async fn reconcile_now(bot: &Arc<Bot>) -> super::reconcile::Reconciled {
    let (bot, handle) = (bot.clone(), Handle::current());
    let summary = tokio::task::spawn_blocking(move || super::reconcile::reconcile(&bot, &handle))
        .await
        .unwrap_or_default();
    for error in &summary.errors {
        tracing::warn!(error = %crate::control::secrets::redact(error), "reconcile");
    }
    tracing::info!(
        tags = summary.tags,
        queued = summary.queued,
        up_to_date = summary.up_to_date,
        errors = summary.errors.len(),
        "reconciled"
    );
    summary
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into())
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
