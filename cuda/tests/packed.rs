//! The packed-weight kernels against their host references (`orcd_cuda::packed`), BIT-EXACT:
//! the GPU repack equals `packed::pack`; the activation quantization equals
//! `packed::quantize_acts` (with the RMS norm: the rms_norm kernel's output quantized on the
//! host); every matrix kernel variant (plain, accumulate, 3-part, gated pair) equals
//! `packed::dot_canonical` for Q4_0, Q4_1 and Q8_0 at k = 256 .. 14336 (uneven last
//! segment), 1..=8 and 13 columns (tiles), every block size; the packed embedding equals the
//! GGUF one. Inputs are fresh random data each run (the seed is printed); outputs are poisoned
//! (NaN) before each launch. Every matrix test runs the reference kernels and the fast ones
//! (`PkKernel`; the one-column alternatives too for the plain kernel); the 3-part kernel also
//! with biases (against dot + bias in f32). A last `--ignored` test prints kernel timings,
//! reference vs fast packed kernels.
//! GPU tests: `#[ignore]`d, run on the GPU machine.

mod common;

use common::{Gpu, Rng, gguf_mat, norm, pk_mat};

use orcd_cuda::DeviceBuffer;
use orcd_cuda::graph::GraphCache;
use orcd_cuda::operand::{GateAct, Glu, OutView, Q8Acts};
use orcd_cuda::ops::{PackedPart, PkKernel};
use orcd_cuda::packed::{self, ActsQ8};
use orcd_model::quant::{GgmlType, quantize_row};

const TYPES: [GgmlType; 3] = [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0];
/// The matrix kernels every exactness test runs: the references and the fast ones.
const KERNELS: [PkKernel; 2] = [PkKernel::Reference, PkKernel::Fast];
/// The fast kernels' alternatives (one column tile) of mmvq_packed.cu, by type.
fn alts(ty: GgmlType) -> &'static [&'static str] {
    match ty {
        GgmlType::Q4_0 => &["u8m3", "u2m6", "u4m5"],
        GgmlType::Q8_0 => &["u4m4", "u2m5", "u1m6"],
        _ => &[],
    }
}

/// GGUF bytes repacked on the GPU.
fn repacked(g: &Gpu, ty: GgmlType, gguf: &[u8], rows: usize, k: usize) -> DeviceBuffer {
    let src = g.up(gguf);
    let dst = g.poisoned_bytes(packed::packed_bytes(ty, rows, k).unwrap());
    g.ops()
        .repack(ty, src.ptr(), dst.ptr(), rows, k)
        .expect("repack");
    dst
}

/// Q8 activations on the device: (q, d, sum) buffers and their addresses.
struct DevActs {
    _bufs: [DeviceBuffer; 3],
    acts: Q8Acts,
}

fn up_acts(g: &Gpu, a: &ActsQ8) -> DevActs {
    let (q, d, s) = (g.up(&a.q), g.up(&a.d), g.up(&a.sum));
    let acts = Q8Acts {
        q: q.ptr(),
        d: d.ptr(),
        sum: s.ptr(),
    };
    DevActs {
        _bufs: [q, d, s],
        acts,
    }
}

