//! The CUDA backend on the real models: the same golden checks as the CPU backend (llama.cpp's
//! greedy references, teacher-forced; `orcd_tests::golden`), its logits against the CPU
//! backend's exact path at every step, batching and chunking that change nothing, repeatable
//! tokens, KV exhaustion that leaves the device serving, and a start without a GPU that fails
//! with a typed error. GPU tests are `#[ignore]`d; `scripts/gpu-test.sh` runs them.
//!
//! Tolerance GPU vs CPU (exact f32 path): largest |logit difference| per step, relative to the
//! row's largest |logit|, below [`CPU_TOL`]; both compute in f32 with the same dequantized
//! weights, differing only in summation order and transcendental functions.

use orcd_cpu::{CpuBackend, CpuOptions};
use orcd_cuda::{CudaBackend, CudaOptions};
use orcd_device::EngineError;
use orcd_device::decode::greedy_generate;
use orcd_device::{Device, LogitsWanted, SeqInput};
use orcd_model::KvType;
use orcd_model::Model;
use orcd_tests::golden::{TestModel, free_running, teacher_forced};

/// Largest first-step top-10 difference from llama.cpp allowed, per model. SmolLM2: the
/// README's "about 0.6" (seen: 0.55). Gemma 3: 1.0; this backend computes in exact f32 like the
/// CPU backend's exact path (GPU vs CPU within 1e-6), and on "def square(x):\n" that differs
/// from llama.cpp's 8-bit activations by 0.89 (seen on an H200).
fn first_step_tol(model: TestModel) -> f32 {
    match model {
        // 0.6 with an f32 KV cache; f16 (the default, as llama.cpp keeps it) moves a prompt's
        // first-step difference by up to 0.3 either way (0.69 seen on an H200), the CPU
        // backend's test allows 0.75 for the same reason (tests/tests/reference_greedy.rs).
        TestModel::SmolLm2 => 0.75,
        TestModel::Gemma3 => 1.0,
    }
}
/// Largest per-step logit difference from the CPU backend, relative to the row's scale.
const CPU_TOL: f32 = 2e-3;
/// The same for the packed path against the CPU's Q8 path: both quantize activations the same
/// way, but the dots are summed in other orders, so an activation a rounding step away can
/// round to the neighbouring Q8 value, and over 30 layers the two paths' quantization noise
/// decorrelates: seen at most 3.75e-2 of the row scale over the 17 steps (1.10 at a scale of
/// 37.4; 0.57 of 20.2 at the first step) on an H200, about the size of the whole Q8 effect (the
/// exact path is 0.55 from llama.cpp's Q8 path at the first step).
const CPU_Q8_TOL: f32 = 0.1;

fn cuda(model: TestModel, opts: CudaOptions) -> CudaBackend {
    let m = Model::open(&model.path()).expect("load model");
    CudaBackend::new(m, opts).expect("CUDA backend")
}

fn check_reference(model: TestModel) {
    let mut dev = cuda(model, CudaOptions::default());
    let free = dev.free_kv_tokens();
    let mut worst = 0.0f32;
    for case in model.cases() {
        let tf = teacher_forced(&mut dev, &case);
        eprintln!(
            "{model:?} cuda {:?}: first-step max |diff| {:.4}, near-tie mismatches {:?}",
            case.prompt, tf.first_step_max_diff, tf.near_tie_mismatches
        );
        assert!(
            tf.clear_mismatches.is_empty(),
            "{:?}: argmax differs from llama.cpp at clear steps {:?}",
            case.prompt,
            tf.clear_mismatches
        );
        assert!(
            tf.first_step_max_diff <= first_step_tol(model),
            "{:?}: first-step logits differ by {}",
            case.prompt,
            tf.first_step_max_diff
        );
        worst = worst.max(tf.first_step_max_diff);
        let (got, ok) = free_running(&mut dev, &case);
        assert!(
            ok,
            "{:?}: free-running greedy {got:?} departs from llama.cpp",
            case.prompt
        );
    }
    assert_eq!(dev.free_kv_tokens(), free, "every slot was given back");
    eprintln!("{model:?} cuda: largest first-step top-10 |diff| from llama.cpp {worst:.4}");
}

#[test]
#[ignore = "needs a CUDA GPU and the SmolLM2 model"]
fn smollm2_matches_llama_cpp_greedy() {
    check_reference(TestModel::SmolLm2);
}

#[test]
#[ignore = "needs a CUDA GPU and the Gemma 3 model"]
fn gemma3_matches_llama_cpp_greedy() {
    check_reference(TestModel::Gemma3);
}

