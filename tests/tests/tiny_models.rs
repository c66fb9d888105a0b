//! The CPU backend against an independent numpy forward pass on tiny random-weight llama, qwen2
//! and gemma3 models (f32 weights; `tests/fixtures/tiny-models/generate.py` wrote the models and
//! the expected logits). This is the numeric check of qwen2 (no real qwen2 model is in the
//! suite) and of gemma3's global layer and sliding window on a sequence longer than the window.

use std::path::{Path, PathBuf};

use orcd_cpu::{CpuBackend, CpuOptions};
use orcd_device::{Device, LogitsWanted, SeqInput};
use orcd_model::Model;

/// f32 engine vs float64 numpy: the logits agree to this.
const TOL: f32 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/tiny-models")
        .join(name)
}

fn check(arch: &str, exact: bool) {
    let model = Model::open(&fixture(&format!("tiny-{arch}.gguf"))).expect("load");
    let want: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture(&format!("tiny-{arch}.json"))).expect("json"),
    )
    .expect("parse");
    let tokens: Vec<u32> = want["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect();
    let rows = want["logits"].as_array().unwrap();
    let opts = CpuOptions {
        threads: 2,
        kv_tokens_budget: 64,
        exact,
        // numpy computes in f32: keep the cache exact too (f16, the default, is checked
        // against f32 in tests/kv_cache.rs)
        kv_type: orcd_model::KvType::F32,
        ..CpuOptions::default()
    };
    let mut dev = CpuBackend::new(model, opts).expect("backend");
    let slot = dev.alloc_seq(tokens.len()).unwrap();
    let n = dev
        .forward(&[SeqInput {
            slot,
            start_pos: 0,
            tokens: &tokens,
            logits: LogitsWanted::All,
        }])
        .unwrap();
    assert_eq!(n, tokens.len());
    let mut worst = 0.0f32;
    for (p, row) in rows.iter().enumerate() {
        let got = dev.logits_row(p).unwrap();
        for (g, w) in got.iter().zip(row.as_array().unwrap()) {
            worst = worst.max((g - w.as_f64().unwrap() as f32).abs());
        }
    }
    eprintln!("tiny {arch} (exact={exact}): largest |logit - numpy| {worst:.2e}");
    assert!(worst <= TOL, "{arch}: logits differ from numpy by {worst}");
}

#[test]
fn tiny_llama_matches_numpy() {
    check("llama", true);
}

#[test]
fn tiny_qwen2_matches_numpy() {
    check("qwen2", true);
}

#[test]
fn tiny_gemma3_matches_numpy() {
    check("gemma3", true);
}

/// f32 weights take the float path whatever the dot-product setting.
#[test]
fn tiny_models_match_numpy_on_the_default_path() {
    for arch in ["llama", "qwen2", "gemma3"] {
        check(arch, false);
    }
}
