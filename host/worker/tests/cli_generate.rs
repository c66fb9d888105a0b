//! `worker-orcd generate` and `score` end to end on SmolLM2-135M (CPU backend): the binary's
//! greedy output and scores agree with llama.cpp's golden file; bad arguments fail with a
//! message and a non-zero status, never a panic.

mod common;

use std::path::Path;
use std::process::Output;

use orcd_tests::models::reference_dir;
use serde_json::Value;

use common::{smollm2_path, worker_orcd};

/// The first case of the SmolLM2 golden file: (prompt ids, greedy ids, top-2 margins).
fn golden_case() -> (Vec<u64>, Vec<u64>, Vec<f64>) {
    let text =
        std::fs::read_to_string(reference_dir().join("smollm2-135m-instruct-q4_1.greedy.json"))
            .expect("golden file");
    let v: Value = serde_json::from_str(&text).expect("JSON");
    let case = &v["cases"][0];
    let nums = |k: &str| case[k].as_array().expect(k).clone();
    (
        nums("prompt_tokens")
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect(),
        nums("greedy_tokens")
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect(),
        nums("top2_margins")
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect(),
    )
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

fn csv(ids: &[u64]) -> String {
    ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

#[test]
fn generate_follows_llama_cpp_greedy_until_the_first_near_tie() {
    let model = smollm2_path();
    let (prompt, greedy, margins) = golden_case();
    let clear = margins
        .iter()
        .position(|&m| m < 0.3)
        .unwrap_or(greedy.len());
    let n = (clear + 1).to_string();
    let out = worker_orcd(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt-ids",
        &csv(&prompt),
        "--max-tokens",
        &n,
        "--temperature",
        "0",
        "--json",
        "--threads",
        "2",
        "--plugin-cache",
        Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("cli-generate-plugin-cache")
            .to_str()
            .unwrap(),
    ]);
    let v = json_of(&out);
    let tokens: Vec<u64> = v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert_eq!(tokens.len(), clear + 1);
    assert_eq!(&tokens[..clear], &greedy[..clear]);
    let prompt_back: Vec<u64> = v["prompt_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert_eq!(prompt_back, prompt);
    // The tokenizer plugin decodes the tokens: " Paris." for this prompt.
    let text = v["text"]
        .as_str()
        .expect("text decoded by the tokenizer plugin");
    assert!(text.starts_with(" Paris."), "{text:?}");
}

#[test]
fn score_ranks_llama_cpp_next_token_first() {
    let model = smollm2_path();
    let (prompt, greedy, _) = golden_case();
    let out = worker_orcd(&[
        "score",
        "--model",
        model.to_str().unwrap(),
        "--ids",
        &csv(&prompt),
        "--top",
        "3",
        "--json",
    ]);
    let v = json_of(&out);
    let positions = v["positions"].as_array().unwrap();
    assert_eq!(positions.len(), prompt.len());
    for p in positions {
        let cands = p.as_array().unwrap();
        assert_eq!(cands.len(), 3);
        let logits: Vec<f64> = cands.iter().map(|c| c[1].as_f64().unwrap()).collect();
        assert!(
            logits.windows(2).all(|w| w[0] >= w[1]),
            "best first: {logits:?}"
        );
    }
    let last = positions.last().unwrap().as_array().unwrap();
    assert_eq!(last[0][0].as_u64(), Some(greedy[0]));
}

#[test]
fn bad_arguments_fail_with_a_message() {
    let model = smollm2_path();
    let m = model.to_str().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (
            &[
                "generate",
                "--model",
                m,
                "--prompt-ids",
                "1,2",
                "--temperature",
                "0.7",
            ],
            "sampler",
        ),
        (
            &["generate", "--model", m, "--prompt-ids", "1,999999"],
            "vocabulary",
        ),
        (&["score", "--model", m, "--ids", "1,x,3"], "token id"),
        (
            &["score", "--model", "/nonexistent/model.gguf", "--ids", "1"],
            "cannot load",
        ),
    ];
    for (args, needle) in cases {
        let out = worker_orcd(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        assert!(err.contains(needle), "{args:?}: `{needle}` not in {err}");
    }
}
