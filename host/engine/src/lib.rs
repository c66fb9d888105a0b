//! The inference engine: GGUF files, quantized tensor types, model definitions, and the
//! CPU reference backend. The CUDA backend (`orcd-cuda`) implements the same [`device::Device`]
//! interface and is checked against the CPU one.

pub mod cpu;
pub mod device;
pub mod error;
pub mod error_code;
pub mod gguf;
pub mod kv_type;
pub mod mock;
pub mod model;
pub mod quant;
pub mod synth;
pub mod vocab;

pub use device::{Device, DeviceInfo, LogitsWanted, SeqInput, SeqSlot};
pub use error::EngineError;
pub use error_code::ErrorCode;
pub use kv_type::KvType;
