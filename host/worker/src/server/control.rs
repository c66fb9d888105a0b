//! Control routes: `POST /cancel` and `POST /shutdown`. Both answer 202 at once; the effect
//! follows (the job's stream ends with `CANCELLED`; the worker drains and exits 0).

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tracing::info;

use super::error::AppError;
use super::job_id::validate_job_id;
use super::state::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    pub job_id: String,
}

#[derive(Debug, Serialize)]
pub struct Accepted {
    pub accepted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
}

/// Idempotent: cancelling an unknown or finished job is accepted too.
pub async fn cancel(
    State(state): State<AppState>,
    body: Result<Json<CancelRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<Accepted>), AppError> {
    let Json(req) = body.map_err(|e| AppError::invalid("job_id", e.body_text()))?;
    validate_job_id(&req.job_id)?;
    info!(event = "cancel", worker_id = %state.worker_id, job_id = %req.job_id, "cancel requested");
    state.scheduler.cancel(&req.job_id);
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            accepted: true,
            job_id: Some(req.job_id),
        }),
    ))
}

pub async fn shutdown(State(state): State<AppState>) -> (StatusCode, Json<Accepted>) {
    info!(event = "shutdown", worker_id = %state.worker_id, "shutdown requested over HTTP");
    state.request_shutdown();
    (
        StatusCode::ACCEPTED,
        Json(Accepted {
            accepted: true,
            job_id: None,
        }),
    )
}
