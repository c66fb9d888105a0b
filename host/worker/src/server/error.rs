//! `AppError`: every failure a route returns before a stream starts, rendered as
//! `{"code","message","retriable"}` with the code's HTTP status. Internals go to the log; the
//! client gets a safe message.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error_code::ErrorCode;
use crate::plugins::{ConstraintRefusal, InvalidField, PluginFailure, SamplerRefusal};
use crate::scheduler::SubmitError;

#[derive(Debug, Clone)]
pub struct AppError {
    pub code: ErrorCode,
    pub message: String,
    /// The request field at fault, for `INVALID_REQUEST`.
    pub field: Option<String>,
    /// The scheduler counted this error already (a job's terminal event answered as an HTTP
    /// error); see `telemetry::ERRORS_TOTAL`.
    pub counted: bool,
}

#[derive(Serialize)]
struct Body<'a> {
    code: ErrorCode,
    message: &'a str,
    retriable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> AppError {
        AppError {
            code,
            message: message.into(),
            field: None,
            counted: false,
        }
    }

    /// A job's terminal error, answered as an HTTP error (a non-streaming request); the
    /// scheduler has counted it.
    pub fn job_ended(code: ErrorCode, message: impl Into<String>) -> AppError {
        AppError {
            counted: true,
            ..AppError::new(code, message)
        }
    }

    /// Count this error in `worker_errors_total` unless the scheduler did; called once, when
    /// the error becomes a response.
    pub fn record(&self) {
        if !self.counted {
            crate::telemetry::count_error(self.code);
        }
    }

    /// `INVALID_REQUEST` naming `field` (once: a message that already starts with it, as the
    /// request-handler plugin's do, is kept as it is).
    pub fn invalid(field: &str, message: impl std::fmt::Display) -> AppError {
        let message = message.to_string();
        let named = message
            .strip_prefix(field)
            .is_some_and(|rest| rest.starts_with(':'));
        AppError {
            code: ErrorCode::InvalidRequest,
            message: if named {
                message
            } else {
                format!("{field}: {message}")
            },
            field: Some(field.to_string()),
            counted: false,
        }
    }
}

impl From<InvalidField> for AppError {
    fn from(f: InvalidField) -> AppError {
        AppError::invalid(&f.field, f.message)
    }
}

impl From<PluginFailure> for AppError {
    fn from(f: PluginFailure) -> AppError {
        tracing::warn!(event = "error", code = %f.code, plugin = %f.plugin, "{}", f.message);
        AppError::new(f.code, format!("plugin {} failed", f.plugin))
    }
}

impl From<SamplerRefusal> for AppError {
    fn from(r: SamplerRefusal) -> AppError {
        match r {
            SamplerRefusal::NotFound { name, loaded } => {
                let shown: String = name.chars().take(64).collect();
                AppError {
                    code: ErrorCode::PluginNotFound,
                    message: format!(
                        "sampler: no sampler plugin {shown:?} is loaded (loaded: {})",
                        loaded.join(", ")
                    ),
                    field: Some("sampler".into()),
                    counted: false,
                }
            }
            SamplerRefusal::Invalid(f) => f.into(),
            SamplerRefusal::Failed(f) => f.into(),
        }
    }
}

impl From<ConstraintRefusal> for AppError {
    fn from(r: ConstraintRefusal) -> AppError {
        match r {
            ConstraintRefusal::NotFound { name, loaded } => {
                let shown: String = name.chars().take(64).collect();
                AppError {
                    field: Some("constraint_plugin".into()),
                    ..AppError::new(
                        ErrorCode::PluginNotFound,
                        format!(
                            "constraint_plugin: no constraint plugin {shown:?} is loaded (loaded: {})",
                            loaded.join(", ")
                        ),
                    )
                }
            }
            ConstraintRefusal::Invalid(f) => f.into(),
            ConstraintRefusal::Failed(f) => f.into(),
        }
    }
}

impl From<SubmitError> for AppError {
    fn from(e: SubmitError) -> AppError {
        match &e {
            SubmitError::DuplicateJobId(_) => AppError::invalid("job_id", &e),
            _ => AppError::new(e.code(), e.to_string()),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        self.record();
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = Body {
            code: self.code,
            message: &self.message,
            retriable: self.code.retriable(),
            field: self.field.as_deref(),
        };
        (status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_names_the_field_once() {
        let plain = AppError::invalid("prompt", "must not be empty");
        assert_eq!(plain.message, "prompt: must not be empty");
        let named = AppError::invalid("temperature", "temperature: must be in 0.0..=2.0, got 3");
        assert_eq!(named.message, "temperature: must be in 0.0..=2.0, got 3");
        let other = AppError::invalid("top_p", "top_pp: unrelated");
        assert_eq!(other.message, "top_p: top_pp: unrelated");
    }
}
