//! Every kernel against its CPU twin, on fresh random inputs each run (the seed is printed).
//! Outputs are poisoned (NaN) before each launch, so an element a kernel fails to write fails
//! the comparison. GPU tests: `#[ignore]`d here, run on the GPU machine by `scripts/gpu-test.sh`.
//!
//! Tolerances (relative error ‖gpu − cpu‖ / ‖cpu‖ unless stated): matrix products against an
//! f64 dot of the engine's own dequantized rows 1e-5 for every weight type (f32 accumulation in
//! another order); embedding rows exact to 1e-6; norms, RoPE and activations 1e-5; attention
//! against an f64 softmax 1e-5; argmax/top-k/penalties exact.

mod common;

use common::{Gpu, Rng, attention_f64, gguf_mat, norm, rel_err, tokens};
use orcd_cpu::ops as cpu;
use orcd_cuda::operand::{GateAct, Glu, KvLayer, LogitsRow, OutView, Penalties, TopKOut};
use orcd_cuda::ops::{AttnKernel, AttnParams, KvGeometry, QkNorm, Qkv, Rope, RopeScale, RopeStyle};
use orcd_cuda::{DeviceBuffer, Purpose};
use orcd_device::host_logits;
use orcd_model::RopeStyle as CpuRope;
use orcd_model::quant::{GgmlType, dequantize_row, quantize_row};

