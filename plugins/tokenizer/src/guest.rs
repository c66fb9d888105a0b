//! The Wasm glue: exports the WIT `tokenizer` world (`wit/tokenizer.wit`) on top of the native
//! library. `init` pulls the vocabulary from the host through the `vocab` import in chunks and
//! builds the [`Tokenizer`] once; the other exports use it.

use std::sync::OnceLock;

use crate::{Tokenizer, TokenizerError};
use orcd_common::Vocab;
use orcd_common::vocab_import;

wit_bindgen::generate!({
    path: "../../wit",
    world: "tokenizer",
});

use exports::worker::plugin::tokenizer_plugin::Guest;
use worker::plugin::host;
use worker::plugin::types::{Error, PluginInfo};
use worker::plugin::vocab;

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

// `struct Import`: the host's `vocab` import, for the shared reader.
orcd_common::vocab_import_over_bindings!(vocab, host);

/// Reads the whole vocabulary from the host.
fn read_vocab() -> Result<Vocab, TokenizerError> {
    vocab_import::read_vocab(&Import, crate::MAX_VOCAB_TOKENS).map_err(TokenizerError::InvalidVocab)
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
