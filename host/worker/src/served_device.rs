//! The device as the worker serves it: the engine's [`Device`] plus the residency check of the
//! VRAM-only policy (worker spec 1012), run at startup and periodically by the scheduler thread
//! (the thread that owns the device and its context).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use orcd_cpu::CpuBackend;
use orcd_device::mock::MockDevice;
use orcd_device::{Device, EngineError};

/// A backend the worker can serve from.
pub trait ServedDevice: Device {
    /// Check that every allocation is plain device memory (not managed, not host-mapped) and
    /// return how many allocations were checked. Backends without device memory have nothing to
    /// check.
    fn verify_residency(&self) -> Result<usize, EngineError>;
}

impl ServedDevice for CpuBackend {
    fn verify_residency(&self) -> Result<usize, EngineError> {
        Ok(0)
    }
}

impl ServedDevice for MockDevice {
    fn verify_residency(&self) -> Result<usize, EngineError> {
        Ok(0)
    }
}

impl ServedDevice for orcd_cuda::CudaBackend {
    fn verify_residency(&self) -> Result<usize, EngineError> {
        orcd_cuda::CudaBackend::verify_residency(self)
    }
}

/// The outcome of the residency checks: written by the scheduler thread (which owns the
/// device), read by `/health` without touching the device.
#[derive(Debug)]
pub struct Residency {
    resident: AtomicBool,
    checks: AtomicU64,
    failures: AtomicU64,
    /// Allocations verified by the last check.
    allocations: AtomicU64,
    /// Milliseconds since the Unix epoch of the last check; 0 before the first.
    last_check_unix_ms: AtomicU64,
}

impl Default for Residency {
    fn default() -> Self {
        Residency {
            resident: AtomicBool::new(true),
            checks: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            allocations: AtomicU64::new(0),
            last_check_unix_ms: AtomicU64::new(0),
        }
    }
}

impl Residency {
    /// Record one check: `Ok(allocations verified)` or the failure.
    pub fn record(&self, outcome: &Result<usize, EngineError>) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.last_check_unix_ms.store(now, Ordering::Release);
        self.checks.fetch_add(1, Ordering::AcqRel);
        match outcome {
            Ok(n) => {
                self.allocations.store(*n as u64, Ordering::Release);
                self.resident.store(true, Ordering::Release);
            }
            Err(_) => {
                self.failures.fetch_add(1, Ordering::AcqRel);
                self.resident.store(false, Ordering::Release);
            }
        }
    }

    /// False once the last check failed.
    pub fn is_resident(&self) -> bool {
        self.resident.load(Ordering::Acquire)
    }

    pub fn checks(&self) -> u64 {
        self.checks.load(Ordering::Acquire)
    }

    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Acquire)
    }

    pub fn allocations(&self) -> u64 {
        self.allocations.load(Ordering::Acquire)
    }

    pub fn last_check_unix_ms(&self) -> u64 {
        self.last_check_unix_ms.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn residency_records_checks_and_failures() {
        let r = Residency::default();
        assert!(r.is_resident());
        assert_eq!((r.checks(), r.last_check_unix_ms()), (0, 0));
        r.record(&Ok(12));
        assert!(r.is_resident());
        assert_eq!((r.checks(), r.failures(), r.allocations()), (1, 0, 12));
        assert!(r.last_check_unix_ms() > 0);
        r.record(&Err(EngineError::Cuda("managed memory".into())));
        assert!(!r.is_resident());
        assert_eq!((r.checks(), r.failures()), (2, 1));
        r.record(&Ok(12));
        assert!(r.is_resident());
    }
}
