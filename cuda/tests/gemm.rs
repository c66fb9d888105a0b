//! The tensor-core GEMM over packed weights (`gemm_q8.cu`, `Ops::gemm_q8`) against the host
//! reference of the canonical dot product (`packed::dot_canonical`): BIT-exact (f32 bits), for
//! every packed type, every tile (the split-k tiles at their automatic split and at 2 and 3
//! CTAs a tile), uneven k segments, partial row and column tiles, accumulate
//! on and off, and an output stride wider than n (the gap must stay untouched). Plus a timing
//! print for the Llama-3-8B, Qwen2.5-0.5B and output-head shapes. GPU tests: `#[ignore]`d, run
//! on the GPU machine.

mod common;

use common::{Gpu, Rng, gguf_mat, pk_mat};
use std::time::Instant;

use orcd_cuda::DeviceBuffer;
use orcd_cuda::operand::{OutView, Q8Acts};
use orcd_cuda::ops::{GEMM_TILES as TILES, GemmTile};
use orcd_cuda::packed::{self, ActsQ8};
use orcd_model::quant::{GgmlType, quantize_row};

/// Q8 activations on the GPU: (q, d, sum).
struct DevActs {
    q: DeviceBuffer,
    d: DeviceBuffer,
    sum: DeviceBuffer,
}

fn up_acts(g: &Gpu, a: &ActsQ8) -> DevActs {
    DevActs {
        q: g.up(&a.q),
        d: g.up(&a.d),
        sum: g.up(&a.sum),
    }
}

impl DevActs {
    fn acts(&self) -> Q8Acts {
        Q8Acts {
            q: self.q.ptr(),
            d: self.d.ptr(),
            sum: self.sum.ptr(),
        }
    }
}

/// want[c * n + r] = dot_canonical(r, c), on every core.
fn reference(ty: GgmlType, packed: &[u8], n: usize, acts: &ActsQ8) -> Vec<f32> {
    let mut want = vec![0f32; acts.ncols * n];
    let threads = std::thread::available_parallelism().map_or(4, |p| p.get());
    let per = want.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        for (ci, chunk) in want.chunks_mut(per).enumerate() {
            s.spawn(move || {
                for (i, o) in chunk.iter_mut().enumerate() {
                    let idx = ci * per + i;
                    *o = packed::dot_canonical(ty, packed, n, idx % n, acts, idx / n).unwrap();
                }
            });
        }
    });
    want
}

const TYPES: [GgmlType; 3] = [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0];

#[test]
#[ignore = "needs a CUDA GPU"]
fn gemm_is_the_canonical_dot_bit_for_bit() {
    let g = Gpu::new();
    let mut rng = Rng::fresh("gemm");
    g.ops().gemm_q8_prepare().expect("shared memory limits");
    // 201 rows: a partial tile for every tile (128, 64 and 32 rows); with k = 288 (9 blocks) the
    // tensor has an odd number of f16 scales.
    let n = 201;
    let stride = n + 13;
    let mut checked = 0usize;
    // GEMM_QUICK=1: a subset for compute-sanitizer runs (odd scale count, partial tiles).
    let quick = std::env::var("GEMM_QUICK").is_ok_and(|v| v == "1");
    let (ks, colss): (&[usize], &[usize]) = if quick {
        (&[288, 896], &[7, 100])
    } else {
        (&[288, 576, 896, 4096, 14336], &[1, 7, 9, 64, 100, 512])
    };
    for ty in TYPES {
        for &k in ks {
            let gguf: Vec<u8> = (0..n)
                .flat_map(|_| quantize_row(ty, &rng.vec(k, 1.0)).expect("quantize"))
                .collect();
            let wp = packed::pack(ty, &gguf, n, k).unwrap();
            let w = g.up(&wp);
            for &ncols in colss {
                // Columns of varied magnitude, one all zero (d = 0).
                let mut x = Vec::with_capacity(ncols * k);
                for c in 0..ncols {
                    let scale = if c == 3 {
                        0.0
                    } else {
                        0.01 + 4.0 * rng.f().abs()
                    };
                    x.extend(rng.vec(k, scale));
                }
                let acts = packed::quantize_acts(&x, ncols, k).unwrap();
                let want = reference(ty, &wp, n, &acts);
                let da = up_acts(&g, &acts);
                // Split tiles: the automatic split and 2 and 3 CTAs a tile (uneven runs).
                let runs = TILES.iter().flat_map(|&t| {
                    let s: &[usize] = if t.is_split() { &[0, 2, 3] } else { &[0] };
                    s.iter().map(move |&s| (t, s))
                });
                for (tile, splits) in runs {
                    for accumulate in [false, true] {
                        let pre = rng.vec(ncols * stride, 2.0);
                        let y = g.up(&pre);
                        g.ops()
                            .gemm_q8_split(
                                tile,
                                if splits == 0 {
                                    tile.splits(n, k, ncols)
                                } else {
                                    splits
                                },
                                pk_mat(ty, &w, n, k),
                                da.acts(),
                                ncols,
                                OutView {
                                    ptr: y.ptr(),
                                    stride,
                                    accumulate,
                                },
                            )
                            .expect("launch");
                        let got: Vec<f32> = g.down(&y, ncols * stride);
                        let mut bad = Vec::new();
                        for c in 0..ncols {
                            for r in 0..stride {
                                let i = c * stride + r;
                                let exp = if r >= n {
                                    pre[i]
                                } else if accumulate {
                                    pre[i] + want[c * n + r]
                                } else {
                                    want[c * n + r]
                                };
                                if got[i].to_bits() != exp.to_bits() {
                                    bad.push((r, c, got[i], exp));
                                }
                            }
                        }
                        assert!(
                            bad.is_empty(),
                            "{} k {k} ncols {ncols} {tile:?} splits {splits} accumulate \
                             {accumulate}: {} of {} \
                             differ, first (row, col, got, want): {:?}",
                            ty.name(),
                            bad.len(),
                            ncols * stride,
                            &bad[..bad.len().min(8)]
                        );
                        checked += ncols * n;
                    }
                }
            }
        }
        eprintln!("{}: bit-exact", ty.name());
    }
    eprintln!("{checked} outputs bit-exact");
}

