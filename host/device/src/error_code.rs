//! The stable public error codes of the worker API, with their HTTP status and whether a client
//! may retry. These strings are part of the API (worker spec, "Errors"); never rename one.
//!
//! The one place a code is spelled: every crate's error enum maps each of its variants to one
//! of these exhaustively (`EngineError::code`, the plugin runtime's `PluginError::code`, the
//! worker's `AppError`), so no code string exists outside this file.

use serde::Serialize;

/// A stable error code as it reaches a client (HTTP body or SSE `error` event).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The request body or a parameter is invalid (400).
    InvalidRequest,
    /// The model file could not be loaded (500, startup only).
    ModelLoadFailed,
    /// Not enough device memory for the model (503, startup only).
    InsufficientVram,
    /// The KV cache for a request cannot be had (500 / SSE; retriable).
    VramOom,
    /// A device failure during a step (500).
    CudaError,
    /// The job ran past `--inference-timeout-sec` (504).
    InferenceTimeout,
    /// The job was cancelled by `/cancel` or by the client going away (499).
    Cancelled,
    /// A bug in the worker (500).
    Internal,
    /// A plugin trapped (a plugin bug); the job ends, the worker keeps serving (500).
    PluginTrap,
    /// A plugin reported an expected failure through its `result` (500).
    PluginError,
    /// A plugin ran past its time bound (500).
    PluginTimeout,
    /// A plugin went past its memory limit (500).
    PluginMemory,
    /// A plugin returned something the host cannot accept, e.g. a token id outside the
    /// vocabulary (500).
    PluginInvalidOutput,
    /// A request named a plugin that is not loaded (400).
    PluginNotFound,
    /// A plugin could not be loaded (startup).
    PluginLoadFailed,
    /// The queue is full; retry later (503, retriable).
    WorkerBusy,
    /// The worker is draining for shutdown and takes no new jobs (503).
    ShuttingDown,
    /// No such route (404).
    NotFound,
    /// `--api-key` is set and the request carries no `Authorization: Bearer` with that key
    /// (401).
    Unauthorized,
    /// A control route (`/shutdown`, `/cancel`) got a body that is not `application/json`
    /// (415): a cross-site "simple" POST cannot reach it.
    UnsupportedMediaType,
    /// An OpenAI request named a model this worker does not serve under
    /// `--served-model-name` (404, OpenAI's `model_not_found`).
    ModelNotFound,
    /// Constrained decoding reached a point where no token of the vocabulary can continue
    /// the output towards the constraint (`response_format`, `regex`): the job ends rather
    /// than emit text outside it (500, after `started`: an SSE `error` event).
    ConstraintDeadEnd,
    /// The model's chat template cannot render (it does not compile, uses a feature the
    /// worker cannot render, or stalled past its render deadline): `/v1/chat/completions` is
    /// refused with the reason, other endpoints serve on (500).
    ChatTemplateFailed,
    /// Startup only, never in a response: the `--callback-url` announcement failed, which is
    /// fatal (the worker logs this code and exits non-zero).
    CallbackFailed,
}

