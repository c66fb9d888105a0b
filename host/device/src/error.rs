//! The engine's one error enum. Every variant maps to a stable public code (see [`EngineError::code`]).

use thiserror::Error;

use crate::error_code::ErrorCode;

/// Everything that can go wrong in the engine: bad model files, bad inputs, exhausted capacity,
/// device failures.
#[derive(Debug, Error)]
pub enum EngineError {
    #[error("cannot read {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid GGUF file; `what` names the key, tensor or field at fault.
    #[error("invalid GGUF file: {what}")]
    InvalidGguf { what: String },
    #[error("unsupported architecture `{0}`")]
    UnsupportedArchitecture(String),
    #[error("unsupported tensor type {ty} for tensor `{tensor}`")]
    UnsupportedTensorType { tensor: String, ty: u32 },
    /// A metadata key the architecture needs is missing or has the wrong type.
    #[error("metadata key `{key}`: {problem}")]
    BadMetadata { key: String, problem: String },
    /// A tensor the architecture needs is missing or has the wrong shape or type.
    #[error("tensor `{tensor}`: {problem}")]
    BadTensor { tensor: String, problem: String },
    /// A caller passed something out of range (token id, position, slot).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The KV-cache budget cannot hold the sequence.
    #[error("KV cache exhausted: need {needed_tokens} tokens, {free_tokens} free")]
    KvCacheExhausted {
        needed_tokens: usize,
        free_tokens: usize,
    },
    /// Not enough device memory for the model at startup.
    #[error("insufficient VRAM: {required} bytes required, {available} available")]
    InsufficientVram { required: u64, available: u64 },
    /// A CUDA driver, NVRTC or launch failure.
    #[error("CUDA error: {0}")]
    Cuda(String),
    #[error("backend unavailable: {0}")]
    BackendUnavailable(String),
}

impl EngineError {
    /// The stable public code of this error (the worker spec's error codes).
    pub fn code(&self) -> ErrorCode {
        match self {
            EngineError::Io { .. }
            | EngineError::InvalidGguf { .. }
            | EngineError::UnsupportedArchitecture(_)
            | EngineError::UnsupportedTensorType { .. }
            | EngineError::BadMetadata { .. }
            | EngineError::BadTensor { .. }
            | EngineError::BackendUnavailable(_) => ErrorCode::ModelLoadFailed,
            EngineError::InvalidInput(_) => ErrorCode::InvalidRequest,
            EngineError::KvCacheExhausted { .. } => ErrorCode::VramOom,
            EngineError::InsufficientVram { .. } => ErrorCode::InsufficientVram,
            EngineError::Cuda(_) => ErrorCode::CudaError,
        }
    }

    /// Shorthand for [`EngineError::InvalidGguf`].
    pub fn gguf(what: impl Into<String>) -> Self {
        EngineError::InvalidGguf { what: what.into() }
    }
}