/// Seconds per call of `f` (after a warm-up; synchronized loop of calls).
fn time(g: &Gpu, mut f: impl FnMut()) -> f64 {
    f();
    f();
    g.gpu.synchronize().expect("sync");
    let mut iters = 0;
    let t0 = Instant::now();
    while iters < 5 || (t0.elapsed().as_secs_f64() < 0.03 && iters < 500) {
        f();
        iters += 1;
        if iters % 10 == 0 {
            g.gpu.synchronize().expect("sync");
        }
    }
    g.gpu.synchronize().expect("sync");
    t0.elapsed().as_secs_f64() / f64::from(iters)
}

/// Random packed weights with sane scales (f16 0.01 for d and m).
fn random_packed(rng: &mut Rng, ty: GgmlType, n: usize, k: usize) -> Vec<u8> {
    let mut w = rng.bytes(packed::packed_bytes(ty, n, k).unwrap());
    let so = packed::scales_offset(ty, n, k).unwrap();
    for p in w[so..].chunks_exact_mut(2) {
        p.copy_from_slice(&0x211Fu16.to_le_bytes());
    }
    w
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn gemm_timings() {
    let g = Gpu::new();
    let mut rng = Rng::fresh("gemm timings");
    eprintln!("card: {}", g.gpu.name());
    let shapes: [(&str, GgmlType, usize, usize); 14] = [
        ("8B qo", GgmlType::Q4_0, 4096, 4096),
        ("8B kv", GgmlType::Q4_0, 1024, 4096),
        ("8B gate/up", GgmlType::Q4_0, 14336, 4096),
        ("8B down", GgmlType::Q4_0, 4096, 14336),
        ("8B qo", GgmlType::Q8_0, 4096, 4096),
        ("8B gate/up", GgmlType::Q8_0, 14336, 4096),
        ("8B down", GgmlType::Q8_0, 4096, 14336),
        ("Qwen qo", GgmlType::Q4_0, 896, 896),
        ("Qwen kv", GgmlType::Q4_0, 128, 896),
        ("Qwen gate/up", GgmlType::Q4_0, 4864, 896),
        ("Qwen down", GgmlType::Q4_0, 896, 4864),
        ("Smol gate/up", GgmlType::Q4_1, 1536, 576),
        ("8B head", GgmlType::Q8_0, 128_256, 4096),
        ("Qwen head", GgmlType::Q8_0, 151_936, 896),
    ];
    let max_cols = 512;
    // GEMM_FILTER: time only the rows whose "shape type cols tile" contains it (profiling).
    let filter = std::env::var("GEMM_FILTER").ok();
    eprintln!(
        "{:<13} {:<5} {:>7} {:>6} {:>5} {:>13} {:>9} {:>8} {:>9}",
        "shape", "type", "n", "k", "cols", "tile", "us", "TOPS", "W GB/s"
    );
    for (name, ty, n, k) in shapes {
        if filter
            .as_ref()
            .is_some_and(|f| !f.starts_with(name) && !f.contains(&format!("{name} {}", ty.name())))
        {
            continue;
        }
        let wp = random_packed(&mut rng, ty, n, k);
        let w = g.up(&wp);
        let x = rng.vec(max_cols * k, 1.0);
        let acts = packed::quantize_acts(&x, max_cols, k).unwrap();
        let da = up_acts(&g, &acts);
        let y = g.up(&vec![0f32; max_cols * n]);
        for ncols in [16usize, 32, 64, 512] {
            // Split tiles: the automatic split (first) and 2, 4, 8, 16 CTAs a tile.
            let runs = TILES.iter().flat_map(|&t| {
                let auto = t.splits(n, k, ncols);
                let s: Vec<usize> = if t.is_split() {
                    let mut v = vec![auto];
                    v.extend([2, 4, 8, 16].into_iter().filter(|&s| s != auto));
                    v
                } else {
                    vec![1]
                };
                s.into_iter().map(move |s| (t, s, s == auto))
            });
            for (tile, splits, is_auto) in runs {
                let key = format!("{name} {} {ncols} {tile:?}", ty.name());
                if filter.as_ref().is_some_and(|f| !key.contains(f.as_str())) {
                    continue;
                }
                let nseg = (k / 32).div_ceil(16);
                if splits > nseg {
                    continue;
                }
                let mut ok = true;
                let t = time(&g, || {
                    ok &= g
                        .ops()
                        .gemm_q8_split(
                            tile,
                            splits,
                            pk_mat(ty, &w, n, k),
                            da.acts(),
                            ncols,
                            OutView::write(y.ptr(), n),
                        )
                        .is_ok()
                });
                if !ok {
                    continue; // workspace too small for this split
                }
                let auto = if GemmTile::for_shape(n, k, ncols) == tile && is_auto {
                    "*"
                } else {
                    ""
                };
                eprintln!(
                    "{name:<13} {:<5} {n:>7} {k:>6} {ncols:>5} {:>13} {:>9.1} {:>8.1} {:>9.0}",
                    ty.name(),
                    format!("{tile:?}/{splits}{auto}"),
                    t * 1e6,
                    2.0 * (n * k * ncols) as f64 / t / 1e12,
                    wp.len() as f64 / t / 1e9
                );
            }
        }
    }

    if filter.is_some() {
        return;
    }
    // Crossover against the 8-column matrix-vector kernel (GGUF blocks, f32 activations).
    eprintln!("crossover: gemm_q8 (auto tile) vs mmv (matmul), us per call");
    for (name, ty, n, k) in [
        ("8B qo", GgmlType::Q4_0, 4096usize, 4096usize),
        ("8B gate/up", GgmlType::Q4_0, 14336, 4096),
        ("Qwen gate/up", GgmlType::Q4_0, 4864, 896),
        ("8B qo", GgmlType::Q8_0, 4096, 4096),
    ] {
        let wp = random_packed(&mut rng, ty, n, k);
        let w = g.up(&wp);
        let wg = g.up(&rng.bytes(n * ty.row_bytes(k).expect("row bytes")));
        let cols = 64;
        let x = rng.vec(cols * k, 1.0);
        let acts = packed::quantize_acts(&x, cols, k).unwrap();
        let da = up_acts(&g, &acts);
        let xf = g.up(&x);
        let y = g.up(&vec![0f32; cols * n]);
        for ncols in [1usize, 4, 8, 16, 24, 32, 48, 64] {
            let tg = time(&g, || {
                g.ops()
                    .gemm_q8(
                        pk_mat(ty, &w, n, k),
                        da.acts(),
                        ncols,
                        OutView::write(y.ptr(), n),
                    )
                    .expect("launch")
            });
            let tm = time(&g, || {
                g.ops()
                    .matmul(
                        gguf_mat(ty, &wg, n, k),
                        xf.ptr(),
                        ncols,
                        OutView::write(y.ptr(), n),
                    )
                    .expect("launch")
            });
            eprintln!(
                "{name:<13} {:<5} cols {ncols:>3}: gemm {:>8.1}  mmv {:>8.1}",
                ty.name(),
                tg * 1e6,
                tm * 1e6
            );
        }
    }
}