#[test]
#[ignore = "needs a CUDA GPU"]
fn matmul_matches_the_cpu_for_every_weight_type() {
    let g = Gpu::new();
    let mut rng = Rng::fresh("matmul");
    let (n, k) = (37, 512);
    for ty in GgmlType::ALL {
        // Quantize random weights with the engine, and dequantize them back as the reference.
        let mut bytes = Vec::new();
        let mut deq = vec![0f32; n * k];
        for r in 0..n {
            let row = rng.vec(k, 1.0);
            let q = quantize_row(ty, &row).expect("quantize");
            dequantize_row(ty, &q, &mut deq[r * k..(r + 1) * k]).expect("dequantize");
            bytes.extend(q);
        }
        let w = g.up(&bytes);
        for ncols in [1usize, 3, 9] {
            let x = rng.vec(ncols * k, 1.0);
            let stride = n + 5;
            let xd = g.up(&x);
            let yd = g.poisoned(ncols * stride);
            g.ops()
                .matmul(
                    gguf_mat(ty, &w, n, k),
                    xd.ptr(),
                    ncols,
                    OutView::write(yd.ptr(), stride),
                )
                .expect("launch");
            let y: Vec<f32> = g.down(&yd, ncols * stride);
            let mut got = Vec::new();
            let mut want = Vec::new();
            for c in 0..ncols {
                for r in 0..n {
                    got.push(y[c * stride + r]);
                    let dot: f64 = (0..k)
                        .map(|i| f64::from(deq[r * k + i]) * f64::from(x[c * k + i]))
                        .sum();
                    want.push(dot as f32);
                }
            }
            let e = rel_err(&got, &want);
            eprintln!("mmv {} ncols {ncols}: rel err {e:.2e}", ty.name());
            assert!(e < 1e-5, "{} ncols {ncols}: rel err {e}", ty.name());
            // The padding between columns is never written.
            assert!(y[n].is_nan(), "{}: wrote past the rows", ty.name());
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn embedding_rows_match_the_cpu_for_every_type() {
    let g = Gpu::new();
    let mut rng = Rng::fresh("embed");
    let (vocab, dim) = (50, 256);
    for ty in GgmlType::ALL {
        let mut bytes = Vec::new();
        let mut deq = vec![0f32; vocab * dim];
        for r in 0..vocab {
            let q = quantize_row(ty, &rng.vec(dim, 2.0)).expect("quantize");
            dequantize_row(ty, &q, &mut deq[r * dim..(r + 1) * dim]).expect("dequantize");
            bytes.extend(q);
        }
        let tokens: Vec<u32> = (0..7).map(|_| rng.below(vocab) as u32).collect();
        let w = g.up(&bytes);
        let td = g.up(&tokens);
        let out = g.poisoned(tokens.len() * dim);
        g.ops()
            .embed(
                gguf_mat(ty, &w, vocab, dim),
                td.ptr(),
                tokens.len(),
                out.ptr(),
                1.5,
            )
            .expect("launch");
        let got: Vec<f32> = g.down(&out, tokens.len() * dim);
        let want: Vec<f32> = tokens
            .iter()
            .flat_map(|&t| {
                deq[t as usize * dim..(t as usize + 1) * dim]
                    .iter()
                    .map(|v| v * 1.5)
            })
            .collect();
        let e = rel_err(&got, &want);
        eprintln!("embed {}: rel err {e:.2e}", ty.name());
        assert!(e < 1e-6, "{}: {e}", ty.name());
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn norms_adds_and_gathers_match_the_cpu() {
    let g = Gpu::new();
    let mut rng = Rng::fresh("norm");
    let (rows, n) = (5, 640);
    let x = rng.vec(rows * n, 3.0);
    let w = rng.vec(n, 1.0);
    let (xd, wd) = (g.up(&x), g.up(&w));
    let out = g.poisoned(rows * n);
    g.ops()
        .rms_norm(xd.ptr(), wd.ptr(), out.ptr(), rows, n, 1e-6)
        .unwrap();
    let mut want = vec![0f32; rows * n];
    for r in 0..rows {
        cpu::rmsnorm(
            &mut want[r * n..(r + 1) * n],
            &x[r * n..(r + 1) * n],
            &w,
            1e-6,
        );
    }
    let e = rel_err(&g.down(&out, rows * n), &want);
    eprintln!("rms_norm: rel err {e:.2e}");
    assert!(e < 1e-5);

    // In place (out = x), per head.
    g.ops()
        .rms_norm(xd.ptr(), wd.ptr(), xd.ptr(), rows * 10, 64, 1e-6)
        .unwrap();
    let mut want = x.clone();
    for h in want.chunks_mut(64) {
        cpu::rmsnorm_inplace(h, &w[..64], 1e-6);
    }
    let e = rel_err(&g.down(&xd, rows * n), &want);
    eprintln!("rms_norm per head, in place: rel err {e:.2e}");
    assert!(e < 1e-5);

    // Residual add and bias add.
    let a = rng.vec(rows * n, 1.0);
    let b = rng.vec(rows * n, 1.0);
    let bias = rng.vec(n, 1.0);
    let (ad, bd, biasd) = (g.up(&a), g.up(&b), g.up(&bias));
    g.ops().add(ad.ptr(), bd.ptr(), rows * n).unwrap();
    g.ops().add_bias(ad.ptr(), biasd.ptr(), rows, n).unwrap();
    let want: Vec<f32> = (0..rows * n).map(|i| a[i] + b[i] + bias[i % n]).collect();
    assert_eq!(g.down::<f32>(&ad, rows * n), want);

    // Row gather.
    let pick = [3i32, 0, 3];
    let pd = g.up(&pick);
    let out = g.poisoned(pick.len() * n);
    g.ops()
        .gather_rows(bd.ptr(), pd.ptr(), out.ptr(), pick.len(), n)
        .unwrap();
    let want: Vec<f32> = pick
        .iter()
        .flat_map(|&r| b[r as usize * n..(r as usize + 1) * n].to_vec())
        .collect();
    assert_eq!(g.down::<f32>(&out, pick.len() * n), want);
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn rope_matches_the_cpu_in_both_styles() {
    let g = Gpu::new();
    let mut rng = Rng::fresh("rope");
    let (ntok, heads, hd) = (6, 3, 64);
    for (style, cpu_style, n_rot, base, fscale) in [
        (RopeStyle::Norm, CpuRope::Normal, 64, 100_000.0f32, 1.0f32),
        (RopeStyle::Neox, CpuRope::Neox, 64, 1_000_000.0, 1.0),
        (RopeStyle::Neox, CpuRope::Neox, 32, 10_000.0, 0.25),
    ] {
        let x = rng.vec(ntok * heads * hd, 2.0);
        let pos: Vec<i32> = (0..ntok).map(|_| rng.below(8192) as i32).collect();
        let (xd, pd) = (g.up(&x), g.up(&pos));
        g.ops()
            .rope(
                xd.ptr(),
                &tokens(ntok, &pd, &pd),
                heads,
                hd,
                &Rope {
                    n_rot,
                    base,
                    freq_scale: fscale,
                    style,
                    scale: RopeScale::NONE,
                },
            )
            .unwrap();
        let mut want = x.clone();
        let (mut cos, mut sin) = (vec![0f32; n_rot / 2], vec![0f32; n_rot / 2]);
        for t in 0..ntok {
            cpu::rope_angles(&mut cos, &mut sin, pos[t] as usize, base, fscale, n_rot);
            for h in 0..heads {
                let at = (t * heads + h) * hd;
                cpu::rope(&mut want[at..at + hd], &cos, &sin, cpu_style);
            }
        }
        let e = rel_err(&g.down(&xd, x.len()), &want);
        eprintln!("rope {style:?} n_rot {n_rot}: rel err {e:.2e}");
        assert!(e < 1e-5, "{style:?}: {e}");
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn gated_activations_match_the_cpu() {
    let g = Gpu::new();
    let mut rng = Rng::fresh("activation");
    let n = 3000;
    let gate = rng.vec(n, 6.0);
    let up = rng.vec(n, 2.0);
    for silu in [true, false] {
        let (gd, ud) = (g.up(&gate), g.up(&up));
        let out = g.poisoned(n);
        if silu {
            g.ops().silu_mul(gd.ptr(), ud.ptr(), out.ptr(), n).unwrap();
        } else {
            g.ops()
                .gelu_tanh_mul(gd.ptr(), ud.ptr(), out.ptr(), n)
                .unwrap();
        }
        let want: Vec<f32> = (0..n)
            .map(|i| if silu { cpu::silu(gate[i]) } else { cpu::gelu_tanh(gate[i]) } * up[i])
            .collect();
        let e = rel_err(&g.down(&out, n), &want);
        eprintln!(
            "{}: rel err {e:.2e}",
            if silu { "silu" } else { "gelu_tanh" }
        );
        assert!(e < 1e-5);
    }
}

/// Paged KV write + attention with grouped heads, several sequences, windows on and off,
/// against an f64 reference over the same logical cache.
#[test]
#[ignore = "needs a CUDA GPU"]
fn paged_attention_matches_the_cpu() {
    let g = Gpu::new();
    let mut rng = Rng::fresh("attention");
    for (n_heads, n_kv_heads, hd, window) in [(9, 3, 64, 0usize), (4, 1, 256, 5), (8, 8, 128, 0)] {
        let kv_dim = n_kv_heads * hd;
        let (page_tokens, pages_per_slot, n_pages) = (16usize, 4usize, 12usize);
        // Two sequences with scattered pages; sequence 0 has 37 cached positions, 1 has 20.
        let tables: [Vec<i32>; 2] = [vec![7, 2, 9, 0], vec![4, 11, 0, 0]];
        let lens = [37usize, 20];
        let table_flat: Vec<i32> = tables.iter().flatten().copied().collect();
        // All positions are written through kv_write: tokens (slot, pos) for every position.
        let mut slot = Vec::new();
        let mut pos = Vec::new();
        for (s, &len) in lens.iter().enumerate() {
            for p in 0..len {
                slot.push(s as i32);
                pos.push(p as i32);
            }
        }
        let ntok = slot.len();
        let k = rng.vec(ntok * kv_dim, 1.0);
        let v = rng.vec(ntok * kv_dim, 1.0);
        let q = rng.vec(ntok * n_heads * hd, 1.0);
        let cache_len = n_pages * page_tokens * kv_dim;
        let kc = g.poisoned(cache_len);
        let vc = g.poisoned(cache_len);
        let (td, sd, pd) = (g.up(&table_flat), g.up(&slot), g.up(&pos));
        let (kd, vd, qd) = (g.up(&k), g.up(&v), g.up(&q));
        let geo = KvGeometry {
            kv_type: orcd_model::KvType::F32,
            page_table: td.ptr(),
            pages_per_slot,
            page_tokens,
            n_heads,
            n_kv_heads,
            head_dim: hd,
        };
        g.ops()
            .kv_write(
                &geo,
                kd.ptr(),
                vd.ptr(),
                KvLayer {
                    k: kc.ptr(),
                    v: vc.ptr(),
                },
                &tokens(ntok, &pd, &sd),
            )
            .unwrap();
        let out = g.poisoned(ntok * n_heads * hd);
        let scale = 1.0 / (hd as f32).sqrt();
        g.ops()
            .attention(
                &geo,
                KvLayer {
                    k: kc.ptr(),
                    v: vc.ptr(),
                },
                qd.ptr(),
                out.ptr(),
                &tokens(ntok, &pd, &sd),
                AttnParams {
                    kernel: AttnKernel::Auto,
                    window,
                    scale,
                    sinks: 0,
                },
            )
            .unwrap();
        let got: Vec<f32> = g.down(&out, ntok * n_heads * hd);
        // Reference: token t attends to the tokens of its sequence at positions lo..=pos.
        let want = attention_f64(&q, &k, &v, &lens, (n_heads, n_kv_heads, hd), window, scale);
        let e = rel_err(&got, &want);
        eprintln!(
            "attention {n_heads}/{n_kv_heads} heads, head_dim {hd}, window {window}: rel err {e:.2e}"
        );
        assert!(e < 1e-5, "{e}");
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn logits_argmax_top_k_and_penalties_match_the_host() {
    let g = Gpu::new();
    let mut rng = Rng::fresh("logits");
    let (rows, vocab) = (3, 50_000);
    let mut logits = rng.vec(rows * vocab, 10.0);
    // Ties (including a tie for the maximum), NaN and -inf in row 1.
    let r1 = vocab;
    logits[r1 + 17] = 50.0;
    logits[r1 + 4] = 50.0;
    logits[r1 + 9] = f32::NAN;
    logits[r1 + 100] = f32::NEG_INFINITY;
    for i in 200..260 {
        logits[r1 + i] = 20.0;
    }
    // Row 2: every value negative but a +0 and an earlier -0, which tie (the lower id wins),
    // and the entries spread over many argmax blocks.
    let r2 = 2 * vocab;
    for v in &mut logits[r2..r2 + vocab] {
        *v = -v.abs() - 1.0;
    }
    logits[r2 + 40_000] = 0.0;
    logits[r2 + 30_000] = -0.0;
    let ld = g.up(&logits);
    // Result, then the kernel's accumulator and counter (8 u32).
    let out = g.up(&[0u32; 8]);
    let ids = g.up(&vec![0u32; vocab]);
    let vals = g.up(&vec![0f32; vocab]);
    let count = g.up(&[0u32; 1]);
    for row in 0..rows {
        let host = &logits[row * vocab..(row + 1) * vocab];
        let lrow = LogitsRow {
            logits: ld.ptr(),
            row,
            vocab,
        };
        g.ops().argmax(lrow, out.ptr()).unwrap();
        let o: Vec<u32> = g.down(&out, 2);
        let want = host_logits::argmax(host);
        assert_eq!((o[0], f32::from_bits(o[1])), want, "argmax row {row}");
        for k in [1usize, 2, 10, 40, 61, 1000] {
            g.ops()
                .top_k(
                    lrow,
                    k,
                    TopKOut {
                        ids: ids.ptr(),
                        vals: vals.ptr(),
                        count: count.ptr(),
                    },
                )
                .unwrap();
            let n = g.down::<u32>(&count, 1)[0] as usize;
            let i: Vec<u32> = g.down(&ids, n);
            let v: Vec<f32> = g.down(&vals, n);
            let mut got: Vec<(u32, f32)> = i.into_iter().zip(v).collect();
            got.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            assert_eq!(got, host_logits::top_k(host, k), "top-{k} row {row}");
        }
    }
    // Penalties on row 2.
    let history = [5u32, 5, 9, 49_999, 5, 123];
    let mut counts = std::collections::BTreeMap::new();
    for &t in &history {
        *counts.entry(t).or_insert(0u32) += 1;
    }
    let pid: Vec<u32> = counts.keys().copied().collect();
    let pcnt: Vec<u32> = counts.values().copied().collect();
    let (pidd, pcntd) = (g.up(&pid), g.up(&pcnt));
    g.ops()
        .penalize(
            LogitsRow {
                logits: ld.ptr(),
                row: 2,
                vocab,
            },
            pidd.ptr(),
            pcntd.ptr(),
            pid.len(),
            Penalties {
                repeat: 1.3,
                frequency: 0.2,
                presence: 0.1,
            },
        )
        .unwrap();
    let mut want = logits[2 * vocab..].to_vec();
    host_logits::penalize(&mut want, &history, 1.3, 0.2, 0.1);
    let all: Vec<f32> = g.down(&ld, rows * vocab);
    assert_eq!(&all[2 * vocab..], &want[..]);
}

/// The constrained-decoding mask (`mask.cu`) against its CPU twin `host_logits::mask`: a
/// vocabulary that is not a multiple of 32 (the last word partly used), one row of three
/// masked, the other rows untouched, and argmax after the mask picks an allowed token.
#[test]
#[ignore = "needs a CUDA GPU"]
fn logits_mask_matches_the_host() {
    let g = Gpu::new();
    let (vocab, rows) = (128_259usize, 3usize);
    let logits: Vec<f32> = (0..rows * vocab)
        .map(|i| ((i as u64).wrapping_mul(2_654_435_761) % 10_007) as f32 / 100.0 - 50.0)
        .collect();
    // Every third token allowed, plus the last one.
    let mut allowed = vec![0u32; vocab.div_ceil(32)];
    for i in (0..vocab).step_by(3).chain([vocab - 1]) {
        allowed[i / 32] |= 1 << (i % 32);
    }
    let ld = g.up(&logits);
    let ad = g.up(&allowed);
    let lrow = LogitsRow {
        logits: ld.ptr(),
        row: 1,
        vocab,
    };
    g.ops().mask(lrow, ad.ptr()).unwrap();
    let mut want = logits.clone();
    host_logits::mask(&mut want[vocab..2 * vocab], &allowed);
    let got: Vec<f32> = g.down(&ld, rows * vocab);
    assert_eq!(got, want);
    let out = g.up(&[0u32; 8]);
    g.ops().argmax(lrow, out.ptr()).unwrap();
    let o: Vec<u32> = g.down(&out, 2);
    assert_eq!(o[0], host_logits::argmax(&want[vocab..2 * vocab]).0);
    assert!(o[0].is_multiple_of(3) || o[0] as usize == vocab - 1);
}

/// The log-probability kernels (`logsumexp_f32`, `gather_f32`) against their CPU twins
/// `host_logits::logsumexp` (f64 sums) and `host_logits::gather`: random rows, a row with NaN
/// and -inf entries and one huge logit, a row of only -inf.
#[test]
#[ignore = "needs a CUDA GPU"]
fn logits_logsumexp_and_gather_match_the_host() {
    let g = Gpu::new();
    let mut rng = Rng::fresh("logsumexp");
    let (rows, vocab) = (3, 151_936);
    let mut logits = rng.vec(rows * vocab, 20.0);
    logits[vocab + 7] = f32::NAN;
    logits[vocab + 8] = f32::NEG_INFINITY;
    logits[vocab + 9_999] = 3_000.0;
    for v in &mut logits[2 * vocab..] {
        *v = f32::NEG_INFINITY;
    }
    let ld = g.up(&logits);
    let out = g.up(&[0f32; 1]);
    let ids: Vec<u32> = vec![0, 9_999, 7, (vocab - 1) as u32, 42, 9_999];
    let idd = g.up(&ids);
    let vals = g.up(&vec![0f32; ids.len()]);
    for row in 0..rows {
        let host = &logits[row * vocab..(row + 1) * vocab];
        let lrow = LogitsRow {
            logits: ld.ptr(),
            row,
            vocab,
        };
        g.ops().logsumexp(lrow, out.ptr()).unwrap();
        let got = g.down::<f32>(&out, 1)[0];
        let want = host_logits::logsumexp(host);
        if want.is_infinite() {
            assert_eq!(got, want, "row {row}");
        } else {
            let rel = ((got - want) / want.abs().max(1.0)).abs();
            assert!(rel < 1e-5, "row {row}: {got} vs {want}");
        }
        g.ops()
            .gather(lrow, idd.ptr(), ids.len(), vals.ptr())
            .unwrap();
        let got: Vec<f32> = g.down(&vals, ids.len());
        let want = host_logits::gather(host, &ids).unwrap();
        for (a, b) in got.iter().zip(&want) {
            assert!(a.to_bits() == b.to_bits(), "row {row}: {got:?} vs {want:?}");
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn every_allocation_is_device_memory_and_accounted() {
    let g = Gpu::new();
    let a = g.ledger.alloc(1 << 20, Purpose::Weights).unwrap();
    let b = g.ledger.alloc(3 << 20, Purpose::KvCache).unwrap();
    let c = g.ledger.alloc(5, Purpose::Scratch).unwrap();
    let r = g.ledger.report();
    assert_eq!(
        (r.weights_bytes, r.kv_cache_bytes, r.scratch_bytes),
        (1 << 20, 3 << 20, 5)
    );
    assert_eq!(g.ledger.verify_residency().unwrap(), 3);
    drop((a, b, c));
    assert_eq!(g.ledger.report().total(), 0);
    // Far more than any card has: a typed error, not a panic.
    match g.ledger.alloc(1 << 50, Purpose::Scratch) {
        Err(orcd_cuda::CudaError::OutOfMemory {
            required,
            available,
        }) => {
            assert_eq!(required, 1 << 50);
            assert!(available > 0);
        }
        other => panic!("{other:?}"),
    }
}

/// The fused matrix kernels (q/k/v in one launch; gate/up with the activation) against the CPU.
#[test]
#[ignore = "needs a CUDA GPU"]
fn fused_matmuls_match_the_cpu_for_every_weight_type() {
    let g = Gpu::new();
    let mut rng = Rng::fresh("fused matmul");
    let k = 512;
    let ncols = 3;
    for ty in GgmlType::ALL {
        // Random matrices of `n` rows, quantized, with their dequantized twins.
        let mut matrix = |n: usize| {
            let mut bytes = Vec::new();
            let mut deq = vec![0f32; n * k];
            for r in 0..n {
                let q = quantize_row(ty, &rng.vec(k, 1.0)).expect("quantize");
                dequantize_row(ty, &q, &mut deq[r * k..(r + 1) * k]).expect("dequantize");
                bytes.extend(q);
            }
            (bytes, deq)
        };
        let mats = [matrix(37), matrix(13), matrix(6)];
        let x = rng.vec(ncols * k, 1.0);
        let dots = |deq: &[f32], n: usize| -> Vec<f32> {
            let mut out = Vec::with_capacity(ncols * n);
            for c in 0..ncols {
                for r in 0..n {
                    let d: f64 = (0..k)
                        .map(|i| f64::from(deq[r * k + i]) * f64::from(x[c * k + i]))
                        .sum();
                    out.push(d as f32);
                }
            }
            out
        };
        let xd = g.up(&x);
        let ws: Vec<DeviceBuffer> = mats.iter().map(|(b, _)| g.up(b)).collect();
        let ns = [37usize, 13, 6];
        let ys: Vec<DeviceBuffer> = ns.iter().map(|&n| g.poisoned(ncols * n)).collect();
        let parts = [0, 1, 2].map(|i| (gguf_mat(ty, &ws[i], ns[i], k), ys[i].ptr()));
        g.ops()
            .matmul3(parts, xd.ptr(), ncols, None)
            .expect("launch");
        for i in 0..3 {
            let e = rel_err(&g.down(&ys[i], ncols * ns[i]), &dots(&mats[i].1, ns[i]));
            assert!(e < 1e-5, "mmv3 {} part {i}: {e}", ty.name());
        }
        // With the RMS norm of x fused in: the same as the dots of the normed activations.
        let nw = rng.vec(k, 1.0);
        let nwd = g.up(&nw);
        let mut xn = x.clone();
        for c in 0..ncols {
            cpu::rmsnorm_inplace(&mut xn[c * k..(c + 1) * k], &nw, 1e-5);
        }
        let dots_n = |deq: &[f32], n: usize| -> Vec<f32> {
            let mut out = Vec::with_capacity(ncols * n);
            for c in 0..ncols {
                for r in 0..n {
                    let d: f64 = (0..k)
                        .map(|i| f64::from(deq[r * k + i]) * f64::from(xn[c * k + i]))
                        .sum();
                    out.push(d as f32);
                }
            }
            out
        };
        g.ops()
            .matmul3(parts, xd.ptr(), ncols, Some(norm(&nwd, 1e-5)))
            .expect("launch");
        for i in 0..3 {
            let e = rel_err(&g.down(&ys[i], ncols * ns[i]), &dots_n(&mats[i].1, ns[i]));
            eprintln!("mmv3 {} with norm, part {i}: rel err {e:.2e}", ty.name());
            assert!(e < 1e-5, "mmv3 {} with norm, part {i}: {e}", ty.name());
        }
        // Accumulating into y: y + W . x.
        let y0 = rng.vec(ncols * 37, 1.0);
        let yd = g.up(&y0);
        g.ops()
            .matmul(
                gguf_mat(ty, &ws[0], 37, k),
                xd.ptr(),
                ncols,
                OutView::add(yd.ptr(), 37),
            )
            .expect("launch");
        let want: Vec<f32> = dots(&mats[0].1, 37)
            .iter()
            .zip(&y0)
            .map(|(a, b)| b + a)
            .collect();
        let e = rel_err(&g.down(&yd, ncols * 37), &want);
        assert!(e < 1e-5, "matmul_add {}: {e}", ty.name());
        // The gated pair with the norm fused in (gate = up = part 1).
        let out = g.poisoned(ncols * 13);
        g.ops()
            .matmul_glu(
                Glu {
                    gate: gguf_mat(ty, &ws[1], 13, k),
                    up: gguf_mat(ty, &ws[1], 13, k),
                    act: GateAct::Silu,
                },
                xd.ptr(),
                ncols,
                out.ptr(),
                Some(norm(&nwd, 1e-5)),
            )
            .expect("launch");
        let gn = dots_n(&mats[1].1, 13);
        let want: Vec<f32> = gn.iter().map(|&v| cpu::silu(v) * v).collect();
        let e = rel_err(&g.down(&out, ncols * 13), &want);
        eprintln!("mmv_glu {} with norm: rel err {e:.2e}", ty.name());
        assert!(e < 1e-5, "glu {} with norm: {e}", ty.name());
        // gate = part 0's first 13 rows? No: gate and up need the same n; use parts 1 and 0.
        let n = 13;
        let gate = dots(&mats[1].1, n);
        let up: Vec<f32> = {
            let all = dots(&mats[0].1, 37);
            (0..ncols)
                .flat_map(|c| all[c * 37..c * 37 + n].to_vec())
                .collect()
        };
        for gelu in [false, true] {
            let out = g.poisoned(ncols * n);
            g.ops()
                .matmul_glu(
                    Glu {
                        gate: gguf_mat(ty, &ws[1], n, k),
                        up: gguf_mat(ty, &ws[0], n, k),
                        act: if gelu {
                            GateAct::GeluTanh
                        } else {
                            GateAct::Silu
                        },
                    },
                    xd.ptr(),
                    ncols,
                    out.ptr(),
                    None,
                )
                .expect("launch");
            let want: Vec<f32> = gate
                .iter()
                .zip(&up)
                .map(|(&gv, &uv)| if gelu { cpu::gelu_tanh(gv) } else { cpu::silu(gv) } * uv)
                .collect();
            let e = rel_err(&g.down(&out, ncols * n), &want);
            eprintln!("mmv_glu {} gelu={gelu}: rel err {e:.2e}", ty.name());
            assert!(e < 1e-5, "glu {}: {e}", ty.name());
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn add_rms_norm_matches_the_cpu() {
    let g = Gpu::new();
    let mut rng = Rng::fresh("add_rms_norm");
    let (rows, n) = (4, 576);
    let (x, y, w) = (
        rng.vec(rows * n, 2.0),
        rng.vec(rows * n, 2.0),
        rng.vec(n, 1.0),
    );
    let (xd, yd, wd) = (g.up(&x), g.up(&y), g.up(&w));
    let out = g.poisoned(rows * n);
    g.ops()
        .add_rms_norm(xd.ptr(), yd.ptr(), out.ptr(), rows, n, norm(&wd, 1e-5))
        .unwrap();
    let sum: Vec<f32> = x.iter().zip(&y).map(|(a, b)| a + b).collect();
    assert_eq!(g.down::<f32>(&xd, rows * n), sum);
    let mut want = vec![0f32; rows * n];
    for r in 0..rows {
        cpu::rmsnorm(
            &mut want[r * n..(r + 1) * n],
            &sum[r * n..(r + 1) * n],
            &w,
            1e-5,
        );
    }
    let e = rel_err(&g.down(&out, rows * n), &want);
    eprintln!("add_rms_norm: rel err {e:.2e}");
    assert!(e < 1e-5);
}

/// Norm + RoPE + KV store in one launch against the CPU ops and the cache layout.
#[test]
#[ignore = "needs a CUDA GPU"]
fn rope_qk_store_matches_the_cpu() {
    let g = Gpu::new();
    let mut rng = Rng::fresh("rope_qk_store");
    for (n_heads, n_kv_heads, hd, norms, style, cpu_style) in [
        (9, 3, 64, false, RopeStyle::Norm, CpuRope::Normal),
        (4, 1, 256, true, RopeStyle::Neox, CpuRope::Neox),
    ] {
        let ntok = 5;
        let kv_dim = n_kv_heads * hd;
        let (page_tokens, pages_per_slot, n_pages) = (16usize, 2usize, 4usize);
        let table: Vec<i32> = vec![3, 1, 0, 2]; // slot 0: pages 3, 1; slot 1: pages 0, 2
        let slot: Vec<i32> = vec![0, 0, 1, 0, 1];
        let pos: Vec<i32> = vec![0, 17, 5, 31, 16];
        let q = rng.vec(ntok * n_heads * hd, 2.0);
        let k = rng.vec(ntok * kv_dim, 2.0);
        let v = rng.vec(ntok * kv_dim, 2.0);
        let qn = rng.vec(hd, 1.0);
        let kn = rng.vec(hd, 1.0);
        let (qd, kd, vd) = (g.up(&q), g.up(&k), g.up(&v));
        let (qnd, knd) = (g.up(&qn), g.up(&kn));
        let (td, sd, pd) = (g.up(&table), g.up(&slot), g.up(&pos));
        let kc = g.poisoned(n_pages * page_tokens * kv_dim);
        let vc = g.poisoned(n_pages * page_tokens * kv_dim);
        let geo = KvGeometry {
            kv_type: orcd_model::KvType::F32,
            page_table: td.ptr(),
            pages_per_slot,
            page_tokens,
            n_heads,
            n_kv_heads,
            head_dim: hd,
        };
        let nw = if norms {
            QkNorm {
                q: qnd.ptr(),
                k: knd.ptr(),
                eps: 1e-6,
            }
        } else {
            QkNorm {
                q: 0,
                k: 0,
                eps: 1e-6,
            }
        };
        let base = 10_000.0f32;
        g.ops()
            .rope_qk_store(
                &geo,
                Qkv {
                    q: qd.ptr(),
                    k: kd.ptr(),
                    v: vd.ptr(),
                },
                KvLayer {
                    k: kc.ptr(),
                    v: vc.ptr(),
                },
                &tokens(ntok, &pd, &sd),
                nw,
                &Rope {
                    n_rot: hd,
                    base,
                    freq_scale: 1.0,
                    style,
                    scale: RopeScale::NONE,
                },
            )
            .unwrap();
        // CPU: norm each head, rotate.
        let (mut cos, mut sin) = (vec![0f32; hd / 2], vec![0f32; hd / 2]);
        let mut want_q = q.clone();
        let mut want_k = k.clone();
        for t in 0..ntok {
            cpu::rope_angles(&mut cos, &mut sin, pos[t] as usize, base, 1.0, hd);
            for head in want_q[t * n_heads * hd..(t + 1) * n_heads * hd].chunks_mut(hd) {
                if norms {
                    cpu::rmsnorm_inplace(head, &qn, 1e-6);
                }
                cpu::rope(head, &cos, &sin, cpu_style);
            }
            for head in want_k[t * kv_dim..(t + 1) * kv_dim].chunks_mut(hd) {
                if norms {
                    cpu::rmsnorm_inplace(head, &kn, 1e-6);
                }
                cpu::rope(head, &cos, &sin, cpu_style);
            }
        }
        let e = rel_err(&g.down(&qd, q.len()), &want_q);
        eprintln!("rope_qk_store {n_heads}/{n_kv_heads} x {hd} norms={norms}: q rel err {e:.2e}");
        assert!(e < 1e-5, "q: {e}");
        // The cache rows of each token hold its rotated key and its value.
        let kcache: Vec<f32> = g.down(&kc, n_pages * page_tokens * kv_dim);
        let vcache: Vec<f32> = g.down(&vc, n_pages * page_tokens * kv_dim);
        let (mut got_k, mut got_v) = (Vec::new(), Vec::new());
        for t in 0..ntok {
            let (s, p) = (slot[t] as usize, pos[t] as usize);
            let row = table[s * pages_per_slot + p / page_tokens] as usize * page_tokens
                + p % page_tokens;
            got_k.extend_from_slice(&kcache[row * kv_dim..(row + 1) * kv_dim]);
            got_v.extend_from_slice(&vcache[row * kv_dim..(row + 1) * kv_dim]);
        }
        let e = rel_err(&got_k, &want_k);
        eprintln!("rope_qk_store cached keys rel err {e:.2e}");
        assert!(e < 1e-5, "k: {e}");
        assert_eq!(got_v, v, "values are stored as given");
    }
}
