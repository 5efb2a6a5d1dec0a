//! The bot's process: the HTTP side (hooks, health, metrics, jobs), the workers that take
//! jobs from the queue, and an orderly stop on SIGTERM.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::runtime::Handle;

use super::hooks::{self, Hooked, ImageEvent};
use super::rules::{Route, ServeConfig};
use super::store::{subject_of, Db, Enqueued};
use super::worker::Bot;

/// The largest hook body read; registries send a few KiB.
pub const MAX_BODY: usize = 1 << 20;

/// The most events one hook payload may hold; above it the payload is refused whole (413)
/// and nothing is stored. Registries send a handful (distribution's `threshold`, 10 by
/// default; Harbor and Quay one push with its tags).
pub const MAX_EVENTS: usize = 100;

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
    let (nudge, nudges) = super::queue::nudge();
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
        options.clone(),
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
    let app = router(bot.clone());
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
    while !bot
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .is_empty()
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let left: Vec<_> = bot
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .cloned()
        .collect();
    if !left.is_empty() {
        tracing::warn!(
            jobs = left.len(),
            "grace period over: stopping the jobs still running and putting them back in the queue"
        );
        for cancel in left {
            cancel.cancel();
        }
        while !bot
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
        {
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

async fn finish(
    workers: tokio::task::JoinHandle<Result<(), ServeError>>,
) -> Result<(), ServeError> {
    match tokio::time::timeout(Duration::from_secs(10), workers).await {
        Ok(Ok(result)) => result,
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

/// The HTTP routes.
pub fn router(bot: Arc<Bot>) -> Router {
    Router::new()
        .route("/hooks/{sender}", post(hook))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route("/jobs", get(jobs))
        .route("/jobs/{id}", get(job))
        .route("/jobs/{id}/retry", post(retry))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(bot)
}

pub(super) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// Whether a request carries the secret: `Authorization: Bearer TOKEN` (or the bare
/// token, as Harbor sends what it is given), `?token=TOKEN` for senders that cannot set
/// headers, or for GitHub its HMAC signature of the body.
fn authorized(
    bot: &Bot,
    sender: &str,
    headers: &HeaderMap,
    query: &HookQuery,
    body: &[u8],
) -> bool {
    let same = |given: &str| constant_time_eq(given.as_bytes(), bot.token.as_bytes());
    if sender == "github" {
        if let Some(sig) = headers
            .get("x-hub-signature-256")
            .and_then(|v| v.to_str().ok())
        {
            return hooks::github_signature_ok(bot.token.as_bytes(), body, sig);
        }
    }
    if let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        let given = auth.strip_prefix("Bearer ").unwrap_or(auth).trim();
        return same(given);
    }
    query.token.as_deref().is_some_and(same)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Deserialize, Default)]
struct HookQuery {
    token: Option<String>,
}

async fn hook(
    State(bot): State<Arc<Bot>>,
    Path(sender): Path<String>,
    Query(query): Query<HookQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if bot.stopping.load(Ordering::SeqCst) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the bot is stopping; send again later",
        );
    }
    let parsed = match sender.as_str() {
        "distribution" => hooks::distribution(&body),
        "harbor" => hooks::harbor(&body),
        "github" => {
            let event = headers
                .get("x-github-event")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            hooks::github(event, &body)
        }
        "dockerhub" => hooks::dockerhub(&body),
        "quay" => hooks::quay(&body),
        "generic" => hooks::generic(&body),
        other => {
            bot.metrics.rejected(404);
            return error(StatusCode::NOT_FOUND, format!("no hook `{other}`: there are distribution, harbor, github, dockerhub, quay and generic"));
        }
    };
    if !authorized(&bot, &sender, &headers, &query, &body) {
        bot.metrics.rejected(401);
        tracing::warn!(hook = %sender, "hook refused: no or wrong secret");
        return error(StatusCode::UNAUTHORIZED, "this hook needs the bot's secret: `Authorization: Bearer TOKEN`, `?token=TOKEN`, or for GitHub the webhook secret");
    }
    let events = match parsed {
        Ok(events) => events,
        Err(e) => {
            bot.metrics.rejected(400);
            tracing::warn!(hook = %sender, reason = %e, "hook payload refused");
            return error(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    if events.len() > MAX_EVENTS {
        bot.metrics.rejected(413);
        tracing::warn!(hook = %sender, events = events.len(), "hook payload refused: too many events");
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} events in one payload; at most {MAX_EVENTS} are taken (distribution's `threshold` sends fewer): nothing was stored, send them in smaller envelopes",
                events.len()
            ),
        );
    }
    bot.metrics.received(&sender, events.len() as u64);
    let mut queued = Vec::new();
    let mut ignored = Vec::new();
    for event in events {
        match event {
            Hooked::Ignored(why) => {
                bot.metrics.ignored(&why);
                ignored.push(json!({ "reason": why }));
            }
            Hooked::Image(image) => match admit(&bot, &image).await {
                Ok(Admitted::Queued(id)) => {
                    bot.metrics.queued();
                    tracing::info!(hook = %sender, job = %id, source = %subject_of(&image), "queued");
                    queued.push(json!({ "job": id, "source": subject_of(&image) }));
                }
                Ok(Admitted::Duplicate) => {
                    bot.metrics.deduplicated();
                    ignored.push(json!({ "source": subject_of(&image), "reason": "a job for it is queued or running" }));
                }
                Ok(Admitted::Ignored(why)) => {
                    bot.metrics.ignored(why);
                    ignored.push(json!({ "source": subject_of(&image), "reason": why }));
                }
                Err(e) => {
                    tracing::error!(hook = %sender, error = %e, "cannot store an event");
                    return error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("{e}; nothing after the jobs listed was stored, send again"),
                    );
                }
            },
        }
    }
    (
        StatusCode::ACCEPTED,
        Json(json!({ "queued": queued, "ignored": ignored })),
    )
        .into_response()
}

