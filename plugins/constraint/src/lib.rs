//! The built-in constraint plugin `structured`: constrained decoding for JSON Schema
//! (OpenAI strict mode's subset, see [`schema`]), any JSON object, regular expressions, and
//! GBNF grammars (llama.cpp's notation, see [`gbnf`]).
//!
//! How a constraint becomes a token mask:
//! 1. the spec becomes a regular expression over the output text ([`schema`], [`gbnf`]) and a dense
//!    byte-level DFA whose *live* states (those that can still reach a match) are known
//!    ([`dfa`]);
//! 2. the vocabulary's token bytes (as the worker streams them) form a flat preorder trie
//!    ([`trie`], [`vocab`]), built once per plugin instance;
//! 3. the mask of a DFA state is one scan of the trie that prunes every subtree leading to a
//!    non-live state, cached per state ([`constraint::Compiled::mask`]); end-of-generation
//!    tokens are allowed exactly when the output is complete.
//!
//! Fails closed by construction: an allowed token always leaves the output completable at
//! the byte level. When the vocabulary cannot spell any completion (no token is allowed), the
//! host ends the request with a typed error.
//!
//! The logic is plain Rust, tested natively; the `constraint` world's exports wrap it in Wasm
//! builds ([`guest`]).

pub mod constraint;
pub mod dfa;
pub mod error;
pub mod gbnf;
pub mod int_range;
pub mod schema;
pub mod trie;
pub mod vocab;

#[cfg(target_arch = "wasm32")]
mod guest;

pub use constraint::{Compiled, Kind, Session};
pub use error::ConstraintError;
pub use vocab::Vocabulary;
