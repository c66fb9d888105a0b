//! A compiled constraint (the automaton plus its per-state token masks, cached as they are
//! first needed) and the per-request [`Session`] that follows one output through it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use regex_automata::util::primitives::StateID;

use crate::dfa::Automaton;
use crate::error::ConstraintError;
use crate::vocab::Vocabulary;
use crate::{gbnf, schema};

/// Masks cached per compiled constraint (each is `vocab / 32` words: 16 KiB at 128k tokens).
const MASK_CACHE: usize = 4096;

/// What a constraint's spec text is.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A JSON Schema document.
    JsonSchema,
    /// Any JSON object (the spec is ignored and should be empty).
    JsonObject,
    /// A regular expression the whole output must match.
    Regex,
    /// A GBNF grammar (llama.cpp's notation) whose `root` the whole output must match.
    Gbnf,
}

impl Kind {
    /// `json-schema`, `json-object`, `regex` or `gbnf`.
    pub fn parse(s: &str) -> Result<Kind, ConstraintError> {
        match s {
            "json-schema" => Ok(Kind::JsonSchema),
            "json-object" => Ok(Kind::JsonObject),
            "regex" => Ok(Kind::Regex),
            "gbnf" => Ok(Kind::Gbnf),
            other => Err(ConstraintError::UnknownKind(
                other.chars().take(64).collect(),
            )),
        }
    }
}

/// The regular expression of a constraint.
pub fn pattern(kind: Kind, spec: &str) -> Result<String, ConstraintError> {
    match kind {
        Kind::Regex => Ok(spec.to_string()),
        Kind::Gbnf => gbnf::grammar_regex(spec),
        Kind::JsonObject => Ok(schema::any_object_regex()),
        Kind::JsonSchema => {
            let v: serde_json::Value = serde_json::from_str(spec)
                .map_err(|e| ConstraintError::InvalidSchema(format!("not JSON: {e}")))?;
            schema::schema_regex(&v)
        }
    }
}

/// A GBNF grammar's automaton, its recursion expanded [`gbnf::GRAMMAR_DEPTH`] levels deep, or
/// as many as fit when that is too large (the language only shrinks with the depth).
fn grammar_automaton(spec: &str) -> Result<Automaton, ConstraintError> {
    let grammar = gbnf::parse(spec)?;
    let mut too_large = None;
    for depth in (1..=gbnf::GRAMMAR_DEPTH).rev() {
        // The expression is well formed by construction: a refusal by the regex compiler is
        // one of its limits (nesting), which is size too.
        match gbnf::regex(&grammar, depth)
            .and_then(|re| Automaton::with_limit(&re, gbnf::MAX_DFA_BYTES))
        {
            Err(ConstraintError::TooLarge(m) | ConstraintError::InvalidRegex(m)) => {
                too_large = Some(ConstraintError::TooLarge(m))
            }
            other => return other,
        }
    }
    Err(too_large.expect("GRAMMAR_DEPTH is at least 1"))
}

/// A constraint compiled for one vocabulary; shared by every request that uses it.
pub struct Compiled {
    automaton: Automaton,
    vocab: Arc<Vocabulary>,
    /// Allowed-token bitsets by automaton state.
    masks: Mutex<HashMap<StateID, Arc<Mask>>>,
}

impl Compiled {
    /// Compile `spec` of `kind` against `vocab`.
    pub fn new(
        kind: Kind,
        spec: &str,
        vocab: Arc<Vocabulary>,
    ) -> Result<Compiled, ConstraintError> {
        let automaton = match kind {
            Kind::Gbnf => grammar_automaton(spec)?,
            _ => Automaton::new(&pattern(kind, spec)?)?,
        };
        Ok(Compiled {
            automaton,
            vocab,
            masks: Mutex::new(HashMap::new()),
        })
    }

    pub fn automaton(&self) -> &Automaton {
        &self.automaton
    }

    /// The tokens allowed in state `s`: those whose bytes keep the output completable, and
    /// the end tokens when the output is already complete.
    pub fn mask(&self, s: StateID) -> Arc<Mask> {
        let mut cache = self.masks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = cache.get(&s) {
            return m.clone();
        }
        let a = &self.automaton;
        let mut max_next = 0u32;
        let words = self.scan(s, |next| {
            max_next = max_next.max(a.distance(next).unwrap_or(u32::MAX));
            true
        });
        let m = Arc::new(Mask {
            words: words.into(),
            max_next,
        });
        if cache.len() >= MASK_CACHE {
            cache.clear();
        }
        cache.insert(s, m.clone());
        m
    }

