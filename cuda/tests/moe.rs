//! GPT-OSS's mixture of experts on the device (`moe.cu`) against its CPU twin on fresh random
//! inputs (the seed is printed): the routing (`cpu::ops::route`: the same experts, weights
//! within 1e-6), the chosen experts' MXFP4 projections with biases (`quant::dot_row`, the exact
//! f32 reference), the clamped SwiGLU (`cpu::ops::swiglu_oai`) and the weighted combine into
//! the residual, through both expert kernels (per pair and grouped by expert), which must agree
//! bit for bit, also over more pairs than the grouped kernel lists at once. Also the MXFP4
//! matrix-vector kernel (`mmv_mxfp4_f32`) alone. Outputs are poisoned (NaN) first.
//! GPU tests: `#[ignore]`d here, run on the GPU machine:
//! `cargo test --release -p orcd-cuda --test moe -- --ignored`.
//!
//! Tolerances: relative error 1e-5 (f32 sums in another order than the CPU's).

mod common;

use common::{Gpu, Rng, gguf_mat, rel_err};
use orcd_cpu::ops as cpu;
use orcd_cuda::operand::OutView;
use orcd_cuda::ops::{Experts, MoeKernel, Pairs};
use orcd_model::quant::{GgmlType, dot_row, quantize_row};

