//! The Wasm glue: exports the WIT `constraint` world (`wit/constraint.wit`) on top of the
//! native library. `init` pulls the vocabulary from the host through the `vocab` import and
//! builds the token trie once per instance; `compile` keeps the last compiled constraints, so
//! requests with the same schema share their automaton and cached masks.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, OnceLock};

use orcd_common::vocab_import::{self, Packed, VocabImport, VocabSizes};
use orcd_common::{TokenType, Vocab};

use crate::{Compiled, ConstraintError, Kind, Session, Vocabulary};

wit_bindgen::generate!({
    path: "../../wit",
    world: "constraint",
});

use exports::worker::plugin::constraint_plugin::{Guest, GuestConstraint};
use worker::plugin::host;
use worker::plugin::types::{Error, PluginInfo};
use worker::plugin::vocab::{self, PackedBytes};

/// Compiled constraints kept per instance.
const COMPILED_CACHE: usize = 32;

static VOCAB: OnceLock<Arc<Vocabulary>> = OnceLock::new();
/// Recently compiled constraints, most recent last.
static COMPILED: Mutex<Vec<(Kind, String, Arc<Compiled>)>> = Mutex::new(Vec::new());

struct Plugin;

impl From<ConstraintError> for Error {
    fn from(e: ConstraintError) -> Error {
        Error {
            code: e.code().to_string(),
            message: e.to_string(),
        }
    }
}

/// The host's `vocab` import, for the shared reader.
struct Import;

impl VocabImport for Import {
    fn header(&self) -> (Vocab, VocabSizes) {
        let info = vocab::info();
        let sizes = VocabSizes {
            tokens: info.size,
            merges: info.merges_count,
            has_scores: info.has_scores,
        };
        let header = Vocab {
            model: info.model,
            pre: info.pre,
            name: host::model().name,
            add_bos: info.add_bos,
            add_eos: info.add_eos,
            add_space_prefix: info.add_space_prefix,
            bos: info.bos,
            eos: info.eos,
            eot: info.eot,
            unk: info.unk,
            pad: info.pad,
            ..Vocab::default()
        };
        (header, sizes)
    }
    fn tokens(&self, start: u32, count: u32) -> Packed {
        packed(vocab::tokens(start, count))
    }
    fn scores(&self, start: u32, count: u32) -> Vec<f32> {
        vocab::scores(start, count)
    }
    fn token_types(&self, start: u32, count: u32) -> Vec<TokenType> {
        // The WIT enum lists the types in llama.cpp's numbering.
        let types = vocab::token_types(start, count);
        types
            .into_iter()
            .map(|t| TokenType::from_i32(t as i32))
            .collect()
    }
    fn merges(&self, start: u32, count: u32) -> Packed {
        packed(vocab::merges(start, count))
    }
}

fn packed(p: PackedBytes) -> Packed {
    Packed {
        data: p.data,
        lengths: p.lengths,
    }
}

/// Reads the whole vocabulary from the host.
fn read_vocab() -> Result<Vocab, ConstraintError> {
    vocab_import::read_vocab(&Import, orcd_tokenizer::MAX_VOCAB_TOKENS)
        .map_err(ConstraintError::Vocab)
}

/// The compiled constraint of (kind, spec), from the cache or compiled now.
fn compiled(kind: Kind, spec: &str) -> Result<Arc<Compiled>, ConstraintError> {
    let vocab = VOCAB
        .get()
        .ok_or_else(|| ConstraintError::Vocab("init must succeed before compile".into()))?;
    let mut cache = COMPILED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(at) = cache.iter().position(|(k, s, _)| *k == kind && s == spec) {
        let hit = cache.remove(at);
        let c = hit.2.clone();
        cache.push(hit);
        return Ok(c);
    }
    let c = Arc::new(Compiled::new(kind, spec, vocab.clone())?);
    if cache.len() >= COMPILED_CACHE {
        cache.remove(0);
    }
    cache.push((kind, spec.to_string(), c.clone()));
    Ok(c)
}

impl Guest for Plugin {
    type Constraint = Constraint;

    fn info() -> PluginInfo {
        PluginInfo {
            name: "structured".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "JSON Schema (OpenAI strict subset), any JSON object, regular expressions and GBNF grammars as token masks".into(),
        }
    }

    fn init() -> Result<(), Error> {
        if VOCAB.get().is_some() {
            return Ok(());
        }
        let vocab = Vocabulary::from_spec(read_vocab()?)?;
        host::log(
            host::LogLevel::Info,
            &format!(
                "constraint tables ready: {} tokens, {} trie nodes",
                vocab.size(),
                vocab.trie().len()
            ),
        );
        let _ = VOCAB.set(Arc::new(vocab));
        Ok(())
    }
}

/// The `constraint` resource: one request's session.
struct Constraint(RefCell<Session>);

impl GuestConstraint for Constraint {
    fn compile(
        kind: String,
        spec: String,
    ) -> Result<exports::worker::plugin::constraint_plugin::Constraint, Error> {
        let c = compiled(Kind::parse(&kind)?, &spec)?;
        Ok(exports::worker::plugin::constraint_plugin::Constraint::new(
            Constraint(RefCell::new(Session::new(c))),
        ))
    }

    fn allowed(&self, remaining: u32) -> Vec<u32> {
        self.0.borrow().allowed_within(remaining).to_vec()
    }

    fn advance(&self, token: u32) -> Result<(), Error> {
        Ok(self.0.borrow_mut().advance(token)?)
    }

    fn is_complete(&self) -> bool {
        self.0.borrow().is_complete()
    }
}

export!(Plugin);
