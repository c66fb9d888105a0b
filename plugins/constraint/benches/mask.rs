//! Cost of constrained decoding, natively (the plugin runs the same code in Wasm).
//!
//! `cargo bench -p orcd-constraint --bench mask` prints, for SmolLM2 (49152 tokens) and
//! llama-bpe (128256 tokens): the compile time of each fixture schema (median of 5), and the
//! time of one step's mask over the example output's tokens, first visit of each automaton
//! state (the trie scan) and cached (later requests with the same constraint), median and
//! worst.

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