/// `rows` x `cols` random weights of `ty` (std ~0.02, as synth draws them), quantized.
fn weights(rng: &mut Rng, ty: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
    quantize_row(ty, &rng.vec(rows * cols, 0.035)).unwrap()
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn mxfp4_matmul_matches_the_cpu() {
    let g = Gpu::new();
    let mut rng = Rng::fresh("mmv_mxfp4");
    let (n, k, ncols) = (300, 2880, 5);
    let ty = GgmlType::Mxfp4;
    let w = weights(&mut rng, ty, n, k);
    let x = rng.vec(ncols * k, 1.0);
    let (wd, xd) = (g.up(&w), g.up(&x));
    let y = g.poisoned(ncols * n);
    g.ops()
        .matmul(
            gguf_mat(ty, &wd, n, k),
            xd.ptr(),
            ncols,
            OutView::write(y.ptr(), n),
        )
        .unwrap();
    let rb = ty.row_bytes(k).unwrap();
    let want: Vec<f32> = (0..ncols)
        .flat_map(|c| {
            let (w, x) = (&w, &x);
            (0..n).map(move |r| dot_row(ty, &w[r * rb..(r + 1) * rb], &x[c * k..(c + 1) * k]))
        })
        .collect();
    let e = rel_err(&g.down(&y, ncols * n), &want);
    eprintln!("mmv_mxfp4: rel err {e:.2e}");
    assert!(e < 1e-5, "{e}");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn mixture_of_experts_matches_the_cpu() {
    // a decode-like step (6 tokens) and a prefill-like one whose 4400 pairs are more than the
    // grouped kernel lists at once (MOE_GROUP_WINDOW, 4096)
    for (ntok, dim, ffn) in [(6, 256, 192), (1100, 64, 96)] {
        moe_case(ntok, dim, ffn, 8, 4);
    }
}

/// The whole mixture of experts of `ntok` tokens on the device, through each expert kernel,
/// against the CPU twin pair by pair; the two kernels bit-identical.
fn moe_case(ntok: usize, dim: usize, ffn: usize, n_expert: usize, k: usize) {
    let g = Gpu::new();
    let mut rng = Rng::fresh("moe");
    let ty = GgmlType::Mxfp4;
    let logits = rng.vec(ntok * n_expert, 2.0);
    let router_b = rng.vec(n_expert, 0.5);
    let x = rng.vec(ntok * dim, 1.0);
    let resid = rng.vec(ntok * dim, 1.0);
    let (wg, wu, wdn) = (
        weights(&mut rng, ty, n_expert * ffn, dim),
        weights(&mut rng, ty, n_expert * ffn, dim),
        weights(&mut rng, ty, n_expert * dim, ffn),
    );
    let (bg, bu, bd) = (
        rng.vec(n_expert * ffn, 0.1),
        rng.vec(n_expert * ffn, 0.1),
        rng.vec(n_expert * dim, 0.1),
    );

    // CPU twin, pair by pair
    let mut ids_want = Vec::new();
    let mut w_want = Vec::new();
    let mut out_want = resid.clone();
    let (rg, rd) = (ty.row_bytes(dim).unwrap(), ty.row_bytes(ffn).unwrap());
    for t in 0..ntok {
        let lt: Vec<f32> = (0..n_expert)
            .map(|e| logits[t * n_expert + e] + router_b[e])
            .collect();
        let xt = &x[t * dim..(t + 1) * dim];
        for (e, w) in cpu::route(&lt, k) {
            ids_want.push(e as i32);
            w_want.push(w);
            let h: Vec<f32> = (0..ffn)
                .map(|r| {
                    let row = e * ffn + r;
                    let gate = dot_row(ty, &wg[row * rg..(row + 1) * rg], xt) + bg[row];
                    let up = dot_row(ty, &wu[row * rg..(row + 1) * rg], xt) + bu[row];
                    cpu::swiglu_oai(gate, up)
                })
                .collect();
            for r in 0..dim {
                let row = e * dim + r;
                let y = dot_row(ty, &wdn[row * rd..(row + 1) * rd], &h) + bd[row];
                out_want[t * dim + r] += w * y;
            }
        }
    }

    // the device, through each kernel
    let (ld, rbd, xd) = (g.up(&logits), g.up(&router_b), g.up(&x));
    let (wgd, wud, wdd) = (g.up(&wg), g.up(&wu), g.up(&wdn));
    let (bgd, bud, bdd) = (g.up(&bg), g.up(&bu), g.up(&bd));
    let ops = g.ops();
    let experts = |ptr, rows, cols, bias| Experts {
        ptr,
        ty,
        n_expert,
        rows,
        cols,
        bias,
    };
    let gate_e = experts(wgd.ptr(), ffn, dim, bgd.ptr());
    let up_e = experts(wud.ptr(), ffn, dim, bud.ptr());
    let down_e = experts(wdd.ptr(), dim, ffn, bdd.ptr());
    let mut outs: Vec<Vec<f32>> = Vec::new();
    for kernel in [MoeKernel::PerPair, MoeKernel::Grouped] {
        let outd = g.up(&resid);
        let ids = g.poisoned_bytes(ntok * k * 4);
        let wts = g.poisoned(ntok * k);
        let (gate, up, y) = (
            g.poisoned(ntok * k * ffn),
            g.poisoned(ntok * k * ffn),
            g.poisoned(ntok * k * dim),
        );
        let pairs = Pairs {
            ids: ids.ptr(),
            ntok,
            k,
        };
        ops.moe_route(ld.ptr(), rbd.ptr(), n_expert, pairs, wts.ptr())
            .unwrap();
        ops.moe_matmul(gate_e, xd.ptr(), false, pairs, gate.ptr(), kernel)
            .unwrap();
        ops.moe_matmul(up_e, xd.ptr(), false, pairs, up.ptr(), kernel)
            .unwrap();
        ops.moe_swiglu_oai(gate.ptr(), up.ptr(), ntok * k * ffn)
            .unwrap();
        ops.moe_matmul(down_e, gate.ptr(), true, pairs, y.ptr(), kernel)
            .unwrap();
        ops.moe_combine(outd.ptr(), y.ptr(), wts.ptr(), ntok, dim, k)
            .unwrap();

        assert_eq!(g.down::<i32>(&ids, ntok * k), ids_want, "chosen experts");
        let wg_err = rel_err(&g.down(&wts, ntok * k), &w_want);
        assert!(wg_err < 1e-6, "weights: {wg_err}");
        let out = g.down(&outd, ntok * dim);
        let e = rel_err(&out, &out_want);
        eprintln!("moe {ntok} tokens, {kernel:?}: rel err {e:.2e} (weights {wg_err:.2e})");
        assert!(e < 1e-5, "{kernel:?}: {e}");
        outs.push(out);
    }
    let same = outs[0]
        .iter()
        .zip(&outs[1])
        .all(|(a, b)| a.to_bits() == b.to_bits());
    assert!(
        same,
        "per-pair and grouped experts differ in their bits ({ntok} tokens)"
    );
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn swiglu_oai_matches_the_cpu_across_the_clamps() {
    let g = Gpu::new();
    let mut rng = Rng::fresh("swiglu_oai");
    let n = 4001;
    // beyond +-7 on both inputs, so that every clamp is taken
    let (gate, up) = (rng.vec(n, 12.0), rng.vec(n, 12.0));
    let (gd, ud) = (g.up(&gate), g.up(&up));
    g.ops().moe_swiglu_oai(gd.ptr(), ud.ptr(), n).unwrap();
    let want: Vec<f32> = gate
        .iter()
        .zip(&up)
        .map(|(&a, &b)| cpu::swiglu_oai(a, b))
        .collect();
    let e = rel_err(&g.down(&gd, n), &want);
    eprintln!("swiglu_oai: rel err {e:.2e}");
    assert!(e < 1e-6, "{e}");
}
