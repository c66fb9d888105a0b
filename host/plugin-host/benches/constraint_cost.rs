//! Cost of constrained decoding through the plugin (Wasm): the built-in `structured`
//! constraint over SmolLM2's vocabulary (49152 tokens) and llama-bpe's (128256).
//!
//! Per vocabulary: instance start (`init`: reading the vocabulary, building the trie), then per
//! schema fixture the `compile` call (first time: the guest compiles; second time: its cache),
//! and per generated token of the fixture's example output: `allowed()` (the bitset crossing
//! the component boundary, plus the trie scan on a state's first visit) and `advance()`.
//! Medians and worst cases, first pass (cold states) and second pass (cached masks, what later
//! requests with the same schema see).
//!
//! Run: `cargo bench -p orcd-plugin-host --bench constraint_cost`.

use std::path::Path;
use std::time::{Duration, Instant};

use orcd_plugin_host::{ModelFacts, PluginHost, PluginHostConfig};

use orcd_tests::models::{fetch_model, fetch_vocab_suites, repo_root};
use serde_json::Value;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn worst(v: &[Duration]) -> Duration {
    v.iter().copied().max().unwrap_or_default()
}

fn run(which: &str, path: &Path, fixtures: &[Value]) {
    let vocab = orcd_model::vocab::open(path).expect("vocabulary");
    let facts = ModelFacts {
        architecture: "llama".into(),
        name: vocab.name.clone(),
        vocab_size: vocab.len() as u32,
        context_length: 4096,
        bos: vocab.bos,
        eos: vocab.eos,
        eot: vocab.eot,
    };
    let host = PluginHost::new(PluginHostConfig::default(), facts, &vocab).expect("host");
    let mut tok = host.tokenizer().expect("tokenizer");
    let t = Instant::now();
    drop(
        host.constraint("structured", "regex", "x")
            .expect("first session"),
    );
    println!(
        "{which}: {} tokens, instance init + first compile {:?}",
        vocab.len(),
        t.elapsed()
    );
    let (mut compiles, mut cached_compiles) = (Vec::new(), Vec::new());
    let (mut cold, mut warm, mut advance) = (Vec::new(), Vec::new(), Vec::new());
    for f in fixtures {
        let spec = f["schema"].to_string();
        let ids = tok.encode(&f["example"].to_string(), false, false).unwrap();
        for pass in 0..2 {
            let t = Instant::now();
            let mut c = host.constraint("structured", "json-schema", &spec).unwrap();
            let d = t.elapsed();
            if pass == 0 {
                compiles.push(d);
            } else {
                cached_compiles.push(d);
            }
            for &id in &ids {
                let t = Instant::now();
                let mask = c.allowed(u32::MAX).unwrap();
                let d = t.elapsed();
                assert!(mask[id as usize / 32] >> (id % 32) & 1 == 1);
                if pass == 0 {
                    cold.push(d)
                } else {
                    warm.push(d)
                }
                let t = Instant::now();
                c.advance(id).unwrap();
                advance.push(t.elapsed());
            }
        }
    }
    println!(
        "{which}: compile median {:?} worst {:?} (cached {:?}); allowed() first visit median {:?} worst {:?}; cached median {:?} worst {:?}; advance median {:?} ({} steps)",
        median(compiles.clone()),
        worst(&compiles),
        median(cached_compiles),
        median(cold.clone()),
        worst(&cold),
        median(warm.clone()),
        worst(&warm),
        median(advance),
        warm.len()
    );
}

fn main() {
    let text = std::fs::read_to_string(repo_root().join("tests/fixtures/constraint/schemas.json"))
        .expect("fixtures");
    let fixtures: Vec<Value> = serde_json::from_str(&text).expect("fixtures parse");
    run("smollm2", &fetch_model("smollm2"), &fixtures);
    run(
        "llama-bpe",
        &fetch_vocab_suites().join("ggml-vocab-llama-bpe.gguf"),
        &fixtures,
    );
}
