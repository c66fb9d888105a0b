//! Control routes: `POST /cancel` and `POST /shutdown`. Both answer 202 at once; the effect
//! follows (the job's stream ends with `CANCELLED`; the worker drains and exits 0).
//!
//! Both accept only `Content-Type: application/json` (415 `UNSUPPORTED_MEDIA_TYPE` otherwise):
//! a web page can send a cross-site "simple" POST (`text/plain`, form types) without the
//! browser asking the worker first, but not an `application/json` one, so a page a person
//! visits cannot stop the worker or cancel its jobs.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use tracing::info;

use super::error::AppError;
use super::job_id::validate_job_id;
use super::state::AppState;
use crate::error_code::ErrorCode;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    pub job_id: String,
}

/// The body `/shutdown` accepts (nothing, or an empty object).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShutdownRequest {}

#[derive(Debug, Serialize)]
pub struct Accepted {
    pub accepted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
}

/// 415 unless the request says `Content-Type: application/json` (parameters such as
/// `charset` allowed).
fn require_json(headers: &HeaderMap) -> Result<(), AppError> {
    let essence = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    match essence.as_deref() {
        Some("application/json") => Ok(()),
        other => Err(AppError::new(
            ErrorCode::UnsupportedMediaType,
            format!(
                "control routes take `Content-Type: application/json`, got {}",
                other.map_or("none".to_string(), |t| format!("`{t}`"))
            ),
        )),
    }
}

/// Idempotent: cancelling an unknown or finished job is accepted too.
pub async fn cancel(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Accepted>), AppError> {
    require_json(&headers)?;
    let body = body.map_err(|e| AppError::invalid("body", e.body_text()))?;
    let req: CancelRequest =
        serde_json::from_slice(&body).map_err(|e| AppError::invalid("job_id", e))?;
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

/// The body may be empty or `{}`.
pub async fn shutdown(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Accepted>), AppError> {
    require_json(&headers)?;
    let body = body.map_err(|e| AppError::invalid("body", e.body_text()))?;
    if !body.iter().all(u8::is_ascii_whitespace) {
        serde_json::from_slice::<ShutdownRequest>(&body)
            .map_err(|e| AppError::invalid("body", format!("must be empty or {{}}: {e}")))?;
    }
    info!(event = "shutdown", worker_id = %state.worker_id, "shutdown requested over HTTP");
    state.request_shutdown();
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            accepted: true,
            job_id: None,
        }),
    ))
}