impl ErrorCode {
    /// The code's wire spelling, e.g. `"VRAM_OOM"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "INVALID_REQUEST",
            ErrorCode::ModelLoadFailed => "MODEL_LOAD_FAILED",
            ErrorCode::InsufficientVram => "INSUFFICIENT_VRAM",
            ErrorCode::VramOom => "VRAM_OOM",
            ErrorCode::CudaError => "CUDA_ERROR",
            ErrorCode::InferenceTimeout => "INFERENCE_TIMEOUT",
            ErrorCode::Cancelled => "CANCELLED",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::PluginTrap => "PLUGIN_TRAP",
            ErrorCode::PluginError => "PLUGIN_ERROR",
            ErrorCode::PluginTimeout => "PLUGIN_TIMEOUT",
            ErrorCode::PluginMemory => "PLUGIN_MEMORY",
            ErrorCode::PluginInvalidOutput => "PLUGIN_INVALID_OUTPUT",
            ErrorCode::PluginNotFound => "PLUGIN_NOT_FOUND",
            ErrorCode::PluginLoadFailed => "PLUGIN_LOAD_FAILED",
            ErrorCode::WorkerBusy => "WORKER_BUSY",
            ErrorCode::ShuttingDown => "SHUTTING_DOWN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ErrorCode::ModelNotFound => "MODEL_NOT_FOUND",
            ErrorCode::ConstraintDeadEnd => "CONSTRAINT_DEAD_END",
            ErrorCode::ChatTemplateFailed => "CHAT_TEMPLATE_FAILED",
            ErrorCode::CallbackFailed => "CALLBACK_FAILED",
        }
    }

    /// The HTTP status a response with this code carries.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidRequest | ErrorCode::PluginNotFound => 400,
            ErrorCode::NotFound | ErrorCode::ModelNotFound => 404,
            ErrorCode::Unauthorized => 401,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::Cancelled => 499,
            ErrorCode::InsufficientVram | ErrorCode::WorkerBusy | ErrorCode::ShuttingDown => 503,
            ErrorCode::InferenceTimeout => 504,
            ErrorCode::ModelLoadFailed
            | ErrorCode::VramOom
            | ErrorCode::CudaError
            | ErrorCode::Internal
            | ErrorCode::PluginTrap
            | ErrorCode::PluginError
            | ErrorCode::PluginTimeout
            | ErrorCode::PluginMemory
            | ErrorCode::PluginInvalidOutput
            | ErrorCode::PluginLoadFailed
            | ErrorCode::ConstraintDeadEnd
            | ErrorCode::ChatTemplateFailed
            | ErrorCode::CallbackFailed => 500,
        }
    }

    /// Whether the same request may succeed later: capacity errors only.
    pub fn retriable(self) -> bool {
        matches!(
            self,
            ErrorCode::VramOom | ErrorCode::InsufficientVram | ErrorCode::WorkerBusy
        )
    }

    /// Every code, for lookups and documentation checks.
    pub const ALL: [ErrorCode; 24] = [
        ErrorCode::InvalidRequest,
        ErrorCode::ModelLoadFailed,
        ErrorCode::InsufficientVram,
        ErrorCode::VramOom,
        ErrorCode::CudaError,
        ErrorCode::InferenceTimeout,
        ErrorCode::Cancelled,
        ErrorCode::Internal,
        ErrorCode::PluginTrap,
        ErrorCode::PluginError,
        ErrorCode::PluginTimeout,
        ErrorCode::PluginMemory,
        ErrorCode::PluginInvalidOutput,
        ErrorCode::PluginNotFound,
        ErrorCode::PluginLoadFailed,
        ErrorCode::WorkerBusy,
        ErrorCode::ShuttingDown,
        ErrorCode::NotFound,
        ErrorCode::Unauthorized,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::ModelNotFound,
        ErrorCode::ConstraintDeadEnd,
        ErrorCode::ChatTemplateFailed,
        ErrorCode::CallbackFailed,
    ];

    /// The code with this wire spelling, if there is one (documentation checks read codes
    /// back this way; nothing maps an unknown spelling to a code silently).
    pub fn from_wire(code: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == code)
    }
}

/// Tests and logs compare a code with its wire spelling.
impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_codes_have_spec_statuses() {
        let spec = [
            (ErrorCode::InvalidRequest, "INVALID_REQUEST", 400, false),
            (ErrorCode::ModelLoadFailed, "MODEL_LOAD_FAILED", 500, false),
            (ErrorCode::InsufficientVram, "INSUFFICIENT_VRAM", 503, true),
            (ErrorCode::VramOom, "VRAM_OOM", 500, true),
            (ErrorCode::CudaError, "CUDA_ERROR", 500, false),
            (ErrorCode::InferenceTimeout, "INFERENCE_TIMEOUT", 504, false),
            (ErrorCode::Cancelled, "CANCELLED", 499, false),
            (ErrorCode::Internal, "INTERNAL", 500, false),
        ];
        for (code, name, status, retriable) in spec {
            assert_eq!(code.as_str(), name);
            assert_eq!(serde_json::to_value(code).unwrap(), name);
            assert_eq!(code.http_status(), status);
            assert_eq!(code.retriable(), retriable, "{name}");
            assert_eq!(ErrorCode::from_wire(name), Some(code));
        }
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_wire(code.as_str()), Some(code));
        }
        assert_eq!(ErrorCode::from_wire("NO_SUCH_CODE"), None);
        {}
    }
}
