//! Encode speed on a 32k-character prompt, natively and through the Wasm plugin.
//!
//! `cargo bench -p orcd-tokenizer --bench encode` prints, for SmolLM2 (byte-level BPE) and
//! Gemma 3 (SentencePiece, 262144 tokens): the median time of one encode of a mixed
//! 32768-character prompt (English prose, code, Chinese, emoji), and of a worst case without
//! any word boundary (32768 x `a`), plus the tokenizer build time.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::model_path;

use orcd_plugin_host::{ModelFacts, PluginHost, PluginHostConfig};
use orcd_tokenizer::Tokenizer;

const CHARS: usize = 32_768;

/// A prompt of exactly `CHARS` characters mixing scripts, code and emoji.
fn mixed_prompt() -> String {
    let unit = "The quick brown fox jumps over the lazy dog; it's 1314151 times faster!\n\
                fn main() { println!(\"{}\", 42); }\n我想在apple工作 🦙🚀 Cửa Việt нещо на Български\n";
    unit.chars().cycle().take(CHARS).collect()
}

fn median(mut f: impl FnMut(), runs: usize) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn main() {
    let prompts = [
        ("mixed", mixed_prompt()),
        ("no-boundary", "a".repeat(CHARS)),
    ];
    for which in ["smollm2", "gemma3"] {
        let vocab = orcd_model::vocab::open(&model_path(which)).expect("vocabulary");
        let t0 = Instant::now();
        let tok = Tokenizer::new(vocab.clone()).expect("tokenizer");
        println!("{which}: native build {:?}", t0.elapsed());
        for (name, text) in &prompts {
            let n = tok.encode(text, false, false).expect("encode").len();
            let d = median(|| drop(tok.encode(text, false, false)), 9);
            println!("{which}: native encode {name} {CHARS} chars -> {n} tokens: {d:?}");
        }

        let facts = ModelFacts {
            architecture: String::new(),
            name: vocab.name.clone(),
            vocab_size: vocab.len() as u32,
            context_length: 0,
            bos: vocab.bos,
            eos: vocab.eos,
            eot: vocab.eot,
        };
        let host = PluginHost::new(PluginHostConfig::default(), facts, &vocab).expect("host");
        let t0 = Instant::now();
        let mut session = host.tokenizer().expect("plugin tokenizer");
        println!("{which}: plugin instantiate + init {:?}", t0.elapsed());
        for (name, text) in &prompts {
            let d = median(|| drop(session.encode(text, false, false)), 9);
            println!("{which}: plugin encode {name} {CHARS} chars: {d:?}");
        }
    }
}
