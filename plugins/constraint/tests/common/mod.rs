//! Shared helpers of the constraint tests: the real vocabularies, the schema fixtures, a
//! seeded RNG, and an independent validator.

#![allow(dead_code)]

pub mod gbnf_check;
pub mod validate;

use std::sync::{Arc, OnceLock};

use orcd_constraint::{Compiled, Session, Vocabulary};
use serde_json::Value;

#[path = "../../../tokenizer/tests/common/mod.rs"]
mod tok;

/// SmolLM2's vocabulary (49152 tokens, byte-level BPE), built once per test binary.
pub fn smollm2() -> Arc<Vocabulary> {
    static V: OnceLock<Arc<Vocabulary>> = OnceLock::new();
    V.get_or_init(|| load(&tok::model_path("smollm2"))).clone()
}

/// llama-bpe's vocabulary (128256 tokens), built once per test binary.
pub fn llama_bpe() -> Arc<Vocabulary> {
    static V: OnceLock<Arc<Vocabulary>> = OnceLock::new();
    V.get_or_init(|| load(&tok::suite_vocab("llama-bpe")))
        .clone()
}

/// The tokenizer of a real model (to turn example outputs into tokens).
pub fn tokenizer(which: &str) -> orcd_tokenizer::Tokenizer {
    match which {
        "llama-bpe" => tok::tokenizer(&tok::suite_vocab("llama-bpe")),
        m => tok::tokenizer(&tok::model_path(m)),
    }
}

pub fn load(path: &std::path::Path) -> Arc<Vocabulary> {
    let v = orcd_model::vocab::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Arc::new(Vocabulary::from_spec(v).expect("vocabulary"))
}

/// The text of llama.cpp's example grammar `name` (`json`, `arithmetic`, ...).
pub fn llama_grammar(name: &str) -> String {
    let path = orcd_tests::models::fetch_grammars().join(format!("{name}.gbnf"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One schema fixture: its name, the schema, and a valid instance.
pub struct Fixture {
    pub name: String,
    pub schema: Value,
    pub example: Value,
}

/// The realistic schemas of `tests/fixtures/constraint/schemas.json` (shared with the HTTP
/// and Python client tests).
pub fn fixtures() -> Vec<Fixture> {
    let path = orcd_tests::models::repo_root().join("tests/fixtures/constraint/schemas.json");
    let text = std::fs::read_to_string(&path).expect("schemas.json");
    let all: Vec<Value> = serde_json::from_str(&text).expect("schemas.json parses");
    all.into_iter()
        .map(|f| Fixture {
            name: f["name"].as_str().expect("name").to_string(),
            schema: f["schema"].clone(),
            example: f["example"].clone(),
        })
        .collect()
}

/// xorshift64*: a seeded RNG for property tests (no dependency, reproducible).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The ids set in a mask.
pub fn ids(mask: &[u32]) -> Vec<u32> {
    let mut out = Vec::new();
    for (w, &word) in mask.iter().enumerate() {
        let mut bits = word;
        while bits != 0 {
            let b = bits.trailing_zeros();
            out.push(w as u32 * 32 + b);
            bits &= bits - 1;
        }
    }
    out
}

/// Walk the masks with random allowed tokens for `wander` steps, then toward completion (the
/// allowed token that leaves the fewest bytes to go), then an end token. Checks at every step
/// that the mask is not empty, that the chosen token advances, and returns the output bytes.
pub fn random_walk(c: &Arc<Compiled>, vocab: &Vocabulary, rng: &mut Rng, wander: usize) -> Vec<u8> {
    let mut s = Session::new(c.clone());
    let mut out = Vec::new();
    for step in 0..4000 {
        let allowed = ids(&s.allowed());
        assert!(
            !allowed.is_empty(),
            "empty mask at step {step} after {:?}",
            String::from_utf8_lossy(&out)
        );
        assert!(
            s.distance().is_some(),
            "a state that cannot complete was reached"
        );
        let end = allowed.iter().copied().find(|&id| vocab.is_end(id));
        let pick = if let Some(end) = end.filter(|_| step >= wander) {
            end
        } else if step < wander {
            allowed[rng.below(allowed.len())]
        } else {
            // The allowed token that brings completion nearest (ties broken at random).
            let mut best: Vec<(u32, u32)> = allowed
                .iter()
                .filter(|&&id| !vocab.is_end(id))
                .map(|&id| {
                    (
                        s.peek(id)
                            .and_then(|n| n.distance())
                            .expect("allowed token keeps the output completable"),
                        id,
                    )
                })
                .collect();
            let d = best.iter().map(|b| b.0).min().expect("a token");
            best.retain(|b| b.0 == d);
            best[rng.below(best.len())].1
        };
        s.advance(pick)
            .unwrap_or_else(|e| panic!("allowed token {pick} refused: {e}"));
        if vocab.is_end(pick) {
            assert!(s.is_complete());
            return out;
        }
        out.extend_from_slice(vocab.piece(pick));
    }
    panic!(
        "no completion after 4000 steps: {:?}",
        String::from_utf8_lossy(&out)
    );
}
