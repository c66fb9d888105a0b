//! `POST /execute`: parse the body with the request-handler plugin, submit, stream SSE.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use axum::response::Response;

use super::error::AppError;
use super::sse::execute_stream;
use super::state::AppState;
use super::submit::submit;
use crate::error_code::ErrorCode;

pub async fn execute(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    if state.shutting_down() {
        return Err(AppError::new(
            ErrorCode::ShuttingDown,
            "the worker is shutting down and takes no new jobs",
        ));
    }
    let body = body.map_err(|e| AppError::invalid("body", e.body_text()))?;
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let handler = state.plugins.handler.clone();
    let limits = state.limits.request;
    let parsed = tokio::task::spawn_blocking(move || {
        handler.parse_execute(&body, content_type.as_deref(), &limits)
    })
    .await
    .map_err(|e| AppError::new(ErrorCode::Internal, format!("handler task failed: {e}")))??;
    let request = parsed?;
    let submitted = submit(&state, request.job_id, request.prompt, request.params).await?;
    Ok(execute_stream(state, submitted))
}
