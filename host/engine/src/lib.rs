//! The inference engine: GGUF files, quantized tensor types, model definitions, and the
//! CPU reference backend. The CUDA backend (`orcd-cuda`) implements the same [`device::Device`]
//! interface and is checked against the CPU one.

pub mod device;
pub mod error;
pub mod mock;
pub mod quant;

pub use device::{Device, DeviceInfo, LogitsWanted, SeqInput, SeqSlot};
pub use error::EngineError;
