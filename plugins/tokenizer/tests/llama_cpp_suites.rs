//! llama.cpp's tokenizer suites, all of them, through the native library: every
//! `ggml-vocab-*.gguf` with its `.inp`/`.out` in the llama-cpp-python 0.3.36 sdist (fetched and
//! checksummed into `.cache/`), and the SmolLM2 / Gemma 3 cases against the real models'
//! vocabularies (no BOS, special tokens not parsed). Also round trips through decode.

mod common;

use common::{
    Case, SUITES, json_cases, model_path, suite_cases, suite_vocab, suites_in_sdist, tokenizer,
};
use orcd_tokenizer::{Tokenizer, TokenizerKind};

/// Encodes every case, reporting all mismatches at once.
fn check(name: &str, t: &Tokenizer, cases: &[Case]) {
    let failures = mismatches(t, cases);
    assert!(
        failures.is_empty(),
        "{name}: {} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// The cases whose ids differ from llama.cpp's, described.
fn mismatches(t: &Tokenizer, cases: &[Case]) -> Vec<String> {
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
    failures
}

/// decode(encode(text)) gives the text back (not for WordPiece, which lowercases and strips
/// accents and spaces).
fn check_round_trip(name: &str, t: &Tokenizer, cases: &[Case]) {
    if t.kind() == TokenizerKind::WordPiece {
        return;
    }
    for c in cases {
        let ids = t.encode(&c.text, false, false).expect("encode");
        let back = t.decode(&ids, false).expect("decode");
        assert_eq!(String::from_utf8_lossy(&back), c.text, "{name}: round trip");
    }
}

#[test]
fn the_sdist_has_exactly_the_known_suites() {
    assert_eq!(suites_in_sdist(), SUITES);
}

/// Every suite, each case counted: the summary (`suite: passed/total`) is printed, and any
/// mismatch in any suite fails the test after all suites ran.
#[test]
fn every_vocab_suite_matches_llama_cpp() {
    let mut summary = Vec::new();
    let mut failures = Vec::new();
    for name in SUITES {
        let t = tokenizer(&suite_vocab(name));
        let cases = suite_cases(name);
        assert!(!cases.is_empty(), "{name}: no cases");
        let bad = mismatches(&t, &cases);
        summary.push(format!(
            "{name}: {}/{}",
            cases.len() - bad.len(),
            cases.len()
        ));
        failures.extend(bad.into_iter().map(|f| format!("{name}: {f}")));
        check_round_trip(name, &t, &cases);
    }
    eprintln!(
        "llama.cpp vocab suites (native):\n  {}",
        summary.join("\n  ")
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
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
