//! The kernels the issue-14 architectures add, each against its CPU twin on fresh random inputs
//! (the seed is printed): LayerNorm with and without bias (GPT-2), plain GELU (GPT-2's FFN),
//! RoPE with frequency factors (Llama 3.1+ `rope_freqs`, Phi-3's long/short factors), YaRN and an
//! attention factor, through both RoPE kernels (twins: `cpu::ops::layernorm`, `cpu::ops::gelu_tanh`,
//! `model::rope::angles`). Outputs are poisoned (NaN) first.
//! GPU tests: `#[ignore]`d here, run on the GPU machine.
//!
//! Tolerances: relative error 1e-5 (f32 reductions in another order than the CPU's f64 sums;
//! cos/sin in double on the GPU, in f32 on the CPU).

mod common;

use common::{Gpu, Rng, norm, rel_err, tokens};
use orcd_cpu::ops as cpu;
use orcd_cuda::operand::KvLayer;
use orcd_cuda::ops::{KvGeometry, QkNorm, Qkv, Rope, RopeScale, RopeStyle};
use orcd_model::RopeStyle as CpuRope;
use orcd_model::{RopeScaling, rope};

/// The CPU backend's LayerNorm of every row of `x`.
fn layer_norm_ref(x: &[f32], w: &[f32], b: Option<&[f32]>, eps: f32) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    cpu::layernorm(&mut out, x, w, b, eps);
    out
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn layer_norm_matches_the_cpu() {
    let g = Gpu::new();
    let mut rng = Rng::fresh("layer_norm");
    let (rows, n) = (5, 768);
    // An offset so that the mean matters.
    let x: Vec<f32> = rng.vec(rows * n, 3.0).iter().map(|v| v + 0.7).collect();
    let w = rng.vec(n, 1.0);
    let b = rng.vec(n, 0.5);
    let (xd, wd, bd) = (g.up(&x), g.up(&w), g.up(&b));
    for with_bias in [false, true] {
        let out = g.poisoned(rows * n);
        let bias = if with_bias { bd.ptr() } else { 0 };
        g.ops()
            .layer_norm(xd.ptr(), norm(&wd, 1e-5), bias, out.ptr(), rows, n)
            .unwrap();
        let want: Vec<f32> = x
            .chunks(n)
            .flat_map(|r| layer_norm_ref(r, &w, with_bias.then_some(&b[..]), 1e-5))
            .collect();
        let e = rel_err(&g.down(&out, rows * n), &want);
        eprintln!("layer_norm bias {with_bias}: rel err {e:.2e}");
        assert!(e < 1e-5, "bias {with_bias}: {e}");
    }
    // In place.
    g.ops()
        .layer_norm(xd.ptr(), norm(&wd, 1e-5), bd.ptr(), xd.ptr(), rows, n)
        .unwrap();
    let want: Vec<f32> = x
        .chunks(n)
        .flat_map(|r| layer_norm_ref(r, &w, Some(&b), 1e-5))
        .collect();
    let e = rel_err(&g.down(&xd, rows * n), &want);
    assert!(e < 1e-5, "in place: {e}");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn plain_gelu_matches_the_cpu() {
    let g = Gpu::new();
    let mut rng = Rng::fresh("gelu");
    let n = 3001;
    let x = rng.vec(n, 6.0);
    let xd = g.up(&x);
    g.ops().gelu_tanh(xd.ptr(), n).unwrap();
    let want: Vec<f32> = x.iter().map(|&v| cpu::gelu_tanh(v)).collect();
    let e = rel_err(&g.down(&xd, n), &want);
    eprintln!("gelu: rel err {e:.2e}");
    assert!(e < 1e-5, "{e}");
}

/// The CPU backend's angles of one position (`orcd_model::rope::angles`).
fn angles_ref(
    pos: i32,
    base: f32,
    n_rot: usize,
    ff: Option<&[f32]>,
    sc: &RopeScaling,
) -> (Vec<f32>, Vec<f32>) {
    let (mut c, mut s) = (vec![0f32; n_rot / 2], vec![0f32; n_rot / 2]);
    rope::angles(&mut c, &mut s, pos as usize, base, sc, ff, n_rot);
    (c, s)
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn rope_scaling_matches_ggml_in_both_kernels() {
    let g = Gpu::new();
    let mut rng = Rng::fresh("rope scaling");
    let (ntok, n_heads, n_kv_heads, hd) = (5, 4, 2, 64);
    let n_rot = hd;
    let factors: Vec<f32> = (0..n_rot / 2).map(|_| 1.0 + 7.0 * rng.f().abs()).collect();
    let fd = g.up(&factors);
    let base = 500_000.0f32;
    // (frequency factors, freq_scale, ext_factor, attn_factor)
    let cases: [(bool, f32, f32, f32); 4] = [
        (true, 1.0, 0.0, 1.0),   // llama3 rope_freqs
        (true, 1.0, 0.0, 1.19),  // phi3 long factors with their attention factor
        (false, 0.25, 1.0, 1.0), // YaRN
        (false, 0.5, 0.0, 1.3),  // linear with an attention factor
    ];
    for (style, cpu_style) in [
        (RopeStyle::Norm, CpuRope::Normal),
        (RopeStyle::Neox, CpuRope::Neox),
    ] {
        for &(with_ff, fs, ext, attn) in &cases {
            let sc = RopeScaling {
                freq_scale: fs,
                ext_factor: ext,
                attn_factor: attn,
                ..RopeScaling::none(4096)
            };
            let corr = if ext != 0.0 {
                sc.corr_dims(n_rot, base)
            } else {
                [0.0, 0.0]
            };
            let rope = Rope {
                n_rot,
                base,
                freq_scale: fs,
                style,
                scale: RopeScale {
                    factors: if with_ff { fd.ptr() } else { 0 },
                    ext_factor: ext,
                    attn_factor: attn,
                    corr,
                },
            };
            let pos: Vec<i32> = (0..ntok).map(|_| rng.below(30_000) as i32).collect();
            let slot = vec![0i32; ntok];
            let q = rng.vec(ntok * n_heads * hd, 2.0);
            let k = rng.vec(ntok * n_kv_heads * hd, 2.0);
            let v = rng.vec(ntok * n_kv_heads * hd, 2.0);
            let rotate = |x: &[f32], heads: usize| {
                let mut want = x.to_vec();
                for t in 0..ntok {
                    let ff = with_ff.then_some(&factors[..]);
                    let (c, s) = angles_ref(pos[t], base, n_rot, ff, &sc);
                    for h in want[t * heads * hd..(t + 1) * heads * hd].chunks_mut(hd) {
                        cpu::rope(h, &c, &s, cpu_style);
                    }
                }
                want
            };
            let (want_q, want_k) = (rotate(&q, n_heads), rotate(&k, n_kv_heads));
            let (pd, sd) = (g.up(&pos), g.up(&slot));
            let toks = tokens(ntok, &pd, &sd);
            let label = format!("{style:?} ff {with_ff} fs {fs} ext {ext} attn {attn}");
            // rope_f32
            let qd = g.up(&q);
            g.ops().rope(qd.ptr(), &toks, n_heads, hd, &rope).unwrap();
            let e = rel_err(&g.down(&qd, q.len()), &want_q);
            eprintln!("rope {label}: rel err {e:.2e}");
            assert!(e < 1e-5, "rope {label}: {e}");
            // rope_qk_store_f32: the same rotation, and the keys land in the cache.
            let (qd, kd, vd) = (g.up(&q), g.up(&k), g.up(&v));
            let table = g.up(&vec![0i32; 2048]);
            let page_tokens = 16;
            let geo = KvGeometry {
                kv_type: orcd_model::KvType::F32,
                page_table: table.ptr(),
                pages_per_slot: 2048,
                page_tokens,
                n_heads,
                n_kv_heads,
                head_dim: hd,
            };
            let kv_dim = n_kv_heads * hd;
            // One page holds every position mod 16 (all of slot 0's pages are page 0): the
            // test reads back each token's row, positions distinct mod 16 or not.
            let kc = g.poisoned(page_tokens * kv_dim);
            let vc = g.poisoned(page_tokens * kv_dim);
            let none = QkNorm {
                q: 0,
                k: 0,
                eps: 1e-6,
            };
            let qkv = Qkv {
                q: qd.ptr(),
                k: kd.ptr(),
                v: vd.ptr(),
            };
            let cache = KvLayer {
                k: kc.ptr(),
                v: vc.ptr(),
            };
            g.ops()
                .rope_qk_store(&geo, qkv, cache, &toks, none, &rope)
                .unwrap();
            let e = rel_err(&g.down(&qd, q.len()), &want_q);
            assert!(e < 1e-5, "rope_qk_store q {label}: {e}");
            let e = rel_err(&g.down(&kd, k.len()), &want_k);
            assert!(e < 1e-5, "rope_qk_store k {label}: {e}");
        }
    }
}
