//! The Wasm glue: exports the WIT `constraint` world (`wit/constraint.wit`) on top of the
//! native library. `init` pulls the vocabulary from the host through the `vocab` import and
//! builds the token trie once per instance; `compile` keeps the last compiled constraints, so
//! requests with the same schema share their automaton and cached masks.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, OnceLock};

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

/// How many entries one bulk `vocab` call asks for.
const CHUNK: u32 = 16_384;
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

/// Splits packed entries into their byte strings, refusing lengths that overrun the data.
fn unpack(p: PackedBytes, into: &mut Vec<Vec<u8>>) -> Result<(), ConstraintError> {
    let mut at = 0usize;
    for len in p.lengths {
        let end = at
            .checked_add(len as usize)
            .filter(|&e| e <= p.data.len())
            .ok_or_else(|| ConstraintError::Vocab("packed entry overruns its data".into()))?;
        into.push(p.data[at..end].to_vec());
        at = end;
    }
    Ok(())
}

/// Reads the vocabulary from the host (tokens, types, merges: what the tokenizer library
/// needs to give each token's piece).
fn read_vocab() -> Result<Vocab, ConstraintError> {
    let info = vocab::info();
    let n = info.size;
    if n as usize > orcd_tokenizer::MAX_VOCAB_TOKENS
        || info.merges_count as usize > orcd_tokenizer::MAX_VOCAB_TOKENS
    {
        return Err(ConstraintError::Vocab(format!("{n} tokens is too many")));
    }
    let (mut tokens, mut scores, mut types, mut merges) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut start = 0;
    while start < n {
        let count = CHUNK.min(n - start);
        unpack(vocab::tokens(start, count), &mut tokens)?;
        if info.has_scores {
            scores.extend(vocab::scores(start, count));
        }
        types.extend(
            vocab::token_types(start, count)
                .into_iter()
                .map(convert_type),
        );
        start += count;
    }
    if tokens.len() != n as usize || types.len() != n as usize {
        return Err(ConstraintError::Vocab(format!(
            "host gave {} tokens and {} types for a vocabulary of {n}",
            tokens.len(),
            types.len()
        )));
    }
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
        token_types: types,
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
