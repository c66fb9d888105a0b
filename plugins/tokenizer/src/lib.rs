//! orcd-tokenizer: the tokenizers of GGUF models, with llama.cpp's exact behaviour.
//!
//! - Byte-level BPE (`tokenizer.ggml.model = gpt2`: GPT-2, Llama 3, Qwen2, SmolLM) with the
//!   pre-tokenizer chosen by `tokenizer.ggml.pre` ([`pretokenize`]), merges by rank ([`bpe`]).
//! - SentencePiece-style BPE (`tokenizer.ggml.model = llama`: Llama 2, Phi-3, Gemma 3), merges
//!   by score with `<0xXX>` byte fallback ([`spm`]).
//! - Special tokens cut out of the text first ([`special`]); streaming detokenization that
//!   never splits a UTF-8 character ([`stream`]).
//!
//! The crate is a plain library (the host's tests use it natively) and, built for
//! `wasm32-wasip2`, the tokenizer plugin: the `guest` module exports the WIT `tokenizer` world.

pub mod bpe;
pub mod byte_level;
pub mod error;
pub mod fast_map;
pub mod pretokenize;
pub mod special;
pub mod spm;
pub mod stream;
pub mod tokenizer;
pub mod unicode_class;
pub mod vocab;

#[cfg(target_arch = "wasm32")]
mod guest;

pub use error::TokenizerError;
pub use stream::StreamDecoder;
pub use tokenizer::{MAX_TEXT_BYTES, MAX_VOCAB_TOKENS, Tokenizer, TokenizerKind};
pub use vocab::{TokenType, VocabSpec};
