//! llama.cpp's tokenizer suites, all of them, through the native library: every
//! `ggml-vocab-*.gguf` with its `.inp`/`.out`, and the SmolLM2 / Gemma 3 cases against the real
//! models' vocabularies (no BOS, special tokens not parsed). Also round trips through decode.

mod common;

use common::{Case, SUITES, json_cases, model_path, suite_cases, suite_vocab, tokenizer};
use orcd_tokenizer::Tokenizer;

/// Encodes every case, reporting all mismatches at once.
fn check(name: &str, t: &Tokenizer, cases: &[Case]) {
    let mut failures = Vec::new();
    for c in cases {
        let got = t.encode(&c.text, false, false).expect("encode");
        if got != c.ids {
            failures.push(format!(
                "{:?}\n    want {:?}\n    got  {:?}",
                c.text, c.ids, got
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// decode(encode(text)) gives the text back.
fn check_round_trip(name: &str, t: &Tokenizer, cases: &[Case]) {
    for c in cases {
        let ids = t.encode(&c.text, false, false).expect("encode");
        let back = t.decode(&ids, false).expect("decode");
        assert_eq!(String::from_utf8_lossy(&back), c.text, "{name}: round trip");
    }
}

#[test]
fn every_vocab_suite_matches_llama_cpp() {
    for name in SUITES {
        let t = tokenizer(&suite_vocab(name));
        let cases = suite_cases(name);
        assert_eq!(cases.len(), 46, "{name}");
        check(name, &t, &cases);
        check_round_trip(name, &t, &cases);
    }
}

#[test]
fn smollm2_vocab_matches_llama_cpp() {
    let t = tokenizer(&model_path("smollm2"));
    let cases = json_cases("smollm2-135m.json");
    check("smollm2", &t, &cases);
    check_round_trip("smollm2", &t, &cases);
}

#[test]
fn gemma3_vocab_matches_llama_cpp() {
    let t = tokenizer(&model_path("gemma3"));
    let cases = json_cases("gemma3-270m.json");
    check("gemma3", &t, &cases);
    check_round_trip("gemma3", &t, &cases);
}
