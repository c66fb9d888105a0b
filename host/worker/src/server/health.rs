//! `GET /health`: answered from cached state only (no device call).

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::state::{AppState, VramReport};
use crate::plugins::{PluginLoadFailure, PluginRow};

/// The `/health` body (worker spec).
#[derive(Debug, Serialize)]
pub struct Health {
    /// `healthy` or `unhealthy` (a failed residency check).
    pub status: &'static str,
    pub model: String,
    pub resident: bool,
    pub quant_kind: String,
    pub vram_bytes_used: u64,
    /// `vram_bytes_used` by purpose (worker spec 1011).
    pub vram: VramReport,
    /// The residency checks (worker spec 1012).
    pub residency: ResidencyReport,
    pub tokenizer_kind: String,
    pub vocab_size: usize,
    pub context_length: usize,
    pub uptime_seconds: u64,
    /// The backend: `cuda` or `cpu`.
    pub backend: String,
    /// Jobs reserved, waiting or running.
    pub jobs_in_flight: usize,
    pub shutting_down: bool,
    /// Plugin files in `--plugin-dir` that fail to load, with their errors (empty when none).
    pub plugin_load_failures: Vec<PluginLoadFailure>,
    /// The plugins loaded (built-in and from `--plugin-dir`) with their versions.
    pub plugins: Vec<PluginRow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sm: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cuda_runtime_version: Option<String>,
}

/// What the residency checks found, as of the last one.
#[derive(Debug, Serialize)]
pub struct ResidencyReport {
    /// Checks run since startup (the first one runs before the server answers).
    pub checks: u64,
    pub failures: u64,
    /// Allocations the last check verified as plain device memory (0 on the CPU backend).
    pub allocations_verified: u64,
    /// When the last check ran, in milliseconds since the Unix epoch.
    pub last_check_unix_ms: u64,
}

pub async fn health(State(state): State<AppState>) -> Json<Health> {
    let resident = state.health.is_resident();
    Json(Health {
        status: if resident { "healthy" } else { "unhealthy" },
        model: state.model.name.clone(),
        resident,
        quant_kind: state.model.quant_kind.clone(),
        vram_bytes_used: state.health.vram_bytes_used,
        vram: state.health.vram,
        residency: ResidencyReport {
            checks: state.health.residency.checks(),
            failures: state.health.residency.failures(),
            allocations_verified: state.health.residency.allocations(),
            last_check_unix_ms: state.health.residency.last_check_unix_ms(),
        },
        tokenizer_kind: state.plugins.tokenizer.kind(),
        vocab_size: state.model.vocab_size,
        context_length: state.model.context_length,
        uptime_seconds: state.started.elapsed().as_secs(),
        backend: state.health.backend.clone(),
        jobs_in_flight: state.scheduler.in_flight(),
        shutting_down: state.shutting_down(),
        plugin_load_failures: state.plugins.catalog.load_failures(),
        plugins: state.plugins.catalog.loaded(),
        sm: state.health.sm.clone(),
        cuda_runtime_version: state.health.cuda_runtime_version.clone(),
    })
}
