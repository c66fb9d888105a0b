//! VRAM policy (worker spec 1010-1012, 1020): every byte the backend holds on the GPU comes
//! from one allocator, through plain `cuMemAlloc` (never managed or mapped memory), and is
//! accounted by purpose (weights, KV cache, scratch). [`VramLedger::verify_residency`] asks the
//! driver about every live allocation (`cuPointerGetAttribute`: memory type DEVICE, not
//! managed); the backend calls it at startup and the server periodically.
//!
//! [`DeviceBuffer`] is the RAII handle: dropping it frees the memory and the ledger entry.

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::sync::{Arc, Mutex};

use cudarc::driver::{result, sys};

use crate::driver::{GpuContext, check};
use crate::error::{CudaError, CudaResult};

/// What an allocation is for; `/health` reports bytes per purpose.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Purpose {
    Weights,
    KvCache,
    Scratch,
}

/// Bytes held per purpose, and the device's own view.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct VramReport {
    pub weights_bytes: u64,
    pub kv_cache_bytes: u64,
    pub scratch_bytes: u64,
    /// Live allocations.
    pub allocations: usize,
}

impl VramReport {
    pub fn total(&self) -> u64 {
        self.weights_bytes + self.kv_cache_bytes + self.scratch_bytes
    }
}

/// The one allocator of a GPU: allocates, frees and keeps the ledger of live allocations.
#[derive(Debug)]
pub struct VramLedger {
    gpu: Arc<GpuContext>,
    /// Live allocations: device pointer -> (bytes, purpose).
    live: Mutex<BTreeMap<u64, (u64, Purpose)>>,
}

