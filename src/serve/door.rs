//! The bot's HTTP door: the accept loop, with the limits that keep slow or idle clients
//! from holding it. A request's headers must arrive within `header_timeout` of the
//! connection's start (or of the previous response), its body within `body_timeout`,
//! and at most `max_connections` are open at once: one over it is answered 503 and closed
//! at once, so a crowd of clients that drip bytes never starves `/healthz`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// The limits at the door.
#[derive(Clone, Copy, Debug)]
pub struct DoorLimits {
    /// How long a client has to send a request's headers.
    pub header_timeout: Duration,
    /// How long a client has to send a request's body, once its headers are in.
    pub body_timeout: Duration,
    /// How many connections may be open at once.
    pub max_connections: usize,
}

impl Default for DoorLimits {
    fn default() -> Self {
        DoorLimits {
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(10),
            max_connections: 512,
        }
    }
}

/// The largest request body read; registries send a few KiB.
pub const MAX_BODY: usize = 1 << 20;

/// An error answer: `{"error": MESSAGE}` with `status`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": message.into() })),
    )
        .into_response()
}

/// How long open connections have to finish their requests once the bot stops.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` within `limits` until `stop` turns true, then lets the
/// requests in flight finish (for at most 10 s).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: DoorLimits,
    mut stop: watch::Receiver<bool>,
) {
    let app = app.layer(axum::middleware::from_fn_with_state(
        limits.body_timeout,
        read_body_within,
    ));
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    loop {
        let (mut stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, most often: wait for some to close.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max = limits.max_connections, "connection refused: too many open");
            tokio::spawn(async move {
                let busy = "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\nRetry-After: 1\r\n\r\n";
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), stream.write_all(busy.as_bytes()))
                        .await;
            });
            continue;
        };
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client that broke off, or was too slow, ends its connection: nothing to
            // say about it.
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN, graceful.shutdown()).await;
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

/// Reads a request's whole body within the limit before its handler runs: a client that
/// drips it is answered 408 and its connection closed, holding nothing after.
async fn read_body_within(
    axum::extract::State(within): axum::extract::State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return too_large();
    }
    match tokio::time::timeout(within, axum::body::to_bytes(body, MAX_BODY)).await {
        Err(_) => {
            let mut answer = error(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request's body did not arrive within {} s",
                    within.as_secs_f64()
                ),
            );
            answer.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            answer
        }
        // Over the limit without saying so, or broken off (then nobody reads this).
        Ok(Err(_)) => too_large(),
        Ok(Ok(bytes)) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
    }
}

fn too_large() -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the body is over {} KiB; registries send a few",
            MAX_BODY / 1024
        ),
    )
    .into_response()
}
