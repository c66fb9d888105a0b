//! Caps on everything a GGUF header can ask the reader to allocate or walk.
//!
//! A GGUF file is hostile input: every count and length in it is checked against these limits
//! and against the bytes that actually remain before anything is allocated. The limits are
//! generous for real models (Gemma 3 has 262144-entry vocabulary arrays, Llama 3 has 280147
//! merges, chat templates are a few KB, an 8B model has 291 tensors) but finite.

/// Most tensors a file may declare.
pub const MAX_TENSORS: u64 = 1 << 16;

/// Most metadata key/value pairs a file may declare.
pub const MAX_METADATA: u64 = 1 << 16;

/// Longest string (key, string value, array element), in bytes.
pub const MAX_STRING_LEN: u64 = 1 << 24;

/// Longest tensor name, in bytes (ggml itself stops at 63).
pub const MAX_TENSOR_NAME_LEN: u64 = 256;

/// Most elements in one metadata array.
pub const MAX_ARRAY_LEN: u64 = 1 << 24;

/// Deepest nesting of arrays inside arrays (a plain array has depth 1).
pub const MAX_ARRAY_DEPTH: usize = 4;

/// Most dimensions of a tensor (ggml's `GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;

/// Largest `general.alignment` accepted.
pub const MAX_ALIGNMENT: u64 = 1 << 20;

/// The alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
