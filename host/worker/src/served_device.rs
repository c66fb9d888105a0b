//! The device as the worker serves it: the engine's [`Device`] plus the residency check of the
//! VRAM-only policy (worker spec 1012), run at startup and periodically by the scheduler thread
//! (the thread that owns the device and its context).

use orcd_engine::cpu::CpuBackend;
use orcd_engine::mock::MockDevice;
use orcd_engine::{Device, EngineError};

/// A backend the worker can serve from.
pub trait ServedDevice: Device {
    /// Check that every allocation is plain device memory (not managed, not host-mapped).
    /// Backends without device memory have nothing to check.
    fn verify_residency(&self) -> Result<(), EngineError>;
}

impl ServedDevice for CpuBackend {
    fn verify_residency(&self) -> Result<(), EngineError> {
        Ok(())
    }
}

impl ServedDevice for MockDevice {
    fn verify_residency(&self) -> Result<(), EngineError> {
        Ok(())
    }
}

impl ServedDevice for orcd_cuda::CudaBackend {
    fn verify_residency(&self) -> Result<(), EngineError> {
        orcd_cuda::CudaBackend::verify_residency(self).map(|_| ())
    }
}
