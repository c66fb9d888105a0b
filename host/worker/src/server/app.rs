//! The router: every route of the worker API (see `docs/openapi.yaml`).

use std::any::Any;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::error::AppError;
use super::state::AppState;
use super::{auth, control, execute, health, metrics, openai, plugins, tokenize};
use crate::error_code::ErrorCode;

/// The OpenAPI description served at `GET /openapi.yaml`.
pub const OPENAPI_YAML: &str = include_str!("../../../../docs/openapi.yaml");

/// Build the worker's router over `state`.
pub fn app(state: AppState) -> Router {
    let body_limit = state.limits.max_body_bytes;
    Router::new()
        .route("/execute", post(execute::execute))
        .route("/cancel", post(control::cancel))
        .route("/shutdown", post(control::shutdown))
        .route("/health", get(health::health))
        .route("/metrics", get(metrics::metrics))
        .route("/plugins", get(plugins::plugins))
        .route("/v1/completions", post(openai::completions))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/models", get(openai::models))
        .route("/tokenize", post(tokenize::tokenize))
        .route("/detokenize", post(tokenize::detokenize))
        .route("/openapi.yaml", get(openapi))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .with_state(state)
}

async fn openapi() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/yaml")], OPENAPI_YAML)
}

/// A handler that panicked answers 500 `INTERNAL`; the panic goes to the log only.
fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!(
        event = "error",
        code = ErrorCode::Internal.as_str(),
        "request handler panicked: {what}"
    );
    AppError::new(ErrorCode::Internal, "internal error").into_response()
}

async fn not_found() -> AppError {
    AppError::new(ErrorCode::NotFound, "no such route")
}
