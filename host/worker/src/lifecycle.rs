//! The worker's life: start (scheduler thread, HTTP server, then the ready callback), serve, and
//! drain on `POST /shutdown` or SIGTERM (new requests get 503, running jobs finish, then the
//! server stops and the device is released).
//!
//! Model loading and backend selection happen before this (in `cli/serve.rs`); this module gets
//! a device that already holds the model.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info};

use crate::error_code::ErrorCode;
use crate::plugins::Plugins;
use crate::scheduler::{Scheduler, SchedulerConfig, SchedulerThread};
use crate::served_device::{Residency, ServedDevice};
use crate::server::chat_template::ChatTemplate;
use crate::server::{
    ApiKey, AppState, ConnectionLimits, HealthCache, ModelFacts, ServerLimits, VramReport, app,
    connections,
};

/// What a worker is made of: a device holding the model, the plugins, the model's facts.
pub struct WorkerParts {
    pub device: Box<dyn ServedDevice>,
    pub plugins: Plugins,
    pub model: ModelFacts,
}

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub worker_id: String,
    /// What the ready callback reports as `model_ref` (the model path as given).
    pub model_ref: String,
    pub scheduler: SchedulerConfig,
    pub limits: ServerLimits,
    /// Timeouts and the connection cap of the HTTP layer.
    pub connections: ConnectionLimits,
    /// `POST` here once the server answers; a failure is fatal.
    pub callback_url: Option<String>,
    /// Also drain on SIGTERM (the binary; in-process tests leave it off).
    pub handle_sigterm: bool,
    /// `--api-key`: every route but `GET /health` then needs `Authorization: Bearer KEY`.
    pub api_key: Option<ApiKey>,
}

/// Why a worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("cannot start the scheduler thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("cannot read the listening address: {0}")]
    Listener(#[source] std::io::Error),
    #[error("the ready callback to {url} failed: {reason}")]
    Callback { url: String, reason: String },
    #[error("the HTTP server failed: {0}")]
    Server(String),
}

/// The ready callback's body (worker spec, "Startup and CLI").
#[derive(Debug, Serialize)]
pub struct ReadyCallback<'a> {
    pub worker_id: &'a str,
    pub model_ref: &'a str,
    pub vram_bytes: u64,
    pub uri: String,
}

/// A started worker.
pub struct RunningWorker {
    pub addr: SocketAddr,
    state: AppState,
    server: JoinHandle<std::io::Result<()>>,
    stop_server: watch::Sender<bool>,
    scheduler: SchedulerThread,
    handle_sigterm: bool,
}

impl std::fmt::Debug for RunningWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningWorker")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// The address the callback reports: the bound one, with a wildcard IP replaced by the host's
/// name (so an orchestrator on another machine can reach it).
fn public_uri(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "127.0.0.1".to_string());
        format!("http://{host}:{}", addr.port())
    } else {
        format!("http://{addr}")
    }
}

