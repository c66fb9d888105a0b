//! The CPU backend against llama.cpp's greedy references on the two real models
//! (`../shared/reference/*.greedy.json`): teacher-forced argmax at every step (except near
//! ties), the first step's top-10 logits within a stated tolerance, free-running greedy output up
//! to the first near tie, batching that changes nothing, and the fast (8-bit activation) path
//! against the exact one.

use orcd_cpu::{CpuBackend, CpuOptions};
use orcd_device::{Device, LogitsWanted, SeqInput};
use orcd_model::Model;
use orcd_tests::golden::{TestModel, free_running, teacher_forced};

/// Largest first-step top-10 logit difference allowed with 8-bit activations (llama.cpp's own
/// scheme). Measured (2026-11-27, `--nocapture` prints it): 0.60 on SmolLM2, 0.58 on Gemma 3.
///
/// Quantizing activations does not bring us closer than the exact path: these models amplify any
/// bit-level difference. Rounding only the KV cache to f16 (as llama.cpp stores it) moved the
/// SmolLM2 per-prompt differences by up to 0.3 either way (max 0.42), rounding queries and
/// softmax weights to f16 as well moved them again (max 0.52-0.53). Getting much closer would
/// take replicating llama.cpp bit for bit (f16 KV, f16 Q·K, its SIMD sum orders, f16 scales).
const Q8_FIRST_STEP_TOL: f32 = 0.75;
/// The same bound for the exact f32 path (the reference README: "about 0.6"; measured 0.55 on
/// SmolLM2).
const EXACT_FIRST_STEP_TOL: f32 = 0.75;

fn backend(model: TestModel, exact: bool) -> CpuBackend {
    let m = Model::open(&model.path()).expect("load model");
    CpuBackend::new(
        m,
        CpuOptions {
            exact,
            ..CpuOptions::default()
        },
    )
    .expect("backend")
}

/// Every case teacher-forced (and free-running when `free` is set); returns the largest
/// first-step difference.
fn check_reference(model: TestModel, exact: bool, tol: f32, free: bool) -> f32 {
    let mut dev = backend(model, exact);
    let free_kv = dev.free_kv_tokens();
    let mut worst = 0.0f32;
    for case in model.cases() {
        let tf = teacher_forced(&mut dev, &case);
        eprintln!(
            "{model:?} exact={exact} {:?}: first-step max |diff| {:.4}, near-tie mismatches {:?}",
            case.prompt, tf.first_step_max_diff, tf.near_tie_mismatches
        );
        assert!(
            tf.clear_mismatches.is_empty(),
            "{:?}: argmax differs from llama.cpp at clear steps {:?}",
            case.prompt,
            tf.clear_mismatches
        );
        assert!(
            tf.first_step_max_diff <= tol,
            "{:?}: first-step logits differ by {} > {tol}",
            case.prompt,
            tf.first_step_max_diff
        );
        worst = worst.max(tf.first_step_max_diff);
        if !free {
            continue;
        }
        let (got, ok) = free_running(&mut dev, &case);
        assert!(
            ok,
            "{:?}: free-running greedy {:?} departs from llama.cpp {:?} before the first near tie {:?}",
            case.prompt,
            got,
            case.greedy_tokens,
            case.first_near_tie()
        );
    }
    assert_eq!(dev.free_kv_tokens(), free_kv, "every slot was given back");
    eprintln!("{model:?} exact={exact}: largest first-step top-10 |diff| {worst:.4}");
    worst
}

#[test]
fn smollm2_matches_llama_cpp_greedy() {
    check_reference(TestModel::SmolLm2, false, Q8_FIRST_STEP_TOL, true);
}

#[test]
fn gemma3_matches_llama_cpp_greedy() {
    check_reference(TestModel::Gemma3, false, Q8_FIRST_STEP_TOL, true);
}

#[test]
fn smollm2_exact_path_matches_llama_cpp_greedy() {
    check_reference(TestModel::SmolLm2, true, EXACT_FIRST_STEP_TOL, true);
}

/// Two sequences in one step give the same logits as each alone (one prefilling, one decoding
/// after a prompt of its own): SmolLM2's Q4_1 weights.
#[test]
fn batching_does_not_change_logits() {
    batching_does_not_change(TestModel::SmolLm2);
}

