//! The plugin conformance kit: runs a sampler, tokenizer or request-handler component through
//! the real plugin host (against the mock device for logits) and reports a pass/fail table;
//! constraint components against a vocabulary the kit builds.
//! `worker-orcd plugin check FILE.wasm` runs it from the worker binary (the kind is found in
//! the component); the binary `orcd-conform` is a thin wrapper too:
//!
//! ```text
//! orcd-conform sampler FILE.wasm [--max-us-per-token N]
//! orcd-conform tokenizer FILE.wasm --vocab X.gguf [--suite Y.gguf ...]
//! orcd-conform handler FILE.wasm
//! orcd-conform constraint FILE.wasm
//! ```
//!
//! Checks that fail are rows of the [`Report`]; a [`KitError`] means the run could not
//! happen (the file is not a plugin, or not of the kind asked for).

pub mod constraint_checks;
pub mod corpus;
mod error;
pub mod handler_checks;
pub mod harness;
mod report;
pub mod sampler_checks;
pub mod tokenizer_checks;

pub use constraint_checks::check_constraint;
pub use error::KitError;
pub use handler_checks::check_handler;
pub use harness::detect_kind;
pub use report::{Check, Report};
pub use sampler_checks::{SamplerOptions, check_sampler};
pub use tokenizer_checks::{Suite, check_tokenizer};
