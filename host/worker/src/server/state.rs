//! What every route handler can reach: the scheduler handle, the plugins, the model's facts and
//! the cached health state. Nothing here calls the device.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use tokio::sync::watch;

use super::auth::ApiKey;
use super::chat_template::ChatTemplate;
use super::compute_budget::ComputeBudget;
use crate::plugins::{Plugins, RequestLimits};
use crate::scheduler::Scheduler;
use crate::served_device::Residency;

/// Facts about the loaded model, read once at startup.
#[derive(Debug, Clone, Default)]
pub struct ModelFacts {
    /// Model name reported in events and `/health` (the GGUF `general.name` or the file stem).
    pub name: String,
    /// The model's stable id in the OpenAI API (`/v1/models`, responses that name no model):
    /// the first `--served-model-name`, else the file stem (`SmolLM2-135M-Instruct.Q4_1`).
    pub id: String,
    /// `--served-model-name`: the only names OpenAI requests may ask for (others get 404
    /// `MODEL_NOT_FOUND`); empty = any name is served, as llama-server does.
    pub served_names: Vec<String>,
    /// Weight quantization, e.g. `Q4_1`.
    pub quant_kind: String,
    pub vocab_size: usize,
    pub context_length: usize,
    /// `tokenizer.chat_template`, or the architecture's built-in format when the file has
    /// none (see [`super::chat_template::template_for`]); `None` disables chat requests.
    pub chat_template: Option<String>,
    /// Text of the BOS / EOS tokens (the chat template's `bos_token` / `eos_token`).
    pub bos_token: String,
    pub eos_token: String,
}

/// Device facts for `/health`, gathered at startup and updated by the residency check.
#[derive(Debug)]
pub struct HealthCache {
    pub backend: String,
    pub vram_bytes_used: u64,
    /// `vram_bytes_used` by purpose (worker spec 1011).
    pub vram: VramReport,
    pub sm: Option<String>,
    pub cuda_runtime_version: Option<String>,
    /// The residency checks' outcome (a failure makes the worker `unhealthy`); written by the
    /// scheduler thread, which runs the checks.
    pub residency: Arc<Residency>,
}

/// Device memory held by purpose, in bytes (RAM on the CPU backend).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct VramReport {
    pub weights_bytes: u64,
    pub kv_cache_bytes: u64,
    pub scratch_bytes: u64,
}

impl HealthCache {
    pub fn is_resident(&self) -> bool {
        self.residency.is_resident()
    }
}

/// Request limits beyond what the handler plugin checks.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub request: RequestLimits,
    /// Longest prompt in tokens (`--max-tokens-in`); `None` = the model's context.
    pub max_tokens_in: Option<usize>,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// The per-request compute bound (`--max-request-gflop`); `None` = unbounded.
    pub compute: Option<ComputeBudget>,
}

/// Shared by all handlers.
#[derive(Clone)]
pub struct AppState {
    pub worker_id: String,
    pub scheduler: Scheduler,
    pub plugins: Plugins,
    pub model: Arc<ModelFacts>,
    /// The model's chat template compiled and probed once at startup
    /// ([`ChatTemplate::load`]), or why it cannot be used (`CHAT_TEMPLATE_FAILED` on
    /// `/v1/chat/completions`); `None` when the model has none.
    pub chat: Option<Result<Arc<ChatTemplate>, Arc<str>>>,
    pub health: Arc<HealthCache>,
    pub limits: ServerLimits,
    pub started: Instant,
    /// Flipped to true by `POST /shutdown` (SIGTERM flips it from the lifecycle).
    pub shutdown: watch::Sender<bool>,
    /// With a key, every route but `GET /health` needs `Authorization: Bearer KEY`.
    pub api_key: Option<ApiKey>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("worker_id", &self.worker_id)
            .finish_non_exhaustive()
    }
}

impl AppState {
    pub fn request_shutdown(&self) {
        self.scheduler.close();
        self.shutdown.send_replace(true);
    }

    pub fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }
}
