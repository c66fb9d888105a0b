//! The device interface: the seam between scheduling and compute. Every backend implements
//! [`Device`] (the CPU reference in `orcd-cpu`, CUDA in `orcd-cuda`, the [`mock`] device the
//! plugin conformance kit and the server tests run on); [`host_logits`] holds the logits
//! operations on a host row that the CPU backend and the mock use and the CUDA kernels are
//! tested against; [`decode`] drives any device through a greedy generation or a scoring pass.
//!
//! This is the lowest engine crate: it holds the engine's one error enum ([`EngineError`], model
//! loading included) and the one public [`ErrorCode`] every crate maps its errors into.

pub mod decode;
mod device;
pub mod error;
pub mod error_code;
pub mod mock;

pub use device::{
    Device, DeviceInfo, LogitsWanted, SeqInput, SeqSlot, SlotExtent, host_logits, validate_batch,
    validate_prefix_copy,
};
pub use error::EngineError;
pub use error_code::ErrorCode;