/// Prompt, then decode steps, on both backends; every step's logits row compared. `packed`:
/// the CUDA packed path (Q8 activations) against the CPU backend's Q8 path, within `tol`;
/// else the GGUF-layout f32 path against the CPU's exact path, within [`CPU_TOL`].
fn check_against_cpu(model: TestModel, packed: bool) {
    let tol = if packed { CPU_Q8_TOL } else { CPU_TOL };
    let m = Model::open(&model.path()).expect("load model");
    let opts = CudaOptions {
        packed,
        ..CudaOptions::default()
    };
    let mut gpu = CudaBackend::new(m.clone(), opts).expect("CUDA backend");
    let mut cpu = CpuBackend::new(
        m,
        CpuOptions {
            exact: !packed,
            // the CUDA backend keeps f32 KV: compare like with like
            kv_type: orcd_model::KvType::F32,
            ..CpuOptions::default()
        },
    )
    .expect("CPU backend");
    let case = &model.cases()[0];
    let mut ids = case.prompt_tokens.clone();
    ids.extend(&case.greedy_tokens);
    let p = case.prompt_tokens.len();
    let (gs, cs) = (
        gpu.alloc_seq(ids.len()).unwrap(),
        cpu.alloc_seq(ids.len()).unwrap(),
    );
    let mut worst = 0.0f32;
    let mut pos = 0;
    // Step 0: the whole prompt; then one token per step.
    let mut steps: Vec<&[u32]> = vec![&ids[..p]];
    steps.extend(ids[p..].chunks(1).take(16));
    for (i, toks) in steps.into_iter().enumerate() {
        for (dev, slot) in [
            (&mut gpu as &mut dyn Device, gs),
            (&mut cpu as &mut dyn Device, cs),
        ] {
            dev.forward(&[SeqInput {
                slot,
                start_pos: pos,
                tokens: toks,
                logits: LogitsWanted::Last,
            }])
            .expect("step");
        }
        pos += toks.len();
        let (a, b) = (gpu.logits_row(0).unwrap(), cpu.logits_row(0).unwrap());
        let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let diff = a
            .iter()
            .zip(&b)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        eprintln!(
            "{model:?} packed={packed} step {i}: max |gpu - cpu| {diff:.5} (row scale {scale:.2})"
        );
        assert!(diff <= tol * scale, "step {i}: {diff} > {tol} * {scale}");
        worst = worst.max(diff / scale);
        let (ga, ca) = (
            gpu.logits_argmax(0).unwrap().0,
            cpu.logits_argmax(0).unwrap().0,
        );
        // Same argmax, unless the CPU's top two are closer than the paths' difference (Q8).
        let runner_up = b
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != ca as usize)
            .fold(f32::NEG_INFINITY, |m, (_, &v)| m.max(v));
        if !packed || b[ca as usize] - runner_up > 2.0 * diff {
            assert_eq!(ga, ca, "step {i}");
        } else if ga != ca {
            eprintln!("step {i}: argmax {ga} vs {ca} at a near tie");
        }
    }
    eprintln!(
        "{model:?} packed={packed}: largest relative per-step logit difference GPU vs CPU {worst:.2e}"
    );
}

#[test]
#[ignore = "needs a CUDA GPU and the SmolLM2 model"]
fn smollm2_logits_match_the_cpu_backend_at_every_step() {
    check_against_cpu(TestModel::SmolLm2, false);
}

/// The packed path (Q8 activations, integer dots) against the CPU backend's Q8 path.
#[test]
#[ignore = "needs a CUDA GPU and the SmolLM2 model"]
fn smollm2_packed_logits_match_the_cpu_q8_backend_at_every_step() {
    check_against_cpu(TestModel::SmolLm2, true);
}

#[test]
#[ignore = "needs a CUDA GPU and the Gemma 3 model"]
fn gemma3_logits_match_the_cpu_backend_at_every_step() {
    check_against_cpu(TestModel::Gemma3, false);
}