enum Admitted {
    Queued(String),
    Duplicate,
    Ignored(&'static str),
}

/// Routes an image event and stores its job.
async fn admit(bot: &Bot, image: &ImageEvent) -> Result<Admitted, super::store::StoreError> {
    if image.is_untagged_image_manifest() {
        return Ok(Admitted::Ignored(
            "an index's child (converted with its index)",
        ));
    }
    let rule = match bot.config.route(image) {
        Route::Convert(rule) => rule,
        Route::NoRule => return Ok(Admitted::Ignored("no rule watches the repository")),
        Route::ExcludedTag => return Ok(Admitted::Ignored("the tag is excluded")),
        Route::OwnOutput => return Ok(Admitted::Ignored("the bot's own output")),
    };
    let Some(tag) = image.tag.as_deref() else {
        if rule.destination.contains("{tag}") {
            return Ok(Admitted::Ignored(
                "pushed without a tag, and the destination needs one",
            ));
        }
        return enqueue(bot, image, rule, "").await;
    };
    enqueue(bot, image, rule, tag).await
}

async fn enqueue(
    bot: &Bot,
    image: &ImageEvent,
    rule: &super::rules::Rule,
    tag: &str,
) -> Result<Admitted, super::store::StoreError> {
    let index = bot
        .config
        .rules
        .iter()
        .position(|r| std::ptr::eq(r, rule))
        .expect("the rule is the config's");
    let destination = rule.destination_for(&image.registry, &image.repository, tag);
    Ok(match bot.enqueue(image, index, &destination).await? {
        Enqueued::New(id) => Admitted::Queued(id),
        Enqueued::Duplicate => Admitted::Duplicate,
    })
}

async fn ready(State(bot): State<Arc<Bot>>) -> Response {
    match bot.db.ping().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn metrics(State(bot): State<Arc<Bot>>) -> Response {
    let counts = bot.db.counts().await.ok();
    (
        [("content-type", "text/plain; version=0.0.4")],
        bot.metrics.render(
            counts.as_ref(),
            bot.session.layer_cache().map(|c| c.stats()).as_ref(),
        ),
    )
        .into_response()
}

#[derive(Deserialize)]
struct JobsQuery {
    state: Option<String>,
    limit: Option<i64>,
    token: Option<String>,
}

/// The answer to a job listing without the secret: jobs name repositories and hold the
/// registries' error texts.
fn jobs_unauthorized() -> Response {
    error(
        StatusCode::UNAUTHORIZED,
        "the job list needs the bot's secret: `Authorization: Bearer TOKEN` or `?token=TOKEN` (/healthz, /readyz and /metrics are open)",
    )
}

async fn jobs(
    State(bot): State<Arc<Bot>>,
    Query(q): Query<JobsQuery>,
    headers: HeaderMap,
) -> Response {
    let token = HookQuery {
        token: q.token.clone(),
    };
    if !authorized(&bot, "jobs", &headers, &token, b"") {
        return jobs_unauthorized();
    }
    if let Some(state) = q.state.as_deref() {
        if !["queued", "running", "done", "failed"].contains(&state) {
            return error(
                StatusCode::BAD_REQUEST,
                format!("no state `{state}`: there are queued, running, done and failed"),
            );
        }
    }
    match bot
        .db
        .jobs(q.state.as_deref(), q.limit.unwrap_or(100).clamp(1, 1000))
        .await
    {
        Ok(jobs) => Json(json!({ "jobs": jobs })).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn job(
    State(bot): State<Arc<Bot>>,
    Path(id): Path<String>,
    Query(query): Query<HookQuery>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&bot, "jobs", &headers, &query, b"") {
        return jobs_unauthorized();
    }
    match bot.db.job(&id).await {
        Ok(Some(job)) => Json(job).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("no job `{id}`; `GET /jobs` lists them"),
        ),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn retry(
    State(bot): State<Arc<Bot>>,
    Path(id): Path<String>,
    Query(query): Query<HookQuery>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&bot, "retry", &headers, &query, b"") {
        return error(
            StatusCode::UNAUTHORIZED,
            "retrying a job needs the bot's secret: `Authorization: Bearer TOKEN`",
        );
    }
    match bot.retry(&id).await {
        Ok(true) => (
            StatusCode::ACCEPTED,
            Json(json!({ "job": id, "state": "queued" })),
        )
            .into_response(),
        Ok(false) => error(
            StatusCode::CONFLICT,
            format!("no failed job `{id}`: only failed jobs are retried"),
        ),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}
