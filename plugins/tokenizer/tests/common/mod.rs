//! Shared helpers of the tokenizer tests: where llama.cpp's suites and the real models are,
//! and a native tokenizer for a GGUF file's vocabulary.

#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};

/// Where llama.cpp's golden files are, and the path of a real model (fetched when missing).
pub use orcd_tests::models::{fetch_model as model_path, fetch_vocab_suites, reference_dir};
use orcd_tokenizer::Tokenizer;

/// A native tokenizer for the GGUF file at `path`.
pub fn tokenizer(path: &Path) -> Tokenizer {
    let vocab = orcd_model::vocab::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Tokenizer::new(vocab).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One test string and llama.cpp's ids for it.
#[derive(Debug, Clone)]
pub struct Case {
    pub text: String,
    pub ids: Vec<u32>,
}

/// The names of llama.cpp's vocabulary suites (`ggml-vocab-<name>.gguf` with `.inp`/`.out`
/// in `vendor/llama.cpp/models/` of the llama-cpp-python 0.3.36 sdist): all fifteen.
pub const SUITES: &[&str] = &[
    "bert-bge",
    "command-r",
    "deepseek-coder",
    "deepseek-llm",
    "falcon",
    "gemma-4",
    "gpt-2",
    "llama-bpe",
    "llama-spm",
    "mpt",
    "phi-3",
    "qwen2",
    "qwen35",
    "refact",
    "starcoder",
];

/// The GGUF file of a suite (fetched with the sdist when missing).
pub fn suite_vocab(name: &str) -> PathBuf {
    fetch_vocab_suites().join(format!("ggml-vocab-{name}.gguf"))
}

/// The suites the sdist has: every `ggml-vocab-*.gguf.inp`, by name, sorted.
pub fn suites_in_sdist() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fetch_vocab_suites())
        .expect("read the suites' folder")
        .filter_map(|e| {
            let name = e.expect("folder entry").file_name().into_string().ok()?;
            Some(
                name.strip_prefix("ggml-vocab-")?
                    .strip_suffix(".gguf.inp")?
                    .to_string(),
            )
        })
        .collect();
    names.sort();
    names
}

/// A suite's cases: `.inp` holds the strings separated by lines `__ggml_vocab_test__` (the
/// newline before the marker is not part of the string); `.out` one line of ids per string.
pub fn suite_cases(name: &str) -> Vec<Case> {
    let base = suite_vocab(name);
    let inp = std::fs::read_to_string(base.with_extension("gguf.inp")).expect("read .inp");
    let out = std::fs::read_to_string(base.with_extension("gguf.out")).expect("read .out");
    // As llama.cpp's `test-tokenizer-0` reads it: the text after the last marker is a case
    // too unless the file ends with the marker.
    let mut texts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    if texts.last() == Some(&"") {
        texts.pop();
    }
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
