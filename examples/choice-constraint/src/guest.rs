//! The Wasm glue: the `constraint` world's exports over [`crate::Choice`]. `init` reads the
//! vocabulary once per instance through the `vocab` import.

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};

use crate::pieces::{Type, piece};
use crate::{Choice, Refusal, answers};

wit_bindgen::generate!({
    path: "../../wit",
    world: "constraint",
});

use exports::worker::plugin::constraint_plugin::{Guest, GuestConstraint};
use worker::plugin::types::{Error, PluginInfo};
use worker::plugin::vocab;

/// Each token's bytes, and the end-of-generation ids.
type Tables = (Arc<Vec<Vec<u8>>>, Vec<u32>);

/// Read at `init`.
static VOCAB: OnceLock<Tables> = OnceLock::new();

fn error((code, message): Refusal) -> Error {
    Error {
        code: code.into(),
        message,
    }
}

fn convert(t: vocab::TokenType) -> Type {
    match t {
        vocab::TokenType::Normal => Type::Normal,
        vocab::TokenType::Unknown => Type::Unknown,
        vocab::TokenType::Control => Type::Control,
        vocab::TokenType::UserDefined => Type::UserDefined,
        vocab::TokenType::Unused => Type::Unused,
        vocab::TokenType::Byte => Type::Byte,
        vocab::TokenType::Undefined => Type::Undefined,
    }
}

struct Plugin;

impl Guest for Plugin {
    type Constraint = Constraint;

    fn info() -> PluginInfo {
        PluginInfo {
            name: "choice".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "the output is one of the answers of a `regex` like `yes|no|maybe`".into(),
        }
    }

    fn init() -> Result<(), Error> {
        if VOCAB.get().is_some() {
            return Ok(());
        }
        let info = vocab::info();
        let mut pieces = Vec::with_capacity(info.size as usize);
        let mut start = 0;
        while start < info.size {
            let count = 16_384.min(info.size - start);
            let texts = vocab::tokens(start, count);
            let types = vocab::token_types(start, count);
            let mut at = 0usize;
            for (len, ty) in texts.lengths.iter().zip(types) {
                let end = at + *len as usize;
                let text = texts.data.get(at..end).ok_or_else(|| {
                    error(("INVALID_VOCAB", "packed tokens overrun their data".into()))
                })?;
                pieces.push(piece(&info.model, text, convert(ty)));
                at = end;
            }
            start += count;
        }
        let end_ids: Vec<u32> = info.eos.into_iter().chain(info.eot).collect();
        for &id in &end_ids {
            if let Some(p) = pieces.get_mut(id as usize) {
                p.clear();
            }
        }
        let _ = VOCAB.set((Arc::new(pieces), end_ids));
        Ok(())
    }
}

/// One request's constraint.
struct Constraint(RefCell<Choice>);

impl GuestConstraint for Constraint {
    fn compile(
        kind: String,
        spec: String,
    ) -> Result<exports::worker::plugin::constraint_plugin::Constraint, Error> {
        let list = answers(&kind, &spec).map_err(error)?;
        let (pieces, end_ids) = VOCAB
            .get()
            .ok_or_else(|| error(("NOT_INITIALISED", "init must succeed first".into())))?;
        Ok(exports::worker::plugin::constraint_plugin::Constraint::new(
            Constraint(RefCell::new(Choice::new(
                list,
                pieces.clone(),
                end_ids.clone(),
            ))),
        ))
    }

    fn allowed(&self, _remaining: u32) -> Vec<u32> {
        self.0.borrow_mut().allowed()
    }

    fn advance(&self, token: u32) -> Result<(), Error> {
        self.0.borrow_mut().advance(token).map_err(error)
    }

    fn is_complete(&self) -> bool {
        self.0.borrow().is_complete()
    }
}

export!(Plugin);
