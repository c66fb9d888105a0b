//! The connection layer: accept TCP connections and serve them with hyper's connection builder,
//! under the limits a production server has.
//!
//! - **Header read timeout** (hyper's `header_read_timeout`, driven by a tokio timer): a request
//!   head must be complete within this bound of the connection starting to wait for it. hyper
//!   starts that wait again after every response on a kept-alive one, and this module bounds the
//!   wait for a fresh connection's first byte by the same time, so the one bound closes
//!   slowloris connections, silent connections and idle keep-alive connections.
//! - **Body rate** ([`MinRateBody`]): a body must arrive within a grace period plus one second
//!   per `min_rate` bytes received; a slow drip or a lying `Content-Length` is cut.
//! - **Connection cap**: at most `max_connections` connections are served at once; one beyond
//!   that is answered at once with `503 WORKER_BUSY` (the project's error JSON, retriable,
//!   `Connection: close`) and closed, so the worker's file descriptors and memory stay bounded.
//! - **HTTP/2**: pings every `header_read_timeout`; a peer that does not answer within it is
//!   dropped.
//!
//! axum's own `serve` exposes none of these settings, hence this module (it replaces it).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

use super::min_rate_body::{BodyRate, MinRateBody};
use crate::error_code::ErrorCode;
use crate::telemetry;

/// Limits of the connection layer (`serve` flags; see `docs/api.md`, "Connection limits").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A request head must be complete this long after the connection starts waiting for it
    /// (also the idle keep-alive timeout).
    pub header_read_timeout: Duration,
    /// The rate a request body must keep up.
    pub body: BodyRate,
    /// Connections served at once; more are refused with 503.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            body: BodyRate {
                grace: Duration::from_secs(10),
                min_rate: 64 * 1024,
            },
            max_connections: 512,
        }
    }
}

/// How long a refused connection is read from (and discarded) after the 503 went out, so that
/// closing it does not reset it before the client has read the answer.
const REFUSAL_DRAIN: Duration = Duration::from_millis(500);

/// Serve `router` on `listener` until `stop` turns true, then let the open connections finish
/// their current requests (graceful shutdown) and return.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.header_read_timeout)
        .keep_alive_timeout(limits.header_read_timeout);
    let builder = Arc::new(builder);
    let body_rate = limits.body;
    let service = router.map_request(move |req: Request<Incoming>| {
        req.map(|b| Body::new(MinRateBody::new(b, body_rate)))
    });
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            // The guard `wait_for` returns is not `Send`: drop it inside the branch's future.
            () = async { drop(stop.wait_for(|v| *v).await) } => break,
        };
        // Small SSE writes go out at once: without TCP_NODELAY, Nagle's algorithm holds an event
        // back until the client's (delayed, ~40 ms) ACK of the previous one.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY on a connection");
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!(telemetry::CONNECTIONS_REFUSED_TOTAL).increment(1);
            telemetry::count_error(ErrorCode::WorkerBusy);
            tracing::warn!(event = "connection_refused", %peer, max_connections = limits.max_connections, "too many open connections");
            tokio::spawn(refuse(tcp, limits.max_connections));
            continue;
        };
        let hyper_service = TowerToHyperService::new(service.clone());
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let first_byte_within = limits.header_read_timeout;
        tokio::spawn(async move {
            // The auto (HTTP/1 or HTTP/2) builder reads the protocol preface before hyper's
            // header-read timer runs, so a client that connects and sends nothing would keep
            // its slot forever: the first byte must come within the header-read bound too.
            let mut probe = [0u8; 1];
            match tokio::time::timeout(first_byte_within, tcp.peek(&mut probe)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => {
                    tracing::debug!(%peer, "connection closed: no request within the header-read timeout");
                    drop(slot);
                    return;
                }
            }
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(tcp), hyper_service)
                .into_owned();
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Answer an over-cap connection with 503 `WORKER_BUSY` and close it.
async fn refuse(mut tcp: TcpStream, max_connections: usize) {
    let code = ErrorCode::WorkerBusy;
    let body = serde_json::json!({
        "code": code,
        "message": format!("too many open connections (at most {max_connections}); retry later"),
        "retriable": code.retriable(),
    })
    .to_string();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let write = async {
        tcp.write_all(head.as_bytes()).await?;
        tcp.write_all(body.as_bytes()).await?;
        tcp.shutdown().await
    };
    if tokio::time::timeout(REFUSAL_DRAIN, write).await.is_err() {
        return;
    }
    // Read what the client sent until it closes or the drain time is up; closing with unread
    // bytes would send a reset that can discard the 503 before the client reads it.
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(REFUSAL_DRAIN, async {
        while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}