/// Two sequences in one batch, split into chunks smaller than a prompt, give the same logits
/// as each sequence alone in one chunk.
#[test]
#[ignore = "needs a CUDA GPU and the SmolLM2 model"]
fn batching_and_chunking_change_nothing() {
    let m = Model::open(&TestModel::SmolLm2.path()).expect("load model");
    let mut big = CudaBackend::new(m.clone(), CudaOptions::default()).unwrap();
    let mut small = CudaBackend::new(
        m,
        CudaOptions {
            max_batch_tokens: 5,
            ..CudaOptions::default()
        },
    )
    .unwrap();
    let cases = TestModel::SmolLm2.cases();
    let (a, b) = (
        &cases[0].prompt_tokens,
        &cases[1 % cases.len()].prompt_tokens,
    );
    let mut alone = Vec::new();
    for toks in [a, b] {
        let s = big.alloc_seq(toks.len()).unwrap();
        big.forward(&[SeqInput {
            slot: s,
            start_pos: 0,
            tokens: toks,
            logits: LogitsWanted::All,
        }])
        .unwrap();
        alone.push(
            (0..toks.len())
                .map(|r| big.logits_row(r).unwrap())
                .collect::<Vec<_>>(),
        );
        big.free_seq(s);
    }
    let (sa, sb) = (
        small.alloc_seq(a.len()).unwrap(),
        small.alloc_seq(b.len()).unwrap(),
    );
    let rows = small
        .forward(&[
            SeqInput {
                slot: sa,
                start_pos: 0,
                tokens: a,
                logits: LogitsWanted::All,
            },
            SeqInput {
                slot: sb,
                start_pos: 0,
                tokens: b,
                logits: LogitsWanted::All,
            },
        ])
        .unwrap();
    assert_eq!(rows, a.len() + b.len());
    let mut worst = 0.0f32;
    for (r, want) in alone.concat().iter().enumerate() {
        let got = small.logits_row(r).unwrap();
        let d = got
            .iter()
            .zip(want)
            .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        worst = worst.max(d);
    }
    eprintln!("batched + chunked vs alone: max |diff| {worst:.2e}");
    // Each token's arithmetic is the same whatever its neighbours (matrix columns are
    // independent, reductions have a fixed order): bit-identical.
    assert_eq!(worst, 0.0);
}

/// Same prompt, 100 runs: identical tokens (spec 1031).
#[test]
#[ignore = "needs a CUDA GPU and the SmolLM2 model"]
fn greedy_tokens_repeat_exactly_over_100_runs() {
    let mut dev = cuda(TestModel::SmolLm2, CudaOptions::default());
    let prompt = &TestModel::SmolLm2.cases()[0].prompt_tokens;
    let first = greedy_generate(&mut dev, prompt, 24, &[]).unwrap().tokens;
    for run in 1..100 {
        assert_eq!(
            greedy_generate(&mut dev, prompt, 24, &[]).unwrap().tokens,
            first,
            "run {run}"
        );
    }
}

/// A KV budget too small for a sequence: VRAM_OOM for it, nothing leaked, and the next
/// request that fits still runs (spec 1021). Bad requests are typed errors.
#[test]
#[ignore = "needs a CUDA GPU and the SmolLM2 model"]
fn kv_exhaustion_is_typed_and_the_device_keeps_serving() {
    let mut dev = cuda(
        TestModel::SmolLm2,
        CudaOptions {
            kv_tokens_budget: Some(64),
            ..CudaOptions::default()
        },
    );
    assert_eq!(dev.free_kv_tokens(), 64);
    let err = dev.alloc_seq(100).unwrap_err();
    assert!(
        matches!(err, EngineError::KvCacheExhausted { .. }),
        "{err:?}"
    );
    assert_eq!(err.code(), "VRAM_OOM");
    assert_eq!(dev.free_kv_tokens(), 64);
    let prompt = &TestModel::SmolLm2.cases()[0].prompt_tokens;
    let out = greedy_generate(&mut dev, &prompt[..prompt.len().min(40)], 8, &[]).unwrap();
    assert_eq!(out.tokens.len(), 8);
    assert_eq!(dev.free_kv_tokens(), 64);
    // Hostile steps.
    let s = dev.alloc_seq(10).unwrap();
    for bad in [
        SeqInput {
            slot: s,
            start_pos: 0,
            tokens: &[49_152],
            logits: LogitsWanted::Last,
        },
        SeqInput {
            slot: s,
            start_pos: 3,
            tokens: &[1],
            logits: LogitsWanted::Last,
        },
        SeqInput {
            slot: s,
            start_pos: 0,
            tokens: &[1; 11],
            logits: LogitsWanted::Last,
        },
    ] {
        let e = dev.forward(&[bad]).unwrap_err();
        assert_eq!(e.code(), "INVALID_REQUEST", "{e}");
    }
    assert!(dev.logits_argmax(0).is_err(), "no rows after a failed step");
    assert!(dev.verify_residency().unwrap() > 0);
}