impl VramLedger {
    pub fn new(gpu: Arc<GpuContext>) -> Arc<VramLedger> {
        Arc::new(VramLedger {
            gpu,
            live: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn gpu(&self) -> &Arc<GpuContext> {
        &self.gpu
    }

    /// Allocate `bytes` of device memory (at least 1 byte) for `purpose`.
    /// Out of memory becomes [`CudaError::OutOfMemory`] (the engine's `InsufficientVram`) with the bytes asked for and
    /// the bytes the device reported free.
    pub fn alloc(self: &Arc<Self>, bytes: u64, purpose: Purpose) -> CudaResult<DeviceBuffer> {
        self.gpu.bind()?;
        let size = bytes.max(1);
        // SAFETY: a plain device allocation in the current context.
        let ptr = match unsafe { result::malloc_sync(size as usize) } {
            Ok(p) => p,
            Err(e) if e.0 == sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY => {
                let available = self.gpu.mem_info().map(|(free, _)| free).unwrap_or(0);
                return Err(CudaError::OutOfMemory {
                    required: size,
                    available,
                });
            }
            Err(e) => return check(Err(e), "cuMemAlloc"),
        };
        self.lock().insert(ptr, (size, purpose));
        Ok(DeviceBuffer {
            ptr,
            bytes: size,
            purpose,
            ledger: Arc::clone(self),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, (u64, Purpose)>> {
        // A poisoned ledger is still a consistent map (inserts and removes are single calls).
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes held per purpose.
    pub fn report(&self) -> VramReport {
        let live = self.lock();
        let mut r = VramReport {
            allocations: live.len(),
            ..VramReport::default()
        };
        for &(bytes, purpose) in live.values() {
            match purpose {
                Purpose::Weights => r.weights_bytes += bytes,
                Purpose::KvCache => r.kv_cache_bytes += bytes,
                Purpose::Scratch => r.scratch_bytes += bytes,
            }
        }
        r
    }

    /// Check with the driver that every live allocation is plain device memory of this GPU's
    /// context (memory type DEVICE, not managed). Returns how many were checked.
    pub fn verify_residency(&self) -> CudaResult<usize> {
        self.gpu.bind()?;
        let live: Vec<u64> = self.lock().keys().copied().collect();
        for &ptr in &live {
            let mut mem_type: u32 = 0;
            // SAFETY: writes one unsigned int for a pointer we allocated and still own.
            check(
                unsafe {
                    sys::cuPointerGetAttribute(
                        &mut mem_type as *mut u32 as *mut c_void,
                        sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
                        ptr,
                    )
                }
                .result(),
                "cuPointerGetAttribute(MEMORY_TYPE)",
            )?;
            let mut managed: u32 = 0;
            // SAFETY: as above (a boolean attribute, one unsigned int).
            check(
                unsafe {
                    sys::cuPointerGetAttribute(
                        &mut managed as *mut u32 as *mut c_void,
                        sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_IS_MANAGED,
                        ptr,
                    )
                }
                .result(),
                "cuPointerGetAttribute(IS_MANAGED)",
            )?;
            if mem_type != sys::CUmemorytype::CU_MEMORYTYPE_DEVICE as u32 || managed != 0 {
                return Err(CudaError::Buffer(format!(
                    "allocation {ptr:#x} is not plain device memory (memory type {mem_type}, managed {managed})"
                )));
            }
        }
        Ok(live.len())
    }
}

/// A device allocation; freed (and removed from the ledger) on drop.
#[derive(Debug)]
pub struct DeviceBuffer {
    ptr: u64,
    bytes: u64,
    purpose: Purpose,
    ledger: Arc<VramLedger>,
}

impl DeviceBuffer {
    /// The device address.
    pub fn ptr(&self) -> u64 {
        self.ptr
    }

    /// The device address `offset` bytes in (checked against the size).
    pub fn ptr_at(&self, offset: u64) -> CudaResult<u64> {
        if offset > self.bytes {
            return Err(CudaError::Buffer(format!(
                "offset {offset} past the end of a {}-byte buffer",
                self.bytes
            )));
        }
        Ok(self.ptr + offset)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn purpose(&self) -> Purpose {
        self.purpose
    }

    /// Copy `src` to `offset` bytes in, synchronously (setup paths; steps use the stream).
    pub fn write_sync<T: Copy>(&self, offset: u64, src: &[T]) -> CudaResult<()> {
        let len = std::mem::size_of_val(src) as u64;
        if offset.checked_add(len).is_none_or(|end| end > self.bytes) {
            return Err(CudaError::Buffer(format!(
                "write of {len} bytes at {offset} past the end of a {}-byte buffer",
                self.bytes
            )));
        }
        // Drain the stream first: a queued kernel may still read the old contents.
        self.ledger.gpu.synchronize()?;
        // SAFETY: the range was checked against the allocation; `src` is plain data.
        check(
            unsafe { result::memcpy_htod_sync(self.ptr + offset, src) },
            "cuMemcpyHtoD",
        )
    }

    /// Copy `dst.len()` elements from `offset` bytes in, synchronously after the stream's work.
    pub fn read_sync<T: Copy>(&self, offset: u64, dst: &mut [T]) -> CudaResult<()> {
        let len = std::mem::size_of_val(dst) as u64;
        if offset.checked_add(len).is_none_or(|end| end > self.bytes) {
            return Err(CudaError::Buffer(format!(
                "read of {len} bytes at {offset} past the end of a {}-byte buffer",
                self.bytes
            )));
        }
        self.ledger.gpu.synchronize()?;
        // SAFETY: the range was checked against the allocation; `dst` is plain data.
        check(
            unsafe { result::memcpy_dtoh_sync(dst, self.ptr + offset) },
            "cuMemcpyDtoH",
        )
    }

    /// Fill every byte with `value`, synchronously (0xFF makes every f32 a NaN: scratch is
    /// poisoned this way so that a read of something no kernel wrote shows up in tests).
    pub fn fill_sync(&self, value: u8) -> CudaResult<()> {
        self.ledger.gpu.bind()?;
        // SAFETY: the whole allocation, which we own.
        check(
            unsafe { result::memset_d8_sync(self.ptr, value, self.bytes as usize) },
            "cuMemsetD8",
        )
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        self.ledger.lock().remove(&self.ptr);
        if self.ledger.gpu.bind().is_ok() {
            // SAFETY: we own the allocation; the stream is drained first so no queued kernel
            // still uses it. Errors at teardown cannot be handled.
            unsafe {
                let _ = result::stream::synchronize(self.ledger.gpu.stream());
                let _ = result::free_sync(self.ptr);
            }
        }
    }
}

/// Page-locked host memory for staging copies (weight upload, step metadata, small results).
/// Kernels never read it: it is a copy source/target only.
#[derive(Debug)]
pub struct PinnedBuffer {
    ptr: *mut u8,
    bytes: usize,
    gpu: Arc<GpuContext>,
}

// SAFETY: the buffer is exclusively owned host memory.
unsafe impl Send for PinnedBuffer {}

impl PinnedBuffer {
    pub fn new(gpu: &Arc<GpuContext>, bytes: usize) -> CudaResult<PinnedBuffer> {
        gpu.bind()?;
        // SAFETY: flags 0: page-locked, not mapped into the device's address space.
        let ptr = check(
            unsafe { result::malloc_host(bytes.max(1), 0) },
            "cuMemHostAlloc",
        )?;
        Ok(PinnedBuffer {
            ptr: ptr as *mut u8,
            bytes: bytes.max(1),
            gpu: Arc::clone(gpu),
        })
    }

    pub fn len(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` points to `bytes` bytes we own exclusively.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.bytes) }
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: as above, shared.
        unsafe { std::slice::from_raw_parts(self.ptr, self.bytes) }
    }
}

impl Drop for PinnedBuffer {
    fn drop(&mut self) {
        if self.gpu.bind().is_ok() {
            // SAFETY: allocated by cuMemHostAlloc and not freed before; drained stream first.
            unsafe {
                let _ = result::stream::synchronize(self.gpu.stream());
                let _ = result::free_host(self.ptr as *mut c_void);
            }
        }
    }
}
