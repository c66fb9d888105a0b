//! The CUDA driver: one GPU's primary context and the stream every step runs on.
//!
//! `cudarc` loads `libcuda` at run time, and panics when it is missing; [`GpuContext::new`]
//! checks that the library is present first, so a machine without a driver gets
//! [`CudaError::Unavailable`] rather than a panic. Every driver result goes through
//! [`check`], which turns failures into [`crate::CudaError::Driver`] naming the call.

use crate::error::{CudaError, CudaResult};
use cudarc::driver::{result, sys};

/// The driver's name for a failed result, e.g. `CUDA_ERROR_ILLEGAL_ADDRESS`.
fn code_name(e: &result::DriverError) -> String {
    e.error_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|_| format!("{:?}", e.0))
}

/// Turn a driver result into [`CudaError::Driver`], naming what was being done.
pub(crate) fn check<T>(r: Result<T, result::DriverError>, what: &str) -> CudaResult<T> {
    r.map_err(|e| CudaError::Driver {
        call: what.to_string(),
        code: code_name(&e),
    })
}

/// Turn a launch's result into [`CudaError::Launch`] naming the kernel.
pub(crate) fn check_launch(r: Result<(), result::DriverError>, kernel: &str) -> CudaResult<()> {
    r.map_err(|e| CudaError::Launch {
        kernel: kernel.to_string(),
        code: code_name(&e),
    })
}

/// Whether the CUDA driver library can be opened on this machine.
pub fn driver_available() -> bool {
    // SAFETY: only tries to dlopen the driver library by its usual names.
    unsafe { sys::is_culib_present() }
}

/// One GPU: its primary context (retained for our lifetime) and our stream.
#[derive(Debug)]
pub struct GpuContext {
    ordinal: usize,
    device: sys::CUdevice,
    ctx: sys::CUcontext,
    stream: sys::CUstream,
    name: String,
    /// Compute capability (major, minor).
    cc: (i32, i32),
    /// Driver version as reported by `cuDriverGetVersion`, e.g. 13000.
    driver_version: i32,
}

// SAFETY: the handles are plain driver handles; every method makes the context current on the
// calling thread before using them, and `&mut`/`&` access is serialized by the owner.
unsafe impl Send for GpuContext {}
// SAFETY: as above; shared use only reads handles, and the driver API is thread-safe.
unsafe impl Sync for GpuContext {}

impl GpuContext {
    /// Open GPU `ordinal`: retain its primary context and create a non-blocking stream.
    pub fn new(ordinal: usize) -> CudaResult<GpuContext> {
        if !driver_available() {
            return Err(CudaError::Unavailable(
                "the CUDA driver library (libcuda) is not installed on this machine".into(),
            ));
        }
        check(result::init(), "cuInit")?;
        let count = check(result::device::get_count(), "cuDeviceGetCount")?;
        if ordinal >= count.max(0) as usize {
            return Err(CudaError::Unavailable(format!(
                "GPU {ordinal} does not exist ({count} CUDA devices)"
            )));
        }
        let device = check(result::device::get(ordinal as i32), "cuDeviceGet")?;
        // SAFETY: `device` came from cuDeviceGet.
        let ctx = check(
            unsafe { result::primary_ctx::retain(device) },
            "cuDevicePrimaryCtxRetain",
        )?;
        // SAFETY: `ctx` is the primary context just retained.
        check(unsafe { result::ctx::set_current(ctx) }, "cuCtxSetCurrent")?;
        let stream = check(
            result::stream::create(result::stream::StreamKind::NonBlocking),
            "cuStreamCreate",
        )?;
        let name = check(result::device::get_name(device), "cuDeviceGetName")?;
        let attr = |a| {
            // SAFETY: `device` is valid; the attribute is a plain integer query.
            check(
                unsafe { result::device::get_attribute(device, a) },
                "cuDeviceGetAttribute",
            )
        };
        let cc = (
            attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
            attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
        );
        let mut driver_version = 0i32;
        // SAFETY: writes one int.
        check(
            unsafe { sys::cuDriverGetVersion(&mut driver_version) }.result(),
            "cuDriverGetVersion",
        )?;
        Ok(GpuContext {
            ordinal,
            device,
            ctx,
            stream,
            name,
            cc,
            driver_version,
        })
    }

    /// Make this context current on the calling thread (cheap; call at every entry point).
    pub fn bind(&self) -> CudaResult<()> {
        // SAFETY: `ctx` stays retained until drop.
        check(
            unsafe { result::ctx::set_current(self.ctx) },
            "cuCtxSetCurrent",
        )
    }

    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Compute capability (major, minor), e.g. (9, 0) on Hopper.
    pub fn compute_capability(&self) -> (i32, i32) {
        self.cc
    }

    /// Driver version, e.g. 13000 for CUDA 13.0.
    pub fn driver_version(&self) -> i32 {
        self.driver_version
    }

    pub(crate) fn stream(&self) -> sys::CUstream {
        self.stream
    }

    /// (free, total) device memory in bytes.
    pub fn mem_info(&self) -> CudaResult<(u64, u64)> {
        self.bind()?;
        let (free, total) = check(result::mem_get_info(), "cuMemGetInfo")?;
        Ok((free as u64, total as u64))
    }

    /// Wait for everything queued on the stream.
    pub fn synchronize(&self) -> CudaResult<()> {
        self.bind()?;
        // SAFETY: `stream` lives until drop.
        check(
            unsafe { result::stream::synchronize(self.stream) },
            "cuStreamSynchronize",
        )
    }
}

impl Drop for GpuContext {
    fn drop(&mut self) {
        // SAFETY: the stream and the retained context are ours; errors at teardown are ignored
        // (nothing can be done about them and a destructor must not panic).
        unsafe {
            if result::ctx::set_current(self.ctx).is_ok() {
                let _ = result::stream::synchronize(self.stream);
                let _ = result::stream::destroy(self.stream);
            }
            let _ = result::primary_ctx::release(self.device);
        }
    }
}
