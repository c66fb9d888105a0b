//! `worker-orcd tokenize` end to end: the binary tokenizes through the built-in tokenizer
//! plugin and agrees with llama.cpp's suites; TEXT is taken verbatim (empty, leading `-`,
//! newlines); bad models fail with a message, not a panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use orcd_tests::models::reference_dir;

fn reference_tokenizer_dir() -> PathBuf {
    reference_dir().join("tokenizer")
}

fn tokenize(model: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_worker-orcd"))
        .arg("tokenize")
        .arg("--model")
        .arg(model)
        .arg("--plugin-cache")
        .arg(Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-tokenize-plugin-cache"))
        .args(args)
        .output()
        .expect("run worker-orcd")
}

fn ids_of(out: &Output) -> Vec<u32> {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    v["ids"]
        .as_array()
        .expect("ids array")
        .iter()
        .map(|i| i.as_u64().expect("id") as u32)
        .collect()
}

/// The strings and ids of one llama.cpp suite.
fn suite(name: &str) -> (PathBuf, Vec<(String, Vec<u32>)>) {
    let vocab = reference_tokenizer_dir().join(format!("ggml-vocab-{name}.gguf"));
    let inp = std::fs::read_to_string(vocab.with_extension("gguf.inp")).expect(".inp");
    let out = std::fs::read_to_string(vocab.with_extension("gguf.out")).expect(".out");
    let mut texts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    assert_eq!(texts.pop(), Some(""));
    let cases = texts
        .into_iter()
        .zip(out.lines())
        .map(|(t, l)| {
            (
                t.to_string(),
                l.split_whitespace()
                    .map(|x| x.parse().expect("id"))
                    .collect(),
            )
        })
        .collect();
    (vocab, cases)
}

#[test]
fn cli_matches_llama_cpp_on_a_whole_suite() {
    let (vocab, cases) = suite("llama-spm");
    for (text, want) in cases {
        let out = tokenize(&vocab, &["--json", "--", &text]);
        assert_eq!(ids_of(&out), want, "{text:?}");
    }
}

#[test]
fn cli_matches_llama_cpp_on_whitespace_cases_of_every_suite() {
    for name in ["gpt-2", "llama-bpe", "phi-3", "qwen2"] {
        let (vocab, cases) = suite(name);
        // Empty text, lone spaces, tabs and newlines: the cases where argument handling could
        // lose or change bytes.
        for (text, want) in cases
            .iter()
            .filter(|(t, _)| t.trim().is_empty() || t.contains('\n'))
        {
            let out = tokenize(&vocab, &["--json", "--", text]);
            assert_eq!(&ids_of(&out), want, "{name}: {text:?}");
        }
    }
}

#[test]
fn text_is_verbatim_and_plain_output_is_space_separated() {
    let (vocab, _) = suite("qwen2");
    let with_dashdash = ids_of(&tokenize(&vocab, &["--json", "--", "-x --json"]));
    let hyphen_first = ids_of(&tokenize(&vocab, &["--json", "-x --json"]));
    assert_eq!(with_dashdash, hyphen_first);
    assert!(!with_dashdash.is_empty());
    let plain = tokenize(&vocab, &["--", "-x --json"]);
    assert!(plain.status.success());
    let line = String::from_utf8(plain.stdout).expect("UTF-8");
    let ids: Vec<u32> = line
        .split_whitespace()
        .map(|x| x.parse().expect("id"))
        .collect();
    assert_eq!(ids, with_dashdash);
}

#[test]
fn special_tokens_and_bos_on_request() {
    let (vocab, _) = suite("llama-spm");
    assert_eq!(
        ids_of(&tokenize(
            &vocab,
            &["--json", "--add-special", "Hello world"]
        )),
        [1, 15043, 3186]
    );
    assert_eq!(
        ids_of(&tokenize(&vocab, &["--json", "--parse-special", "</s>"])),
        [2]
    );
    assert_ne!(ids_of(&tokenize(&vocab, &["--json", "</s>"])), [2]);
}

#[test]
fn bad_models_fail_cleanly() {
    let missing = tokenize(Path::new("/nonexistent/model.gguf"), &["x"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot open the model"));
    let not_gguf = tokenize(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("Cargo.toml")
            .as_path(),
        &["x"],
    );
    assert!(!not_gguf.status.success());
    assert!(String::from_utf8_lossy(&not_gguf.stderr).contains("GGUF"));
}
