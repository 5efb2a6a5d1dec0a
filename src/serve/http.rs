//! The bot's HTTP side: the hooks (each sender's payload to image events, routed by the
//! rules and stored as jobs), the probes, the metrics, and the job list.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::bot::Bot;
use super::door::{error, MAX_BODY};
use super::hooks::{self, Hooked, ImageEvent};
use super::rules::Route;
use super::store::{subject_of, Enqueued};

/// The most events one hook payload may hold; above it the payload is refused whole (413)
/// and nothing is stored. Registries send a handful (distribution's `threshold`, 10 by
/// default; Harbor and Quay one push with its tags).
pub const MAX_EVENTS: usize = 100;

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
            Hooked::Image(image) => match take(&bot, &image).await {
                Ok(Taken::Queued(id)) => {
                    bot.metrics.queued();
                    tracing::info!(hook = %sender, job = %id, source = %subject_of(&image), "queued");
                    queued.push(json!({ "job": id, "source": subject_of(&image) }));
                }
                Ok(Taken::Duplicate) => {
                    bot.metrics.deduplicated();
                    ignored.push(json!({ "source": subject_of(&image), "reason": "a job for it is queued or running" }));
                }
                Ok(Taken::Ignored(why)) => {
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

/// What became of one image event of a hook.
enum Taken {
    Queued(String),
    Duplicate,
    Ignored(&'static str),
}

/// Routes an image event and stores its job.
async fn take(bot: &Bot, image: &ImageEvent) -> Result<Taken, super::store::StoreError> {
    if image.is_untagged_image_manifest() {
        return Ok(Taken::Ignored(
            "an index's child (converted with its index)",
        ));
    }
    let rule = match bot.config.route(image) {
        Route::Convert(rule) => rule,
        Route::NoRule => return Ok(Taken::Ignored("no rule watches the repository")),
        Route::ExcludedTag => return Ok(Taken::Ignored("the tag is excluded")),
        Route::OwnOutput => return Ok(Taken::Ignored("the bot's own output")),
    };
    let Some(tag) = image.image.tag() else {
        if rule.destination.contains("{tag}") {
            return Ok(Taken::Ignored(
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
) -> Result<Taken, super::store::StoreError> {
    let index = bot
        .config
        .rules
        .iter()
        .position(|r| std::ptr::eq(r, rule))
        .expect("the rule is the config's");
    let destination = rule.destination_for(image.image.registry(), image.image.repository(), tag);
    Ok(match bot.enqueue(image, index, &destination).await? {
        Enqueued::New(id) => Taken::Queued(id),
        Enqueued::Duplicate => Taken::Duplicate,
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