/// Without a driver (CI), or with a GPU index that does not exist, startup is a typed error.
#[test]
fn a_missing_gpu_is_a_typed_error() {
    let m = Model::open(&TestModel::SmolLm2.path()).expect("load model");
    let opts = CudaOptions {
        gpu: if orcd_cuda::driver_available() {
            4096
        } else {
            0
        },
        ..CudaOptions::default()
    };
    match CudaBackend::new(m, opts) {
        Err(EngineError::BackendUnavailable(msg)) => eprintln!("as expected: {msg}"),
        other => panic!("expected BackendUnavailable, got {other:?}"),
    }
}

/// Decode speed at batch 1 (printed, not asserted): a 16-token prompt, then 128 greedy steps,
/// each a forward of one token plus the GPU argmax read back, as the worker's loop does; for
/// packed weights + fused kernels + CUDA graphs (the default), the same unpacked, packed with
/// graphs alone, and unpacked with neither.
#[test]
#[ignore = "needs a CUDA GPU and the SmolLM2 model"]
fn decode_speed_smollm2_batch1() {
    let m = Model::open(&TestModel::SmolLm2.path()).expect("load model");
    for (packed, fused, graphs) in [
        (true, true, true),
        (false, true, true),
        (true, false, true),
        (false, false, false),
    ] {
        let opts = CudaOptions {
            packed,
            fused,
            cuda_graphs: graphs,
            ..CudaOptions::default()
        };
        let mut dev = CudaBackend::new(m.clone(), opts).expect("CUDA backend");
        let prompt: Vec<u32> = TestModel::SmolLm2.cases()[0]
            .prompt_tokens
            .iter()
            .copied()
            .cycle()
            .take(16)
            .collect();
        for round in 0..3 {
            let slot = dev.alloc_seq(16 + 128).unwrap();
            dev.forward(&[SeqInput {
                slot,
                start_pos: 0,
                tokens: &prompt,
                logits: LogitsWanted::Last,
            }])
            .unwrap();
            let mut tok = dev.logits_argmax(0).unwrap().0;
            let start = std::time::Instant::now();
            for i in 0..128 {
                dev.forward(&[SeqInput {
                    slot,
                    start_pos: 16 + i,
                    tokens: &[tok],
                    logits: LogitsWanted::Last,
                }])
                .unwrap();
                tok = dev.logits_argmax(0).unwrap().0;
            }
            let secs = start.elapsed().as_secs_f64();
            dev.free_seq(slot);
            eprintln!(
                "decode packed={packed} fused={fused} graphs={graphs} round {round}: {:.1} tok/s at batch 1 on {} ({:.3} ms/token)",
                128.0 / secs,
                dev.gpu_name(),
                secs * 1000.0 / 128.0
            );
            if packed && fused && graphs {
                // The same steps with no argmax read back in between (each step still waits for
                // the previous one before reusing its pinned metadata buffer): the difference to
                // the loop above is what the argmax launch and read-back cost per token.
                let slot = dev.alloc_seq(16 + 128).unwrap();
                dev.forward(&[SeqInput {
                    slot,
                    start_pos: 0,
                    tokens: &prompt,
                    logits: LogitsWanted::Last,
                }])
                .unwrap();
                dev.synchronize().unwrap();
                let start = std::time::Instant::now();
                for i in 0..128 {
                    dev.forward(&[SeqInput {
                        slot,
                        start_pos: 16 + i,
                        tokens: &[tok],
                        logits: LogitsWanted::Last,
                    }])
                    .unwrap();
                }
                dev.synchronize().unwrap();
                let gpu = start.elapsed().as_secs_f64();
                dev.free_seq(slot);
                eprintln!(
                    "decode without the argmax read-back round {round}: {:.3} ms/token ({:.0} % of the loop above saved)",
                    gpu * 1000.0 / 128.0,
                    100.0 * (secs - gpu) / secs
                );
            }
        }
    }
}

/// Decode steps replayed from captured CUDA graphs give bit-identical logits to direct launches.
#[test]
#[ignore = "needs a CUDA GPU and the SmolLM2 model"]
fn cuda_graphs_replay_the_same_steps() {
    let m = Model::open(&TestModel::SmolLm2.path()).expect("load model");
    let mut with = CudaBackend::new(m.clone(), CudaOptions::default()).unwrap();
    let mut without = CudaBackend::new(
        m,
        CudaOptions {
            cuda_graphs: false,
            ..CudaOptions::default()
        },
    )
    .unwrap();
    let prompt = &TestModel::SmolLm2.cases()[0].prompt_tokens;
    let (a, b) = (
        with.alloc_seq(prompt.len() + 20).unwrap(),
        without.alloc_seq(prompt.len() + 20).unwrap(),
    );
    let mut next = prompt.clone();
    let mut pos = 0;
    for step in 0..20 {
        for (dev, slot) in [(&mut with, a), (&mut without, b)] {
            dev.forward(&[SeqInput {
                slot,
                start_pos: pos,
                tokens: &next,
                logits: LogitsWanted::Last,
            }])
            .unwrap();
        }
        assert_eq!(
            with.logits_row(0).unwrap(),
            without.logits_row(0).unwrap(),
            "step {step}"
        );
        pos += next.len();
        next = vec![with.logits_argmax(0).unwrap().0];
    }
    assert!(with.graphs_captured() >= 1);
    assert_eq!(without.graphs_captured(), 0);
}

