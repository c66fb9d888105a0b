//! Shared helpers of the tokenizer tests: where llama.cpp's suites and the real models are,
//! and the conversion from the engine's GGUF vocabulary to the tokenizer's input.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use orcd_engine::vocab::Vocab;
/// Where llama.cpp's golden files are, and the path of a real model (fetched when missing).
pub use orcd_tests::models::{fetch_model as model_path, reference_dir};
use orcd_tokenizer::{TokenType, Tokenizer, VocabSpec};

/// The tokenizer input for a vocabulary read by the engine.
pub fn spec(v: &Vocab) -> VocabSpec {
    VocabSpec {
        model: v.model.clone(),
        pre: v.pre.clone(),
        name: v.name.clone(),
        tokens: v.tokens.iter().map(|t| t.as_bytes().to_vec()).collect(),
        scores: v.scores.clone(),
        token_types: v
            .token_types
            .iter()
            .map(|&t| TokenType::from_i32(t))
            .collect(),
        merges: v.merges.iter().map(|m| m.as_bytes().to_vec()).collect(),
        add_bos: v.add_bos,
        add_eos: v.add_eos,
        add_space_prefix: v.add_space_prefix,
        bos: v.bos,
        eos: v.eos,
        eot: v.eot,
        unk: v.unk,
        pad: v.pad,
    }
}

/// A native tokenizer for the GGUF file at `path`.
pub fn tokenizer(path: &Path) -> Tokenizer {
    let vocab = Vocab::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Tokenizer::new(spec(&vocab)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One test string and llama.cpp's ids for it.
#[derive(Debug, Clone)]
pub struct Case {
    pub text: String,
    pub ids: Vec<u32>,
}

/// The names of llama.cpp's vocabulary suites (`ggml-vocab-<name>.gguf`).
pub const SUITES: &[&str] = &["gpt-2", "llama-bpe", "llama-spm", "phi-3", "qwen2"];

/// The GGUF file of a suite.
pub fn suite_vocab(name: &str) -> PathBuf {
    reference_dir().join(format!("tokenizer/ggml-vocab-{name}.gguf"))
}

/// A suite's cases: `.inp` holds the strings, each followed by a line `__ggml_vocab_test__`
/// (the newline before the marker is not part of the string); `.out` one line of ids per
/// string.
pub fn suite_cases(name: &str) -> Vec<Case> {
    let base = suite_vocab(name);
    let inp = std::fs::read_to_string(base.with_extension("gguf.inp")).expect("read .inp");
    let out = std::fs::read_to_string(base.with_extension("gguf.out")).expect("read .out");
    let mut texts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    assert_eq!(
        texts.pop(),
        Some(""),
        "{name}.inp must end with the marker line"
    );
    let ids: Vec<Vec<u32>> = out
        .lines()
        .map(|l| {
            l.split_whitespace()
                .map(|t| t.parse().expect("token id"))
                .collect()
        })
        .collect();
    assert_eq!(
        texts.len(),
        ids.len(),
        "{name}: strings and id lines differ in number"
    );
    texts
        .into_iter()
        .zip(ids)
        .map(|(t, ids)| Case {
            text: t.to_string(),
            ids,
        })
        .collect()
}

/// The cases of a `{"cases": [{"text", "ids"}]}` file (`smollm2-135m.json`, `gemma3-270m.json`).
pub fn json_cases(file: &str) -> Vec<Case> {
    let text =
        std::fs::read_to_string(reference_dir().join("tokenizer").join(file)).expect("read json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("valid json");
    assert_eq!(v["add_bos"], false);
    assert_eq!(v["parse_special"], false);
    v["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| Case {
            text: c["text"].as_str().expect("text").to_string(),
            ids: c["ids"]
                .as_array()
                .expect("ids")
                .iter()
                .map(|i| i.as_u64().expect("id") as u32)
                .collect(),
        })
        .collect()
}
