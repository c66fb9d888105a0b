//! `GET /health`: answered from cached state only (no device call).

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::state::AppState;

/// The `/health` body (worker spec).
#[derive(Debug, Serialize)]
pub struct Health {
    /// `healthy` or `unhealthy` (a failed residency check).
    pub status: &'static str,
    pub model: String,
    pub resident: bool,
    pub quant_kind: String,
    pub vram_bytes_used: u64,
    pub tokenizer_kind: String,
    pub vocab_size: usize,
    pub context_length: usize,
    pub uptime_seconds: u64,
    /// The backend: `cuda` or `cpu`.
    pub backend: String,
    /// Jobs reserved, waiting or running.
    pub jobs_in_flight: usize,
    pub shutting_down: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sm: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cuda_runtime_version: Option<String>,
}

pub async fn health(State(state): State<AppState>) -> Json<Health> {
    let resident = state.health.is_resident();
    Json(Health {
        status: if resident { "healthy" } else { "unhealthy" },
        model: state.model.name.clone(),
        resident,
        quant_kind: state.model.quant_kind.clone(),
        vram_bytes_used: state.health.vram_bytes_used,
        tokenizer_kind: state.plugins.tokenizer.kind(),
        vocab_size: state.model.vocab_size,
        context_length: state.model.context_length,
        uptime_seconds: state.started.elapsed().as_secs(),
        backend: state.health.backend.clone(),
        jobs_in_flight: state.scheduler.in_flight(),
        shutting_down: state.shutting_down(),
        sm: state.health.sm.clone(),
        cuda_runtime_version: state.health.cuda_runtime_version.clone(),
    })
}