/// The same on Gemma 3, whose weights are Q5_0, Q8_0 and the K-quants Q4_K and Q6_K (the
/// one-token dots against the multi-token tiles of each).
#[test]
fn batching_does_not_change_gemma3_logits() {
    batching_does_not_change(TestModel::Gemma3);
}

fn batching_does_not_change(model: TestModel) {
    let cases = model.cases();
    let (a, b) = (&cases[0].prompt_tokens, &cases[1].prompt_tokens);
    let mut dev = backend(model, false);

    // Alone: a's prompt; b's prompt then its first greedy token.
    let alone_a = {
        let s = dev.alloc_seq(64).unwrap();
        dev.forward(&[SeqInput {
            slot: s,
            start_pos: 0,
            tokens: a,
            logits: LogitsWanted::All,
        }])
        .unwrap();
        let rows: Vec<Vec<f32>> = (0..a.len()).map(|r| dev.logits_row(r).unwrap()).collect();
        dev.free_seq(s);
        rows
    };
    let next_b = cases[1].greedy_tokens[0];
    let alone_b = {
        let s = dev.alloc_seq(64).unwrap();
        dev.forward(&[SeqInput {
            slot: s,
            start_pos: 0,
            tokens: b,
            logits: LogitsWanted::None,
        }])
        .unwrap();
        dev.forward(&[SeqInput {
            slot: s,
            start_pos: b.len(),
            tokens: &[next_b],
            logits: LogitsWanted::Last,
        }])
        .unwrap();
        let row = dev.logits_row(0).unwrap();
        dev.free_seq(s);
        row
    };

    // Together: b's prompt first, then one step with a's whole prompt and b's next token.
    let sa = dev.alloc_seq(64).unwrap();
    let sb = dev.alloc_seq(64).unwrap();
    dev.forward(&[SeqInput {
        slot: sb,
        start_pos: 0,
        tokens: b,
        logits: LogitsWanted::None,
    }])
    .unwrap();
    let rows = dev
        .forward(&[
            SeqInput {
                slot: sa,
                start_pos: 0,
                tokens: a,
                logits: LogitsWanted::All,
            },
            SeqInput {
                slot: sb,
                start_pos: b.len(),
                tokens: &[next_b],
                logits: LogitsWanted::Last,
            },
        ])
        .unwrap();
    assert_eq!(rows, a.len() + 1);
    let max_diff = |x: &[f32], y: &[f32]| {
        x.iter()
            .zip(y)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0f32, f32::max)
    };
    for (r, want) in alone_a.iter().enumerate() {
        let got = dev.logits_row(r).unwrap();
        assert!(
            max_diff(&got, want) <= 1e-4,
            "row {r} of a differs when batched"
        );
    }
    let got_b = dev.logits_row(a.len()).unwrap();
    assert!(
        max_diff(&got_b, &alone_b) <= 1e-4,
        "b's decode row differs when batched"
    );
}

/// The fast path (8-bit activations) and the exact f32 path agree on the logits of every
/// position of a prompt within a stated bound, and on the argmax wherever it is clear.
#[test]
fn fast_path_agrees_with_exact_path() {
    let case = &TestModel::SmolLm2.cases()[2];
    let ids = &case.prompt_tokens;
    let mut rows = Vec::new();
    for exact in [true, false] {
        let mut dev = backend(TestModel::SmolLm2, exact);
        let s = dev.alloc_seq(ids.len()).unwrap();
        dev.forward(&[SeqInput {
            slot: s,
            start_pos: 0,
            tokens: ids,
            logits: LogitsWanted::All,
        }])
        .unwrap();
        rows.push(
            (0..ids.len())
                .map(|r| dev.logits_row(r).unwrap())
                .collect::<Vec<_>>(),
        );
    }
    let mut worst = 0.0f32;
    for (e, q) in rows[0].iter().zip(&rows[1]) {
        let d = e
            .iter()
            .zip(q)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        worst = worst.max(d);
        let top = orcd_device::host_logits::top_k(e, 2);
        if top[0].1 - top[1].1 > 0.5 {
            assert_eq!(orcd_device::host_logits::argmax(q).0, top[0].0);
        }
    }
    eprintln!("exact vs Q8 activations: largest logit |diff| over the prompt {worst:.4}");
    assert!(worst < 1.5, "fast and exact paths differ by {worst}");
}
