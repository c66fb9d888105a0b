//! orcd-tokenizer: the tokenizers of GGUF models, with llama.cpp's exact behaviour.
//!
//! - BPE (`tokenizer.ggml.model = gpt2`: GPT-2, Llama 3, Qwen2, SmolLM, DeepSeek, ...; and
//!   SentencePiece-style `gemma4`) with the pre-tokenizer chosen by `tokenizer.ggml.pre` from
//!   llama.cpp's table ([`pre_table`], run by [`pretokenize`]), merges by rank ([`bpe`]).
//! - SentencePiece-style BPE (`tokenizer.ggml.model = llama`: Llama 2, Phi-3, Gemma 3), merges
//!   by score with `<0xXX>` byte fallback ([`spm`]).
//! - WordPiece (`tokenizer.ggml.model = bert`, encoders only) ([`wpm`]). UGM (T5), RWKV and
//!   PLaMo-2 vocabularies are refused with `UNSUPPORTED_TOKENIZER`: no decoder model in
//!   llama.cpp's pre-tokenizer list uses them.
//! - Special tokens cut out of the text first ([`special`]); streaming detokenization that
//!   never splits a UTF-8 character ([`stream`]).
//!
//! The crate is a plain library (the host's tests use it natively) and, built for
//! `wasm32-wasip2`, the tokenizer plugin: the `guest` module exports the WIT `tokenizer` world.

pub mod bpe;
pub mod byte_level;
pub mod error;
pub mod fast_map;
pub mod pre_table;
pub mod pretokenize;
pub mod special;
pub mod split_custom;
pub mod split_regex;
pub mod spm;
pub mod stream;
pub mod tokenizer;
pub mod unicode_class;
pub mod wpm;

#[cfg(all(target_arch = "wasm32", feature = "component"))]
mod guest;

pub use error::TokenizerError;
pub use stream::StreamDecoder;
pub use tokenizer::{MAX_TEXT_BYTES, MAX_VOCAB_TOKENS, Tokenizer, TokenizerKind};
