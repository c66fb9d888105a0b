//! The Wasm glue: exports the WIT `constraint` world (`wit/constraint.wit`) on top of the
//! native library. `init` pulls the vocabulary from the host through the `vocab` import and
//! builds the token trie once per instance; `compile` keeps the last compiled constraints, so
//! requests with the same schema share their automaton and cached masks.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, OnceLock};

use orcd_common::Vocab;
use orcd_common::vocab_import;

use crate::{Compiled, ConstraintError, Kind, Session, Vocabulary};

wit_bindgen::generate!({
    path: "../../wit",
    world: "constraint",
});

use exports::worker::plugin::constraint_plugin::{Guest, GuestConstraint};
use worker::plugin::host;
use worker::plugin::types::{Error, PluginInfo};
use worker::plugin::vocab;

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

// `struct Import`: the host's `vocab` import, for the shared reader.
orcd_common::vocab_import_over_bindings!(vocab, host);

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
