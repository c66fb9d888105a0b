//! The CPU reference backend: the same models as the CUDA backend, computed on the host from the
//! quantized weights as stored in the mapped GGUF file (no dequantized copy of the model), batched
//! and multithreaded. Its dot products quantize activations to 8 bits the way llama.cpp's CPU
//! path does ([`DotPath::Q8`]); the exact f32 path ([`DotPath::Exact`]) stays selectable as the
//! reference the fast one is tested against.

pub mod backend;
pub mod forward;
pub mod kv_cache;
pub mod matmul;
pub mod ops;

pub use backend::{CpuBackend, CpuOptions, DEFAULT_KV_TOKENS};
pub use matmul::DotPath;
