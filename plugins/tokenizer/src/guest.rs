//! The Wasm glue: exports the WIT `tokenizer` world (`wit/tokenizer.wit`) on top of the native
//! library. `init` pulls the vocabulary from the host through the `vocab` import in chunks and
//! builds the [`Tokenizer`] once; the other exports use it.

use std::sync::OnceLock;

use crate::{Tokenizer, TokenizerError};
use orcd_common::{TokenType, Vocab};

wit_bindgen::generate!({
    path: "../../wit",
    world: "tokenizer",
});

use exports::worker::plugin::tokenizer_plugin::Guest;
use worker::plugin::host;
use worker::plugin::types::{Error, PluginInfo};
use worker::plugin::vocab::{self, PackedBytes};

/// How many entries one bulk `vocab` call asks for.
const CHUNK: u32 = 16_384;

static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();

struct Plugin;

impl From<TokenizerError> for Error {
    fn from(e: TokenizerError) -> Error {
        Error {
            code: e.code().to_string(),
            message: e.to_string(),
        }
    }
}

fn not_initialised() -> Error {
    Error {
        code: "NOT_INITIALISED".into(),
        message: "init must succeed before the tokenizer is used".into(),
    }
}

fn tokenizer() -> Result<&'static Tokenizer, Error> {
    TOKENIZER.get().ok_or_else(not_initialised)
}

/// Splits packed entries into their byte strings, refusing lengths that overrun the data.
fn unpack(p: PackedBytes, into: &mut Vec<Vec<u8>>) -> Result<(), TokenizerError> {
    let mut at = 0usize;
    for len in p.lengths {
        let end = at
            .checked_add(len as usize)
            .filter(|&e| e <= p.data.len())
            .ok_or_else(|| {
                TokenizerError::InvalidVocab("packed vocabulary entry overruns its data".into())
            })?;
        into.push(p.data[at..end].to_vec());
        at = end;
    }
    Ok(())
}

/// Reads the whole vocabulary from the host.
fn read_vocab() -> Result<Vocab, TokenizerError> {
    let info = vocab::info();
    let n = info.size;
    if n as usize > crate::MAX_VOCAB_TOKENS || info.merges_count as usize > crate::MAX_VOCAB_TOKENS
    {
        return Err(TokenizerError::InvalidVocab(format!(
            "{n} tokens and {} merges (at most {} each)",
            info.merges_count,
            crate::MAX_VOCAB_TOKENS
        )));
    }
    let mut tokens = Vec::with_capacity(n as usize);
    let mut scores = Vec::with_capacity(if info.has_scores { n as usize } else { 0 });
    let mut token_types = Vec::with_capacity(n as usize);
    let mut start = 0;
    while start < n {
        let count = CHUNK.min(n - start);
        unpack(vocab::tokens(start, count), &mut tokens)?;
        if info.has_scores {
            scores.extend(vocab::scores(start, count));
        }
        token_types.extend(
            vocab::token_types(start, count)
                .into_iter()
                .map(convert_type),
        );
        start += count;
    }
    if tokens.len() != n as usize || token_types.len() != n as usize {
        return Err(TokenizerError::InvalidVocab(format!(
            "host gave {} tokens and {} types for a vocabulary of {n}",
            tokens.len(),
            token_types.len()
        )));
    }
    let mut merges = Vec::with_capacity(info.merges_count as usize);
    let mut start = 0;
    while start < info.merges_count {
        let count = CHUNK.min(info.merges_count - start);
        unpack(vocab::merges(start, count), &mut merges)?;
        start += count;
    }
    Ok(Vocab {
        model: info.model,
        pre: info.pre,
        name: host::model().name,
        tokens,
        scores,
        token_types,
        merges,
        add_bos: info.add_bos,
        add_eos: info.add_eos,
        add_space_prefix: info.add_space_prefix,
        bos: info.bos,
        eos: info.eos,
        eot: info.eot,
        unk: info.unk,
        pad: info.pad,
    })
}

fn convert_type(t: vocab::TokenType) -> TokenType {
    match t {
        vocab::TokenType::Undefined => TokenType::Undefined,
        vocab::TokenType::Normal => TokenType::Normal,
        vocab::TokenType::Unknown => TokenType::Unknown,
        vocab::TokenType::Control => TokenType::Control,
        vocab::TokenType::UserDefined => TokenType::UserDefined,
        vocab::TokenType::Unused => TokenType::Unused,
        vocab::TokenType::Byte => TokenType::Byte,
    }
}

impl Guest for Plugin {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "orcd".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "llama.cpp-compatible GGUF tokenizers: BPE (gpt2, gemma4) with every llama.cpp pre-tokenizer, SentencePiece (llama), WordPiece (bert)"
                .into(),
        }
    }

    fn init() -> Result<(), Error> {
        if TOKENIZER.get().is_some() {
            return Ok(());
        }
        let tokenizer = Tokenizer::new(read_vocab()?)?;
        host::log(
            host::LogLevel::Info,
            &format!(
                "tokenizer ready: {:?}, {} tokens",
                tokenizer.kind(),
                tokenizer.vocab_size()
            ),
        );
        // A concurrent init cannot happen (one instance, one thread); keep the first.
        let _ = TOKENIZER.set(tokenizer);
        Ok(())
    }

    fn encode(text: String, parse_special: bool, add_bos: bool) -> Result<Vec<u32>, Error> {
        Ok(tokenizer()?.encode(&text, parse_special, add_bos)?)
    }

    fn token_piece(id: u32) -> Result<Vec<u8>, Error> {
        Ok(tokenizer()?.token_to_piece(id, false)?)
    }

    fn decode(ids: Vec<u32>, skip_special: bool) -> Result<Vec<u8>, Error> {
        Ok(tokenizer()?.decode(&ids, skip_special)?)
    }
}

export!(Plugin);
