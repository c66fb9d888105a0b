//! [`CudaError`]: what can go wrong below the backend, typed, and its one mapping into the
//! engine's error ([`EngineError`]) with `From`, so that every `?` at the crate's edge converts.
//!
//! The mapping keeps the engine codes the worker has always answered: driver, NVRTC, launch and
//! buffer failures are `CUDA_ERROR`; out of memory at startup is `INSUFFICIENT_VRAM`; a launch
//! asked for an impossible shape is `INVALID_REQUEST`; no driver or compiler library is a
//! `MODEL_LOAD_FAILED` (backend unavailable). The messages are the ones the flattened strings
//! carried before.

use orcd_device::EngineError;

/// A failure of the CUDA backend's lower layers (driver, compiler, launches, device memory).
#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    /// A driver API call failed: `call` names what was being done, `code` the driver's name
    /// for the result (e.g. `CUDA_ERROR_ILLEGAL_ADDRESS`).
    #[error("{call}: {code}")]
    Driver { call: String, code: String },
    /// A kernel launch failed (the launch itself; faults inside a kernel surface at the next
    /// synchronizing call as [`CudaError::Driver`]).
    #[error("{kernel}: {code}")]
    Launch { kernel: String, code: String },
    /// NVRTC failed to create, compile or emit a module; `detail` holds its log.
    #[error("{0}")]
    Nvrtc(String),
    /// A kernel the launchers name is missing from the loaded modules.
    #[error("no kernel named {0}")]
    MissingKernel(String),
    /// A device allocation did not fit.
    #[error("out of device memory: {required} bytes asked for, {available} free")]
    OutOfMemory { required: u64, available: u64 },
    /// A launch or copy was asked for a shape or range the kernels or buffers cannot take.
    #[error("{0}")]
    Shape(String),
    /// A device buffer was used outside its allocation or is not what it must be.
    #[error("{0}")]
    Buffer(String),
    /// The driver or compiler library, or the GPU asked for, is not on this machine.
    #[error("{0}")]
    Unavailable(String),
}

impl CudaError {
    /// Shorthand for [`CudaError::Shape`].
    pub fn shape(msg: impl Into<String>) -> CudaError {
        CudaError::Shape(msg.into())
    }
}

impl From<CudaError> for EngineError {
    fn from(e: CudaError) -> EngineError {
        match e {
            CudaError::Driver { .. }
            | CudaError::Launch { .. }
            | CudaError::Nvrtc(_)
            | CudaError::MissingKernel(_)
            | CudaError::Buffer(_) => EngineError::Cuda(e.to_string()),
            CudaError::OutOfMemory {
                required,
                available,
            } => EngineError::InsufficientVram {
                required,
                available,
            },
            CudaError::Shape(msg) => EngineError::InvalidInput(msg),
            CudaError::Unavailable(msg) => EngineError::BackendUnavailable(msg),
        }
    }
}

/// The crate's results.
pub type CudaResult<T> = Result<T, CudaError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_keeps_its_engine_code() {
        let d = || CudaError::Driver {
            call: "cuMemcpyDtoH".into(),
            code: "CUDA_ERROR_ILLEGAL_ADDRESS".into(),
        };
        assert_eq!(EngineError::from(d()).code(), "CUDA_ERROR");
        assert_eq!(
            EngineError::from(d()).to_string(),
            "CUDA error: cuMemcpyDtoH: CUDA_ERROR_ILLEGAL_ADDRESS"
        );
        let oom = CudaError::OutOfMemory {
            required: 10,
            available: 3,
        };
        assert!(matches!(
            EngineError::from(oom),
            EngineError::InsufficientVram {
                required: 10,
                available: 3
            }
        ));
        assert_eq!(
            EngineError::from(CudaError::shape("rope over 3 of 64 dims")).code(),
            "INVALID_REQUEST"
        );
        assert_eq!(
            EngineError::from(CudaError::Unavailable("no libcuda".into())).code(),
            "MODEL_LOAD_FAILED"
        );
        assert_eq!(
            EngineError::from(CudaError::MissingKernel("x".into())).code(),
            "CUDA_ERROR"
        );
    }
}
