//! `GET /metrics`: the Prometheus text exposition of [`crate::telemetry`].

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

use super::state::AppState;
use crate::telemetry;

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    metrics::gauge!(telemetry::UPTIME_SECONDS).set(state.started.elapsed().as_secs_f64());
    metrics::gauge!(telemetry::VRAM_BYTES).set(state.health.vram_bytes_used as f64);
    for (change, count) in state.plugins.catalog.changes() {
        metrics::counter!(telemetry::PLUGIN_CHANGES_TOTAL, "change" => change).absolute(count);
    }
    metrics::gauge!(telemetry::PLUGINS_LOADED).set(state.plugins.catalog.loaded().len() as f64);
    let text = telemetry::prometheus().render();
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
}
