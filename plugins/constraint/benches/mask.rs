//! Cost of constrained decoding, natively (the plugin runs the same code in Wasm).
//!
//! `cargo bench -p orcd-constraint --bench mask` prints, for SmolLM2 (49152 tokens) and
//! llama-bpe (128256 tokens): the compile time of each fixture schema (median of 5), and the
//! time of one step's mask over the example output's tokens, first visit of each automaton
//! state (the trie scan) and cached (later requests with the same constraint), median and
//! worst. Then the same for llama.cpp's example GBNF grammars (`json`, `arithmetic`, `c`), over
//! the tokens of a seeded random walk through each grammar's masks.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use orcd_constraint::{Compiled, Kind, Session};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    for (which, vocab) in [
        ("smollm2", common::smollm2()),
        ("llama-bpe", common::llama_bpe()),
    ] {
        let tok = common::tokenizer(which);
        println!(
            "{which}: {} tokens, trie of {} nodes",
            vocab.size(),
            vocab.trie().len()
        );
        let (mut cold, mut warm, mut compiles) = (Vec::new(), Vec::new(), Vec::new());
        for f in common::fixtures() {
            let spec = f.schema.to_string();
            let times: Vec<Duration> = (0..5)
                .map(|_| {
                    let t = Instant::now();
                    drop(Compiled::new(Kind::JsonSchema, &spec, vocab.clone()).unwrap());
                    t.elapsed()
                })
                .collect();
            let c = Arc::new(Compiled::new(Kind::JsonSchema, &spec, vocab.clone()).unwrap());
            let compile = median(times);
            compiles.push(compile);
            println!(
                "{which}: {:22} compile {compile:?}, {} DFA states, {} KiB",
                f.name,
                c.automaton().state_count(),
                c.automaton().memory_usage() / 1024
            );
            let ids = tok.encode(&f.example.to_string(), false, false).unwrap();
            for pass in [&mut cold, &mut warm] {
                let mut s = Session::new(c.clone());
                for &id in &ids {
                    let t = Instant::now();
                    let m = s.allowed();
                    pass.push(t.elapsed());
                    assert!(m[id as usize / 32] >> (id % 32) & 1 == 1);
                    s.advance(id).unwrap();
                }
            }
        }
        gbnf(which, &vocab);
        let worst = |v: &Vec<Duration>| *v.iter().max().unwrap();
        println!(
            "{which}: compile median {:?} worst {:?}; mask first visit median {:?} worst {:?}; cached median {:?} worst {:?} ({} steps)",
            median(compiles.clone()),
            worst(&compiles),
            median(cold.clone()),
            worst(&cold),
            median(warm.clone()),
            worst(&warm),
            warm.len()
        );
    }
}

/// Compile time and mask cost of llama.cpp's example grammars.
fn gbnf(which: &str, vocab: &Arc<orcd_constraint::Vocabulary>) {
    let worst = |v: &[Duration]| *v.iter().max().unwrap();
    for name in ["json", "arithmetic", "c"] {
        let spec = common::llama_grammar(name);
        let times: Vec<Duration> = (0..3)
            .map(|_| {
                let t = Instant::now();
                drop(Compiled::new(Kind::Gbnf, &spec, vocab.clone()).unwrap());
                t.elapsed()
            })
            .collect();
        let compile = median(times);
        let c = Arc::new(Compiled::new(Kind::Gbnf, &spec, vocab.clone()).unwrap());
        // The tokens of a random walk (a fresh compile, so the timed masks start cold).
        let mut rng = common::Rng(0xB3_0001);
        let walk = Arc::new(Compiled::new(Kind::Gbnf, &spec, vocab.clone()).unwrap());
        let text = common::random_walk(&walk, vocab, &mut rng, 40);
        let mut ids = Vec::new();
        let mut s = Session::new(walk);
        let mut at = 0;
        while at < text.len() {
            // Replay: the longest allowed token that matches the text here.
            let allowed = common::ids(&s.allowed());
            let id = allowed
                .into_iter()
                .filter(|&id| {
                    text[at..].starts_with(vocab.piece(id)) && !vocab.piece(id).is_empty()
                })
                .max_by_key(|&id| vocab.piece(id).len())
                .expect("the walk's text can be replayed");
            at += vocab.piece(id).len();
            s.advance(id).unwrap();
            ids.push(id);
        }
        let (mut cold, mut warm) = (Vec::new(), Vec::new());
        for pass in [&mut cold, &mut warm] {
            let mut s = Session::new(c.clone());
            for &id in &ids {
                let t = Instant::now();
                let m = s.allowed();
                pass.push(t.elapsed());
                assert!(m[id as usize / 32] >> (id % 32) & 1 == 1);
                s.advance(id).unwrap();
            }
        }
        println!(
            "{which}: gbnf {name:10} compile {compile:?}, {} DFA states, {} KiB; mask first visit median {:?} worst {:?}; cached median {:?} worst {:?} ({} steps)",
            c.automaton().state_count(),
            c.automaton().memory_usage() / 1024,
            median(cold.clone()),
            worst(&cold),
            median(warm.clone()),
            worst(&warm),
            ids.len()
        );
    }
}