    /// [`Compiled::mask`] for an output that may take at most `remaining` more tokens, the end
    /// token included: when some allowed token would leave more bytes to write than the
    /// budget holds, only the tokens after which the output can still complete in time are
    /// kept (a byte takes at most one token where the vocabulary has single-byte tokens, as
    /// byte-level and byte-fallback vocabularies do). When no token can, the plain mask: the
    /// budget will cut the output whatever is chosen.
    pub fn mask_within(&self, s: StateID, remaining: u32) -> Arc<[u32]> {
        let m = self.mask(s);
        // After the token, `remaining - 1` tokens must hold `distance` bytes and the end token.
        let fits = |d: u32| u64::from(d) + 2 <= u64::from(remaining);
        if fits(m.max_next) {
            return m.words.clone();
        }
        let a = &self.automaton;
        let words = self.scan(s, |next| a.distance(next).is_some_and(fits));
        if words.iter().any(|&w| w != 0) {
            words.into()
        } else {
            m.words.clone()
        }
    }

    /// The bitset of the tokens whose next state is live and passes `keep`, plus the end tokens
    /// when `s` is complete.
    fn scan(&self, s: StateID, mut keep: impl FnMut(StateID) -> bool) -> Vec<u32> {
        let mut words = vec![0u32; self.vocab.size().div_ceil(32)];
        let a = &self.automaton;
        self.vocab.trie().walk(
            s,
            |s, b| a.next(s, b),
            |id, next| {
                if keep(next) {
                    words[id as usize / 32] |= 1 << (id % 32);
                }
            },
        );
        if a.is_complete(s) {
            for &id in self.vocab.end_ids() {
                words[id as usize / 32] |= 1 << (id % 32);
            }
        }
        words
    }
}

/// The allowed tokens of one automaton state.
pub struct Mask {
    /// `(ceil(vocab / 32),)` words, token `i` allowed when bit `i % 32` of word `i / 32` is
    /// set.
    pub words: Arc<[u32]>,
    /// The most bytes any allowed token leaves to write before the output is complete.
    pub max_next: u32,
}

/// One request's progress through a compiled constraint.
#[derive(Clone)]
pub struct Session {
    compiled: Arc<Compiled>,
    state: StateID,
    /// An end token was accepted: nothing more is allowed.
    ended: bool,
}

impl Session {
    pub fn new(compiled: Arc<Compiled>) -> Session {
        let state = compiled.automaton.start();
        Session {
            compiled,
            state,
            ended: false,
        }
    }

    /// The allowed-token bitset for the next token.
    pub fn allowed(&self) -> Arc<[u32]> {
        self.allowed_within(u32::MAX)
    }

    /// The allowed-token bitset for the next token of an output that may take at most
    /// `remaining` more tokens (see [`Compiled::mask_within`]).
    pub fn allowed_within(&self, remaining: u32) -> Arc<[u32]> {
        if self.ended {
            return vec![0u32; self.compiled.vocab.size().div_ceil(32)].into();
        }
        self.compiled.mask_within(self.state, remaining)
    }

    /// Take `token` as the next output token; refused when the mask did not allow it.
    pub fn advance(&mut self, token: u32) -> Result<(), ConstraintError> {
        let refused = ConstraintError::TokenNotAllowed(token);
        if self.ended {
            return Err(refused);
        }
        let vocab = &self.compiled.vocab;
        if vocab.is_end(token) {
            if !self.is_complete() {
                return Err(refused);
            }
            self.ended = true;
            return Ok(());
        }
        let piece = vocab.piece(token);
        if piece.is_empty() {
            return Err(refused);
        }
        self.state = self
            .compiled
            .automaton
            .walk(self.state, piece)
            .ok_or(refused)?;
        Ok(())
    }

    /// Fewest bytes that would complete the output from here.
    pub fn distance(&self) -> Option<u32> {
        self.compiled.automaton.distance(self.state)
    }

    /// The state after `token` without taking it (tests and policies that look ahead).
    pub fn peek(&self, token: u32) -> Option<Session> {
        let mut s = self.clone();
        s.advance(token).ok().map(|_| s)
    }

    /// Whether the output so far satisfies the constraint.
    pub fn is_complete(&self) -> bool {
        self.compiled.automaton.is_complete(self.state)
    }
}