/// Start serving on `listener`: scheduler thread first, then the HTTP server, then the callback.
pub async fn start(
    parts: WorkerParts,
    options: WorkerOptions,
    listener: TcpListener,
) -> Result<RunningWorker, LifecycleError> {
    let started = Instant::now();
    crate::telemetry::prometheus();
    let info = parts.device.info();
    let vram_bytes = info.weights_bytes + info.kv_cache_bytes + info.scratch_bytes;
    let residency = Arc::new(Residency::default());
    let health = Arc::new(HealthCache {
        backend: info.backend.to_string(),
        vram_bytes_used: vram_bytes,
        vram: VramReport {
            weights_bytes: info.weights_bytes,
            kv_cache_bytes: info.kv_cache_bytes,
            scratch_bytes: info.scratch_bytes,
        },
        sm: info.sm.clone(),
        cuda_runtime_version: info.runtime_version.clone(),
        residency: residency.clone(),
    });
    let mut sched_config = options.scheduler.clone();
    sched_config.vram_bytes = vram_bytes;
    sched_config.worker_id = options.worker_id.clone();
    let scheduler = Scheduler::spawn(parts.device, parts.plugins.clone(), sched_config, residency)
        .map_err(LifecycleError::Thread)?;
    let (shutdown, _) = watch::channel(false);
    let chat = parts.model.chat_template.as_deref().map(|source| {
        ChatTemplate::load(source, &parts.model.bos_token, &parts.model.eos_token).map_err(|e| {
            error!(event = "chat_template_refused", error = %e, "chat requests will be refused");
            Arc::<str>::from(e.to_string())
        })
    });
    let state = AppState {
        worker_id: options.worker_id.clone(),
        scheduler: scheduler.scheduler().clone(),
        plugins: parts.plugins,
        model: Arc::new(parts.model),
        chat,
        health,
        limits: options.limits,
        started,
        shutdown,
        api_key: options.api_key.clone(),
    };
    let addr = listener.local_addr().map_err(LifecycleError::Listener)?;
    let (stop_server, stop_rx) = watch::channel(false);
    let router = app(state.clone());
    let server = tokio::spawn(connections::serve(
        listener,
        router,
        options.connections,
        stop_rx,
    ));
    info!(event = "listening", worker_id = %options.worker_id, %addr, "HTTP server listening");
    let worker = RunningWorker {
        addr,
        state,
        server,
        stop_server,
        scheduler,
        handle_sigterm: options.handle_sigterm,
    };
    if let Some(url) = &options.callback_url {
        let body = ReadyCallback {
            worker_id: &options.worker_id,
            model_ref: &options.model_ref,
            vram_bytes,
            uri: public_uri(addr),
        };
        if let Err(reason) = send_callback(url, &body).await {
            error!(event = "error", worker_id = %options.worker_id, code = ErrorCode::CallbackFailed.as_str(), url = %url, "{reason}");
            let _ = worker.stop_now().await;
            return Err(LifecycleError::Callback {
                url: url.clone(),
                reason,
            });
        }
    }
    info!(
        event = "ready",
        worker_id = %options.worker_id,
        vram_bytes,
        %addr,
        "worker ready"
    );
    Ok(worker)
}

async fn send_callback(url: &str, body: &ReadyCallback<'_>) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let resp = client
        .post(url)
        .json(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("the callback answered HTTP {}", resp.status()))
    }
}

/// SIGTERM or SIGINT (Ctrl-C), whichever comes first.
#[cfg(unix)]
async fn sigterm() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                error!(event = "error", "cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(not(unix))]
async fn sigterm() {
    let _ = tokio::signal::ctrl_c().await;
}

impl RunningWorker {
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Ask for a graceful shutdown (what `POST /shutdown` does).
    pub fn request_shutdown(&self) {
        self.state.request_shutdown();
    }

    /// Serve until a shutdown is requested, then drain: running jobs finish, new ones get 503,
    /// then the server stops and the scheduler thread returns the device.
    pub async fn wait(self) -> Result<(), LifecycleError> {
        let mut requested = self.state.shutdown.subscribe();
        let handle_sigterm = self.handle_sigterm;
        tokio::select! {
            _ = requested.wait_for(|v| *v) => {}
            _ = async { if handle_sigterm { sigterm().await } else { std::future::pending().await } } => {
                info!(event = "shutdown", worker_id = %self.state.worker_id, "SIGTERM/SIGINT received");
                self.state.request_shutdown();
            }
        }
        info!(
            event = "shutdown",
            worker_id = %self.state.worker_id,
            jobs_in_flight = self.state.scheduler.in_flight(),
            "draining"
        );
        self.state.scheduler.drained().await;
        self.stop_now().await
    }

    /// Stop the server and the scheduler now (jobs still running end with `CANCELLED`).
    async fn stop_now(self) -> Result<(), LifecycleError> {
        self.state.scheduler.close();
        self.stop_server.send_replace(true);
        let served = self.server.await;
        let scheduler = self.scheduler;
        let _ = tokio::task::spawn_blocking(move || scheduler.stop()).await;
        info!(event = "shutdown", worker_id = %self.state.worker_id, "worker stopped");
        match served {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(LifecycleError::Server(e.to_string())),
            Err(e) => Err(LifecycleError::Server(e.to_string())),
        }
    }
}