/// `rows` random rows of `k` weights quantized to `ty` (GGUF bytes).
fn gguf_matrix(rng: &mut Rng, ty: GgmlType, rows: usize, k: usize) -> Vec<u8> {
    (0..rows)
        .flat_map(|_| quantize_row(ty, &rng.vec(k, 1.0)).expect("quantize"))
        .collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn repack_matches_the_host_pack() {
    let g = Gpu::new();
    let mut rng = Rng::fresh("repack");
    for ty in TYPES {
        for (rows, k) in [(37, 576), (5, 14336), (3, 32 * 37)] {
            let gguf = gguf_matrix(&mut rng, ty, rows, k);
            let want = packed::pack(ty, &gguf, rows, k).unwrap();
            let dst = repacked(&g, ty, &gguf, rows, k);
            let got: Vec<u8> = g.down(&dst, want.len());
            // Padding between the regions is not part of the layout.
            let so = packed::scales_offset(ty, rows, k).unwrap();
            let qbytes = rows * (k / 32) * if ty == GgmlType::Q8_0 { 32 } else { 16 };
            assert_eq!(
                got[..qbytes],
                want[..qbytes],
                "{} quants {rows}x{k}",
                ty.name()
            );
            assert_eq!(got[so..], want[so..], "{} scales {rows}x{k}", ty.name());
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn activation_quantization_is_the_hosts_bit_for_bit() {
    let g = Gpu::new();
    let mut rng = Rng::fresh("quantize_q8");
    for (k, ncols) in [(576, 3), (4096, 2), (14336, 1), (896, 5)] {
        let mut x = rng.vec(ncols * k, 3.0);
        // A zero block, a block of one huge value, exact halves.
        x[32..64].fill(0.0);
        x[64] = 1e30;
        for (i, v) in x[96..128].iter_mut().enumerate() {
            *v = (i as f32 - 16.0) * 0.5;
        }
        let nb = k / 32;
        let xd = g.up(&x);
        let out = [
            g.poisoned_bytes(ncols * k),
            g.poisoned_bytes(ncols * nb * 4),
            g.poisoned_bytes(ncols * nb * 4),
        ];
        let acts = Q8Acts {
            q: out[0].ptr(),
            d: out[1].ptr(),
            sum: out[2].ptr(),
        };
        let check = |want: &ActsQ8, what: &str| {
            let q: Vec<i8> = g.down(&out[0], ncols * k);
            let d: Vec<f32> = g.down(&out[1], ncols * nb);
            let s: Vec<i32> = g.down(&out[2], ncols * nb);
            assert_eq!(q, want.q, "{what} q, k {k}");
            assert_eq!(bits(&d), bits(&want.d), "{what} d, k {k}");
            assert_eq!(s, want.sum, "{what} sum, k {k}");
        };
        g.ops().quantize_q8(xd.ptr(), k, ncols, None, acts).unwrap();
        check(&packed::quantize_acts(&x, ncols, k).unwrap(), "plain");
        // With the norm: the rms_norm kernel's output, quantized on the host.
        let x = rng.vec(ncols * k, 2.0);
        let xd = g.up(&x);
        let nw = g.up(&rng.vec(k, 1.5));
        let normed = g.poisoned_bytes(ncols * k * 4);
        g.ops()
            .rms_norm(xd.ptr(), nw.ptr(), normed.ptr(), ncols, k, 1e-5)
            .unwrap();
        let xn: Vec<f32> = g.down(&normed, ncols * k);
        g.ops()
            .quantize_q8(xd.ptr(), k, ncols, Some(norm(&nw, 1e-5)), acts)
            .unwrap();
        check(&packed::quantize_acts(&xn, ncols, k).unwrap(), "normed");
    }
}

const KS: [usize; 6] = [256, 576, 896, 1056, 4096, 14336];
/// The alternatives take one column.
const PK_COLS_1: usize = 1;
const NCOLS: [usize; 9] = [1, 2, 3, 4, 5, 6, 7, 8, 13];

/// The canonical dots of every row of `packed` (rows x k) and column of `acts`: (ncols, rows).
fn host_dots(ty: GgmlType, packed: &[u8], rows: usize, acts: &ActsQ8) -> Vec<f32> {
    (0..acts.ncols)
        .flat_map(|c| {
            (0..rows).map(move |r| packed::dot_canonical(ty, packed, rows, r, acts, c).unwrap())
        })
        .collect()
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn matmul_packed_is_the_canonical_dot_bit_for_bit() {
    let g = Gpu::new();
    let mut rng = Rng::fresh("matmul_packed");
    let n = 67;
    let maxc = *NCOLS.iter().max().unwrap();
    for ty in TYPES {
        for k in KS {
            let gguf = gguf_matrix(&mut rng, ty, n, k);
            let host = packed::pack(ty, &gguf, n, k).unwrap();
            let w = repacked(&g, ty, &gguf, n, k);
            let acts = packed::quantize_acts(&rng.vec(maxc * k, 1.0), maxc, k).unwrap();
            let want = host_dots(ty, &host, n, &acts);
            let da = up_acts(&g, &acts);
            let ys = n + 3;
            for ncols in NCOLS {
                let mut kernels = KERNELS.to_vec();
                if ncols <= PK_COLS_1 {
                    kernels.extend(alts(ty).iter().map(|a| PkKernel::Alt(a)));
                }
                for kernel in kernels {
                    for warps in [None, Some(1), Some(3), Some(8)] {
                        let y = g.poisoned_bytes(ncols * ys * 4);
                        g.ops()
                            .matmul_packed(
                                pk_mat(ty, &w, n, k),
                                da.acts,
                                ncols,
                                OutView::write(y.ptr(), ys),
                                kernel,
                                warps,
                            )
                            .unwrap();
                        let got: Vec<f32> = g.down(&y, ncols * ys);
                        for c in 0..ncols {
                            assert_eq!(
                                bits(&got[c * ys..c * ys + n]),
                                bits(&want[c * n..(c + 1) * n]),
                                "{} k {k} ncols {ncols} col {c} warps {warps:?} {kernel:?}",
                                ty.name()
                            );
                        }
                    }
                }
                // Accumulate: y0 + dot, one f32 addition (linear_packed: the default kernel).
                let y0 = rng.vec(ncols * ys, 4.0);
                for kernel in KERNELS {
                    let y = g.up(&y0);
                    g.ops()
                        .matmul_packed(
                            pk_mat(ty, &w, n, k),
                            da.acts,
                            ncols,
                            OutView::add(y.ptr(), ys),
                            kernel,
                            None,
                        )
                        .unwrap();
                    let got: Vec<f32> = g.down(&y, ncols * ys);
                    for c in 0..ncols {
                        for r in 0..ys {
                            let i = c * ys + r;
                            let exp = if r < n {
                                y0[i] + want[c * n + r]
                            } else {
                                y0[i]
                            };
                            assert_eq!(
                                got[i].to_bits(),
                                exp.to_bits(),
                                "{} accumulate k {k} ncols {ncols} ({c}, {r}) {kernel:?}",
                                ty.name()
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn fused_packed_matmuls_are_the_canonical_dot_bit_for_bit() {
    let g = Gpu::new();
    let mut rng = Rng::fresh("fused packed");
    let maxc = *NCOLS.iter().max().unwrap();
    for ty in TYPES {
        for k in KS {
            let acts = packed::quantize_acts(&rng.vec(maxc * k, 1.0), maxc, k).unwrap();
            let da = up_acts(&g, &acts);
            // Three parts (q, k, v).
            let ns = [41usize, 9, 9];
            let mats: Vec<(Vec<u8>, DeviceBuffer)> = ns
                .iter()
                .map(|&n| {
                    let gguf = gguf_matrix(&mut rng, ty, n, k);
                    let w = repacked(&g, ty, &gguf, n, k);
                    (packed::pack(ty, &gguf, n, k).unwrap(), w)
                })
                .collect();
            let wants: Vec<Vec<f32>> = (0..3)
                .map(|i| host_dots(ty, &mats[i].0, ns[i], &acts))
                .collect();
            // Biases on parts 0 and 2 (y = dot + b, one f32 addition, as add_bias_f32).
            let bias_host: Vec<Vec<f32>> = ns.iter().map(|&n| rng.vec(n, 2.0)).collect();
            let bias_dev: Vec<DeviceBuffer> = bias_host.iter().map(|b| g.up(b)).collect();
            for ncols in NCOLS {
                let mut kernels = KERNELS.to_vec();
                if ncols <= PK_COLS_1 {
                    kernels.extend(alts(ty).iter().map(|a| PkKernel::Alt(a)));
                }
                for kernel in kernels {
                    for with_bias in [false, true] {
                        let ys: Vec<DeviceBuffer> = ns
                            .iter()
                            .map(|&n| g.poisoned_bytes(ncols * n * 4))
                            .collect();
                        let biased = |i: usize| with_bias && i != 1;
                        let parts = [0, 1, 2].map(|i| PackedPart {
                            w: pk_mat(ty, &mats[i].1, ns[i], k),
                            y: ys[i].ptr(),
                            bias: if biased(i) { bias_dev[i].ptr() } else { 0 },
                        });
                        g.ops()
                            .matmul3_packed(parts, da.acts, ncols, kernel)
                            .unwrap();
                        for i in 0..3 {
                            let got: Vec<f32> = g.down(&ys[i], ncols * ns[i]);
                            let mut want = wants[i][..ncols * ns[i]].to_vec();
                            if biased(i) {
                                for (j, v) in want.iter_mut().enumerate() {
                                    *v += bias_host[i][j % ns[i]];
                                }
                            }
                            assert_eq!(
                                bits(&got),
                                bits(&want),
                                "{} 3-part k {k} ncols {ncols} part {i} bias {with_bias} {kernel:?}",
                                ty.name()
                            );
                        }
                    }
                }
            }
            // The gated pair: act(gate) * up against the plain kernel's (bit-exact) dots and
            // activation.cu's kernels.
            let n = 45;
            let wg = repacked(&g, ty, &gguf_matrix(&mut rng, ty, n, k), n, k);
            let wu = repacked(&g, ty, &gguf_matrix(&mut rng, ty, n, k), n, k);
            for ncols in NCOLS {
                let (gy, uy) = (
                    g.poisoned_bytes(ncols * n * 4),
                    g.poisoned_bytes(ncols * n * 4),
                );
                for (w, y) in [(&wg, &gy), (&wu, &uy)] {
                    g.ops()
                        .linear_packed(
                            pk_mat(ty, w, n, k),
                            da.acts,
                            ncols,
                            OutView::write(y.ptr(), n),
                        )
                        .unwrap();
                }
                for gelu in [false, true] {
                    let want = g.poisoned_bytes(ncols * n * 4);
                    if gelu {
                        g.ops()
                            .gelu_tanh_mul(gy.ptr(), uy.ptr(), want.ptr(), ncols * n)
                            .unwrap();
                    } else {
                        g.ops()
                            .silu_mul(gy.ptr(), uy.ptr(), want.ptr(), ncols * n)
                            .unwrap();
                    }
                    let mut kernels = KERNELS.to_vec();
                    if ncols <= PK_COLS_1 {
                        kernels.extend(alts(ty).iter().map(|a| PkKernel::Alt(a)));
                    }
                    for kernel in kernels {
                        let out = g.poisoned_bytes(ncols * n * 4);
                        g.ops()
                            .matmul_glu_packed(
                                Glu {
                                    gate: pk_mat(ty, &wg, n, k),
                                    up: pk_mat(ty, &wu, n, k),
                                    act: if gelu {
                                        GateAct::GeluTanh
                                    } else {
                                        GateAct::Silu
                                    },
                                },
                                da.acts,
                                ncols,
                                out.ptr(),
                                kernel,
                            )
                            .unwrap();
                        let (a, b): (Vec<f32>, Vec<f32>) =
                            (g.down(&out, ncols * n), g.down(&want, ncols * n));
                        assert_eq!(
                            bits(&a),
                            bits(&b),
                            "{} glu (gelu {gelu}) k {k} ncols {ncols} {kernel:?}",
                            ty.name()
                        );
                    }
                }
                // And the plain dots themselves are canonical (checked above for one shape;
                // here for these matrices too).
                let gd: Vec<f32> = g.down(&gy, ncols * n);
                assert!(gd.iter().all(|v| v.is_finite()));
            }
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn packed_embedding_is_the_gguf_embedding() {
    let g = Gpu::new();
    let mut rng = Rng::fresh("embed_packed");
    let (vocab, dim) = (50, 576);
    let tokens: Vec<u32> = vec![0, 49, 7, 7, 23];
    let toks = g.up(&tokens);
    for ty in TYPES {
        let gguf = gguf_matrix(&mut rng, ty, vocab, dim);
        let raw = g.up(&gguf);
        let w = repacked(&g, ty, &gguf, vocab, dim);
        for scale in [1.0f32, 0.37] {
            let (a, b) = (
                g.poisoned_bytes(tokens.len() * dim * 4),
                g.poisoned_bytes(tokens.len() * dim * 4),
            );
            g.ops()
                .embed(
                    gguf_mat(ty, &raw, vocab, dim),
                    toks.ptr(),
                    tokens.len(),
                    a.ptr(),
                    scale,
                )
                .unwrap();
            g.ops()
                .embed_packed(
                    pk_mat(ty, &w, vocab, dim),
                    toks.ptr(),
                    tokens.len(),
                    b.ptr(),
                    scale,
                )
                .unwrap();
            let (x, y): (Vec<f32>, Vec<f32>) = (
                g.down(&a, tokens.len() * dim),
                g.down(&b, tokens.len() * dim),
            );
            assert_eq!(bits(&x), bits(&y), "{} scale {scale}", ty.name());
        }
    }
}

/// GGUF bytes of a `rows` x `k` matrix of random quants with small valid scales (fast to make;
/// for timing only).
fn random_gguf(rng: &mut Rng, ty: GgmlType, rows: usize, k: usize) -> Vec<u8> {
    let (bb, sb) = match ty {
        GgmlType::Q4_0 => (18, 2),
        GgmlType::Q4_1 => (20, 4),
        _ => (34, 2),
    };
    let mut v = vec![0u8; rows * (k / 32) * bb];
    for chunk in v.chunks_mut(8) {
        let r = rng.next().to_le_bytes();
        chunk.copy_from_slice(&r[..chunk.len()]);
    }
    for block in v.chunks_mut(bb) {
        block[0..2].copy_from_slice(&0x2C00u16.to_le_bytes()); // d = 1/16
        if sb == 4 {
            block[2..4].copy_from_slice(&0xAC00u16.to_le_bytes()); // m = -1/16
        }
    }
    v
}

/// Seconds per call of `launch(i)`, replayed from a CUDA graph of `per_graph` calls
/// (i = 0..per_graph).
fn time_graph(g: &Gpu, per_graph: usize, launch: &dyn Fn(usize)) -> f64 {
    let mut cache = GraphCache::default();
    let shape = (1, 0, 0);
    cache
        .run(&g.gpu, shape, || {
            for i in 0..per_graph {
                launch(i);
            }
            Ok(())
        })
        .unwrap();
    g.gpu.synchronize().unwrap();
    let reps = 10;
    let t = std::time::Instant::now();
    for _ in 0..reps {
        cache.run(&g.gpu, shape, || Ok(())).unwrap();
    }
    g.gpu.synchronize().unwrap();
    t.elapsed().as_secs_f64() / (reps * per_graph) as f64
}

/// What a timed shape launches.
#[derive(Copy, Clone, PartialEq)]
enum Shape {
    Plain,
    /// q, k, v rows (n = q rows; the other two parts `kv` rows each), with biases or not.
    Three {
        kv: usize,
        bias: bool,
    },
    Glu,
}

/// Kernel timings (printed, not asserted): the reference packed kernels against the fast ones
/// (and, at one column, the fast kernels' alternatives), the decode shapes of the 8B,
/// Qwen2.5-0.5B and SmolLM2, 1 to 8 columns. Each launch reads another copy of the weights
/// (as many copies as make >= 200 MB, so the 50 MB L2 holds none of them between reads).
/// GB/s = packed weight bytes read / time. The reference 3-part launch with biases includes its
/// three add_bias launches.
#[test]
#[ignore = "needs a CUDA GPU"]
fn packed_kernel_timings() {
    let g = Gpu::new();
    let mut rng = Rng::fresh("timings");
    eprintln!("device: {}", g.gpu.name());
    let only = std::env::var("PK_TIMING_ONLY").unwrap_or_default();
    // (label, type, n, k, shape)
    let shapes: Vec<(&str, GgmlType, usize, usize, Shape)> = vec![
        ("8B o 4096x4096", GgmlType::Q4_0, 4096, 4096, Shape::Plain),
        (
            "8B qkv 6144x4096",
            GgmlType::Q4_0,
            4096,
            4096,
            Shape::Three {
                kv: 1024,
                bias: false,
            },
        ),
        (
            "8B gate+up 2x14336x4096",
            GgmlType::Q4_0,
            14336,
            4096,
            Shape::Glu,
        ),
        (
            "8B down 4096x14336",
            GgmlType::Q4_0,
            4096,
            14336,
            Shape::Plain,
        ),
        ("8B o 4096x4096", GgmlType::Q8_0, 4096, 4096, Shape::Plain),
        (
            "8B qkv 6144x4096",
            GgmlType::Q8_0,
            4096,
            4096,
            Shape::Three {
                kv: 1024,
                bias: false,
            },
        ),
        (
            "8B gate+up 2x14336x4096",
            GgmlType::Q8_0,
            14336,
            4096,
            Shape::Glu,
        ),
        (
            "8B down 4096x14336",
            GgmlType::Q8_0,
            4096,
            14336,
            Shape::Plain,
        ),
        (
            "8B head 128256x4096",
            GgmlType::Q8_0,
            128_256,
            4096,
            Shape::Plain,
        ),
        (
            "Qwen qkv+bias 1152x896",
            GgmlType::Q4_0,
            896,
            896,
            Shape::Three {
                kv: 128,
                bias: true,
            },
        ),
        ("Qwen o 896x896", GgmlType::Q4_0, 896, 896, Shape::Plain),
        (
            "Qwen gate+up 2x4864x896",
            GgmlType::Q4_0,
            4864,
            896,
            Shape::Glu,
        ),
        (
            "Qwen down 896x4864",
            GgmlType::Q4_0,
            896,
            4864,
            Shape::Plain,
        ),
        (
            "Qwen head 151936x896",
            GgmlType::Q8_0,
            151_936,
            896,
            Shape::Plain,
        ),
        (
            "Smol qkv 960x576",
            GgmlType::Q4_1,
            576,
            576,
            Shape::Three {
                kv: 192,
                bias: false,
            },
        ),
        (
            "Smol gate+up 2x1536x576",
            GgmlType::Q4_1,
            1536,
            576,
            Shape::Glu,
        ),
        (
            "Smol down 576x1536",
            GgmlType::Q4_1,
            576,
            1536,
            Shape::Plain,
        ),
        (
            "Smol head 49152x576",
            GgmlType::Q8_0,
            49152,
            576,
            Shape::Plain,
        ),
    ];
    for &(label, ty, n, k, shape) in &shapes {
        if !only.is_empty() && !label.contains(only.as_str()) {
            continue;
        }
        // The matrices of one launch: 1 (plain), 3 (q, k, v), 2 (gate, up).
        let dims: Vec<usize> = match shape {
            Shape::Plain => vec![n],
            Shape::Three { kv, .. } => vec![n, kv, kv],
            Shape::Glu => vec![n, n],
        };
        let bytes: usize = dims
            .iter()
            .map(|&r| packed::packed_bytes(ty, r, k).unwrap())
            .sum();
        let copies = (200_000_000usize.div_ceil(bytes)).clamp(1, 24);
        let mats: Vec<Vec<DeviceBuffer>> = dims
            .iter()
            .map(|&r| {
                let gguf = random_gguf(&mut rng, ty, r, k);
                (0..copies).map(|_| repacked(&g, ty, &gguf, r, k)).collect()
            })
            .collect();
        let biases: Vec<DeviceBuffer> = dims.iter().map(|&r| g.up(&rng.vec(r, 0.1))).collect();
        let ys: Vec<DeviceBuffer> = dims.iter().map(|&r| g.poisoned_bytes(8 * r * 4)).collect();
        for ncols in [1usize, 2, 4, 8] {
            let x = g.up(&rng.vec(ncols * k, 1.0));
            let nb = k / 32;
            let qb = [
                g.poisoned_bytes(ncols * k),
                g.poisoned_bytes(ncols * nb * 4),
                g.poisoned_bytes(ncols * nb * 4),
            ];
            let acts = Q8Acts {
                q: qb[0].ptr(),
                d: qb[1].ptr(),
                sum: qb[2].ptr(),
            };
            let ops = g.ops();
            ops.quantize_q8(x.ptr(), k, ncols, None, acts).unwrap();
            let per = (copies * 2).max(10);
            let run = |kernel: PkKernel| {
                time_graph(&g, per, &|i| {
                    let m = i % copies;
                    match shape {
                        Shape::Plain => ops
                            .matmul_packed(
                                pk_mat(ty, &mats[0][m], n, k),
                                acts,
                                ncols,
                                OutView::write(ys[0].ptr(), n),
                                kernel,
                                None,
                            )
                            .unwrap(),
                        Shape::Three { bias, .. } => {
                            let parts = [0, 1, 2].map(|j| PackedPart {
                                w: pk_mat(ty, &mats[j][m], dims[j], k),
                                y: ys[j].ptr(),
                                bias: if bias { biases[j].ptr() } else { 0 },
                            });
                            ops.matmul3_packed(parts, acts, ncols, kernel).unwrap()
                        }
                        Shape::Glu => ops
                            .matmul_glu_packed(
                                Glu {
                                    gate: pk_mat(ty, &mats[0][m], n, k),
                                    up: pk_mat(ty, &mats[1][m], n, k),
                                    act: GateAct::Silu,
                                },
                                acts,
                                ncols,
                                ys[0].ptr(),
                                kernel,
                            )
                            .unwrap(),
                    }
                })
            };
            let t_ref = run(PkKernel::Reference);
            let t_fast = run(PkKernel::Fast);
            let gbs = |t: f64| bytes as f64 / t / 1e9;
            let mut line = format!(
                "timing {:5} {label:26} ncols {ncols}: ref {:8.2} us {:5.0} GB/s | fast {:8.2} us {:5.0} GB/s",
                ty.name(),
                t_ref * 1e6,
                gbs(t_ref),
                t_fast * 1e6,
                gbs(t_fast)
            );
            if ncols == 1 {
                for a in alts(ty) {
                    let t = run(PkKernel::Alt(a));
                    line += &format!(" | {a} {:7.2} us {:5.0}", t * 1e6, gbs(t));
                }
            }
            if ncols == 1 {
                let tq = time_graph(&g, 50, &|_| {
                    ops.quantize_q8(x.ptr(), k, ncols, None, acts).unwrap()
                });
                line += &format!(" | quant k {k} {:5.2} us", tq * 1e6);
            }
            eprintln!("{line}");
        }
    }
}
