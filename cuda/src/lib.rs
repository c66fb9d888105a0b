//! The CUDA backend: the model's quantized GGUF weights held in VRAM, kernels compiled at
//! startup with NVRTC for the device's architecture (cached on disk), and the batched forward
//! pass of every architecture the engine loads (GPT-OSS's experts and attention sinks
//! included) over a paged KV cache, implementing [`orcd_device::Device`].
//! Logits stay on the GPU; argmax, top-k and penalties run there and return a few bytes.
//!
//! `cudarc` loads the driver and NVRTC at run time, so this crate builds on machines without
//! CUDA; there [`CudaBackend::new`] answers [`orcd_device::EngineError::BackendUnavailable`].

#![deny(clippy::too_many_arguments)]

pub mod backend;
pub mod compile;
pub mod driver;
pub mod error;
pub mod forward;
pub mod graph;
pub mod kernels;
pub mod kv_cache;
mod layer;
pub mod linear;
mod logits;
pub mod operand;
pub mod ops;
pub mod options;
pub mod packed;
pub mod scratch;
pub mod vram;
pub mod weights;

pub use backend::CudaBackend;
pub use driver::{GpuContext, driver_available};
pub use error::{CudaError, CudaResult};
pub use forward::{Exec, LayerOp, Plan};
pub use options::{CudaOptions, VramBudget};
pub use vram::{DeviceBuffer, Purpose, VramLedger, VramReport};
