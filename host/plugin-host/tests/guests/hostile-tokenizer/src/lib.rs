//! Built against the frozen contract 0.1.0 (`wit/since_v0.1.0`), so the host tests also prove
//! that 0.1.0 plugins of this kind still load and run.
//!
//! A whole-token lookup tokenizer that reads the entire vocabulary through the `vocab` import
//! at `init` (checking that every bulk getter agrees on the size), and misbehaves on request:
//! `encode("out-of-range")` returns an id past the vocabulary, `encode("huge")` returns far more
//! ids than the text has bytes, `encode("bad-utf8")` reports an error whose message is not
//! UTF-8, the piece of the last token is 1 MiB, and `encode(word)` runs the attack `word` names
//! (see the `attacks` crate: `spin`, `bomb`, `panic`, `sleep`, `env`, ...), reporting a probe's
//! finding as the error `PROBE_OK` (the sandbox held) or `PROBE_BREACH`.

wit_bindgen::generate!({ path: "../../../../../wit/since_v0.1.0", world: "tokenizer" });

use std::cell::RefCell;
use std::collections::HashMap;
use std::hint::black_box;

use exports::worker::plugin::tokenizer_plugin::Guest;
use worker::plugin::types::{Error, PluginInfo};
use worker::plugin::vocab;

/// Tokens fetched per `vocab` call.
const CHUNK: u32 = 50_000;

struct Table {
    tokens: Vec<Vec<u8>>,
    ids: HashMap<Vec<u8>, u32>,
    control: Vec<bool>,
}

thread_local! {
    static TABLE: RefCell<Option<Table>> = const { RefCell::new(None) };
}

fn error(code: &str, message: String) -> Error {
    Error {
        code: code.into(),
        message,
    }
}

fn with_table<R>(f: impl FnOnce(&Table) -> Result<R, Error>) -> Result<R, Error> {
    TABLE.with(|t| match t.borrow().as_ref() {
        Some(table) => f(table),
        None => Err(error("NOT_INITIALISED", "init was not called".into())),
    })
}

struct Plugin;

impl Guest for Plugin {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "lookup".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "whole-token lookup, for host tests".into(),
        }
    }

    fn init() -> Result<(), Error> {
        let info = vocab::info();
        let mut tokens = Vec::with_capacity(info.size as usize);
        let mut control = Vec::with_capacity(info.size as usize);
        let mut start = 0;
        while start < info.size {
            let packed = vocab::tokens(start, CHUNK);
            let types = vocab::token_types(start, CHUNK);
            let scores = vocab::scores(start, CHUNK);
            if packed.lengths.is_empty()
                || types.len() != packed.lengths.len()
                || scores.len() != packed.lengths.len()
            {
                return Err(error("VOCAB", format!("inconsistent chunk at {start}")));
            }
            let mut at = 0usize;
            for (len, ty) in packed.lengths.iter().zip(&types) {
                let end = at + *len as usize;
                tokens.push(packed.data[at..end].to_vec());
                control.push(*ty == vocab::TokenType::Control);
                at = end;
            }
            start += packed.lengths.len() as u32;
        }
        let merges = vocab::merges(0, u32::MAX);
        if merges.lengths.len() as u32 != info.merges_count.min(1 << 18) {
            return Err(error("VOCAB", "merge count differs".into()));
        }
        let ids = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        TABLE.with(|t| {
            *t.borrow_mut() = Some(Table {
                tokens,
                ids,
                control,
            })
        });
        Ok(())
    }

    fn encode(text: String, _parse_special: bool, add_bos: bool) -> Result<Vec<u32>, Error> {
        if let Some(attack) = attacks::Attack::from_word(&text) {
            return Err(match attacks::run(attack) {
                Ok(finding) => error("PROBE_OK", finding),
                Err(finding) => error("PROBE_BREACH", finding),
            });
        }
        match text.as_str() {
            "huge" => return Ok(vec![black_box(1); 1 << 20]),
            "bad-utf8" => {
                return Err(Error {
                    code: "BAD".into(),
                    message: attacks::invalid_utf8(),
                });
            }
            _ => {}
        }
        with_table(|t| {
            if text == "out-of-range" {
                return Ok(vec![t.tokens.len() as u32]);
            }
            let mut out = Vec::new();
            if add_bos && let Some(bos) = vocab::info().bos {
                out.push(bos);
            }
            for word in text.split(' ') {
                match t.ids.get(word.as_bytes()) {
                    Some(&id) => out.push(id),
                    None => return Err(error("UNKNOWN_TOKEN", format!("{word:?}"))),
                }
            }
            Ok(out)
        })
    }

    fn token_piece(id: u32) -> Result<Vec<u8>, Error> {
        with_table(|t| match t.tokens.get(id as usize) {
            Some(_) if id as usize + 1 == t.tokens.len() => Ok(vec![b'x'; 1 << 20]),
            Some(_) if t.control[id as usize] => Ok(Vec::new()),
            Some(bytes) => Ok(bytes.clone()),
            None => Err(error("UNKNOWN_TOKEN", format!("id {id}"))),
        })
    }

    fn decode(ids: Vec<u32>, skip_special: bool) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        for id in ids {
            let piece = Self::token_piece(id)?;
            if piece.is_empty() && !skip_special {
                continue;
            }
            out.extend(piece);
        }
        Ok(out)
    }
}

export!(Plugin);
