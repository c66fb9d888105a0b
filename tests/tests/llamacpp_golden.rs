//! The CPU backend against llama.cpp on synthetic models of each architecture of issue 14
//! (Llama 3.1+ RoPE factors, Mistral, Qwen3, Qwen3 with YaRN, Phi-3.5 with LongRoPE, GPT-2) and
//! of issue 20 (GPT-OSS: MXFP4 experts, attention sinks, sliding and full layers, YaRN).
//!
//! `tests/fixtures/llamacpp-golden/generate.py` synthesized each model with `worker-orcd synth`
//! and recorded llama.cpp's (llama-cpp-python 0.3.36, CPU) top-10 logits per position and the
//! file's sha256. This test synthesizes the same file, checks the hash (a changed synth fails
//! here, it never silently compares another model), scores the same tokens and requires, at
//! every position where llama.cpp's top-2 margin is at least 0.3: the same argmax, and each of
//! llama.cpp's top-10 logits within 1.0. With a mixture of experts, a position is also skipped
//! where our router's choice is a near tie in any layer (the last chosen expert's logit less
//! than 0.05 above the best unchosen one): there the two engines' rounding may route the token
//! to different experts, a jump of the model itself, not an error of either engine.

use std::path::{Path, PathBuf};

use orcd_cpu::{CpuBackend, CpuOptions};
use orcd_device::{Device, LogitsWanted, SeqInput};
use orcd_model::Model;
use orcd_model::gguf::GgufFile;
use orcd_model::quant::GgmlType;
use orcd_tools::synth::{SynthOptions, shape, synthesize};
use sha2::{Digest, Sha256};

const MARGIN: f32 = 0.3;
const TOL: f32 = 1.0;
const ROUTE_MARGIN: f32 = 0.05;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/llamacpp-golden")
}

/// The synth options recorded in a golden file.
fn synth_options(golden: &serde_json::Value) -> (SynthOptions, PathBuf) {
    let s = &golden["synth"];
    let ty = |k: &str| GgmlType::parse(s[k].as_str().unwrap()).unwrap();
    let opts = SynthOptions {
        shape: shape(s["shape"].as_str().unwrap()).expect("shape"),
        ty: ty("type"),
        embed_ty: Some(ty("embed_type")),
        layers: Some(s["layers"].as_u64().unwrap() as u32),
        experts: s["experts"].as_u64().map(|n| n as u32),
        seed: s["seed"].as_u64().unwrap(),
        output_std: Some(s["output_std"].as_f64().unwrap() as f32),
    };
    (opts, dir().join(s["vocab_from"].as_str().unwrap()))
}

fn golden(case: &str) -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(dir().join(format!("{case}.json"))).expect("golden json"),
    )
    .expect("parse")
}

fn check(case: &str) {
    let golden = golden(case);
    let (opts, vocab) = synth_options(&golden);
    let vocab = GgufFile::open(&vocab).expect("vocab");
    let path = std::env::temp_dir().join(format!("orcd-golden-{case}-{}.gguf", std::process::id()));
    synthesize(&opts, &vocab, &path).expect("synth");
    let bytes = std::fs::read(&path).unwrap();
    let sha: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    drop(bytes);
    let model = Model::open(&path);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        sha,
        golden["sha256"].as_str().unwrap(),
        "{case}: the synthesized file changed; rerun generate.py to record llama.cpp again"
    );
    let model = model.expect("load");

    let tokens: Vec<u32> = golden["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect();
    let opts = CpuOptions {
        threads: 2,
        kv_tokens_budget: tokens.len().max(64),
        exact: false,
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

    let (mut worst, mut checked, mut near_ties) = (0.0f32, 0, 0);
    let route_margins = dev.route_margins().to_vec();
    for row in golden["positions"].as_array().unwrap() {
        let p = row["pos"].as_u64().unwrap() as usize;
        let top: Vec<(usize, f32)> = row["top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e[0].as_u64().unwrap() as usize,
                    e[1].as_f64().unwrap() as f32,
                )
            })
            .collect();
        if (row["margin"].as_f64().unwrap() as f32) < MARGIN {
            continue;
        }
        if route_margins[p] < ROUTE_MARGIN {
            near_ties += 1;
            continue;
        }
        checked += 1;
        let got = dev.logits_row(p).unwrap();
        let argmax = (0..got.len())
            .max_by(|&a, &b| got[a].total_cmp(&got[b]))
            .unwrap();
        assert_eq!(argmax, top[0].0, "{case}: argmax differs at position {p}");
        for &(id, want) in &top {
            let d = (got[id] - want).abs();
            worst = worst.max(d);
            assert!(
                d <= TOL,
                "{case}: position {p} token {id}: {} vs llama.cpp {want}",
                got[id]
            );
        }
    }
    eprintln!(
        "{case}: argmax equal at {checked}/{} positions with margin >= {MARGIN} \
         ({near_ties} more skipped: routing near a tie); largest top-10 |logit - llama.cpp| \
         {worst:.4}",
        tokens.len()
    );
    assert!(
        checked >= tokens.len() / 2,
        "{case}: too few positions with a real margin"
    );
}

#[test]
fn llama3_rope_factors_match_llama_cpp() {
    check("llama3.2-1b");
}

#[test]
fn mistral_matches_llama_cpp() {
    check("mistral-7b");
}

#[test]
fn qwen3_matches_llama_cpp() {
    check("qwen3-0.6b");
}

#[test]
fn qwen3_yarn_matches_llama_cpp() {
    check("qwen3-0.6b-yarn");
}

#[test]
fn phi3_longrope_matches_llama_cpp() {
    check("phi3.5-mini");
}

#[test]
fn gpt2_matches_llama_cpp() {
    check("gpt2");
}

/// Two layers (sliding, then full) of gpt-oss-20b with 8 of its MXFP4 experts, over 160 tokens
/// (past the window of 128).
#[test]
fn gpt_oss_matches_llama_cpp() {
    check("gpt-oss-20b");
}

/// For `generate.py --via-cargo`: synthesize the model of each golden file named in
/// `ORCD_GOLDEN_CASES` (comma-separated; its `synth` options must be filled in) into
/// `ORCD_GOLDEN_OUT/<case>.gguf`, with the same code as `worker-orcd synth`.
#[test]
#[ignore = "used by tests/fixtures/llamacpp-golden/generate.py"]
fn synthesize_for_generator() {
    let out = PathBuf::from(std::env::var("ORCD_GOLDEN_OUT").expect("ORCD_GOLDEN_OUT"));
    for case in std::env::var("ORCD_GOLDEN_CASES").unwrap().split(',') {
        let (opts, vocab) = synth_options(&golden(case));
        let vocab = GgufFile::open(&vocab).expect("vocab");
        synthesize(&opts, &vocab, &out.join(format!("{case}.gguf"))).expect("synth");
    }
}
