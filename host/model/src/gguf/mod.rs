//! GGUF, llama.cpp's model file format: a validating reader (over a memory map or owned bytes)
//! and a writer (for tests, fuzz seeds and `worker-orcd synth`).
//!
//! The reader treats every file as hostile: counts, lengths, nesting, shapes and offsets are
//! capped ([`limits`]) and checked against the bytes that exist before anything is allocated or
//! sliced, and every failure is an [`orcd_device::EngineError`] naming the key, tensor or field.

mod cursor;
pub mod limits;
mod reader;
mod tensor;
mod value;
mod writer;

pub use reader::{ALIGNMENT_KEY, GGUF_MAGIC, GgufFile};
pub use tensor::TensorInfo;
pub use value::{MetaArray, MetaValue, ValueType};
pub use writer::GgufWriter;