/// The fused kernels compute the same forward as one launch per op, packed or not. Packed:
/// bit-identical (the quantization with the norm on the fly equals rms_norm then quantization,
/// and every packed matrix kernel computes the canonical dot).
fn check_fused_against_unfused(model: TestModel) {
    let m = Model::open(&model.path()).expect("load model");
    for packed in [true, false] {
        // The GGUF-layout path's fused and one-op kernels differ in the last bits of a few
        // values; an f16 KV cache rounds a key that sits at a rounding boundary one way or the
        // other, which grows those bits to ~3e-4 of the logits (seen on an H200). That path is
        // compared with an f32 cache; the packed path is bit-identical with the default f16.
        let kv_type = if packed {
            KvType::default()
        } else {
            KvType::F32
        };
        let opts = |fused| CudaOptions {
            fused,
            packed,
            kv_type,
            ..CudaOptions::default()
        };
        let mut fused = CudaBackend::new(m.clone(), opts(true)).unwrap();
        let mut plain = CudaBackend::new(m.clone(), opts(false)).unwrap();
        let case = &model.cases()[0];
        let mut ids = case.prompt_tokens.clone();
        ids.extend(&case.greedy_tokens[..8]);
        for dev in [&mut fused, &mut plain] {
            let slot = dev.alloc_seq(ids.len()).unwrap();
            dev.forward(&[SeqInput {
                slot,
                start_pos: 0,
                tokens: &ids,
                logits: LogitsWanted::All,
            }])
            .unwrap();
        }
        let mut worst = 0.0f32;
        for r in 0..ids.len() {
            let (a, b) = (fused.logits_row(r).unwrap(), plain.logits_row(r).unwrap());
            let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let d = a
                .iter()
                .zip(&b)
                .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
            worst = worst.max(d / scale);
        }
        eprintln!(
            "{model:?} packed={packed}: fused vs one-op-per-launch, largest relative logit difference {worst:.2e}"
        );
        if packed && matches!(model, TestModel::SmolLm2) {
            // SmolLM2 uses no fused kernel but the matrices' (and RoPE + store, bit-identical).
            assert_eq!(worst, 0.0);
        } else {
            assert!(worst < 1e-5, "{worst}");
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU and the SmolLM2 model"]
fn smollm2_fused_and_unfused_forward_agree() {
    check_fused_against_unfused(TestModel::SmolLm2);
}

#[test]
#[ignore = "needs a CUDA GPU and the Gemma 3 model"]
fn gemma3_fused_and_unfused_forward_agree() {
    check_fused_against_unfused(TestModel::Gemma3);
}

/// A KV budget larger than the card: startup fails fast with the bytes required and available
/// (spec 1020), and nothing stays allocated (a second backend then starts normally).
#[test]
#[ignore = "needs a CUDA GPU and the SmolLM2 model"]
fn too_large_a_kv_budget_fails_fast_with_the_numbers() {
    let m = Model::open(&TestModel::SmolLm2.path()).expect("load model");
    let opts = CudaOptions {
        kv_cache_bytes: Some(1 << 50),
        ..CudaOptions::default()
    };
    match CudaBackend::new(m.clone(), opts) {
        Err(
            e @ EngineError::InsufficientVram {
                required,
                available,
            },
        ) => {
            assert!(required > available && available > 0, "{e}");
            assert_eq!(e.code(), "INSUFFICIENT_VRAM");
            eprintln!("as expected: {e}");
        }
        other => panic!("expected InsufficientVram, got {other:?}"),
    }
    let dev = CudaBackend::new(m, CudaOptions::default()).expect("a normal start afterwards");
    let r = dev.vram_report();
    assert!(r.weights_bytes > 0 && r.kv_cache_bytes > 0 && r.scratch_bytes > 0);
    assert_eq!(dev.verify_residency().unwrap(), r.allocations);
}
