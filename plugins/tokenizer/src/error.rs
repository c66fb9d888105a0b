//! The tokenizer's one error enum. Each variant has a stable code (see [`TokenizerError::code`])
//! that the Wasm guest passes to the host in the WIT `error` record.

use thiserror::Error;

/// Everything that can go wrong building a tokenizer from a vocabulary or using it.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum TokenizerError {
    /// `tokenizer.ggml.model` names an algorithm this crate does not implement.
    #[error("unsupported tokenizer model `{0}` (supported: gpt2, gemma4, llama, bert)")]
    UnsupportedModel(String),
    /// `tokenizer.ggml.pre` names a byte-level BPE pre-tokenizer this crate does not implement.
    #[error("unsupported pre-tokenizer `{0}`")]
    UnsupportedPreTokenizer(String),
    /// A pre-tokenizer regex that this crate cannot run with llama.cpp's meaning.
    #[error("pre-tokenizer regex `{regex}` is not supported: {why}")]
    UnsupportedRegex { regex: String, why: String },
    /// A pre-tokenizer regex gave up on the text (its backtracking limit).
    #[error("pre-tokenizer regex `{regex}` failed on the text: {why}")]
    PreTokenizeFailed { regex: String, why: String },
    /// The vocabulary itself is inconsistent (wrong array lengths, duplicate tokens, ...).
    #[error("invalid vocabulary: {0}")]
    InvalidVocab(String),
    /// A token id outside the vocabulary was passed in.
    #[error("token id {id} is outside the vocabulary of {vocab_size} tokens")]
    UnknownToken { id: u32, vocab_size: u32 },
    /// The text to encode is longer than [`crate::MAX_TEXT_BYTES`].
    #[error("text of {len} bytes exceeds the limit of {max} bytes")]
    TextTooLong { len: usize, max: usize },
}

impl TokenizerError {
    /// The stable SCREAMING_SNAKE_CASE code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            TokenizerError::UnsupportedModel(_) => "UNSUPPORTED_TOKENIZER",
            TokenizerError::UnsupportedPreTokenizer(_) => "UNSUPPORTED_PRE_TOKENIZER",
            TokenizerError::UnsupportedRegex { .. } => "UNSUPPORTED_PRE_TOKENIZER",
            TokenizerError::PreTokenizeFailed { .. } => "PRE_TOKENIZE_FAILED",
            TokenizerError::InvalidVocab(_) => "INVALID_VOCAB",
            TokenizerError::UnknownToken { .. } => "UNKNOWN_TOKEN",
            TokenizerError::TextTooLong { .. } => "TEXT_TOO_LONG",
        }
    }
}
