//! The request-handler plugin `orcd`: the worker's HTTP request and event formats.
//!
//! - [`execute`]: parse and validate an `/execute` body into a job (every field, type and
//!   range of the spec; unknown fields refused), refusals naming the field.
//! - [`stop`]: stop sequences: the earliest match, and how much text to hold back.
//! - [`events`]: the SSE events `started`, `token`, `metrics`, `end`, `error`.
//!
//! The logic is plain Rust, tested natively; the `request-handler` world's exports wrap it
//! in Wasm builds.

pub mod constraint;
pub mod events;
pub mod execute;
pub mod stop;

#[cfg(target_arch = "wasm32")]
mod component;
