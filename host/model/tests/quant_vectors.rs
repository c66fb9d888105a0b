//! The quantized tensor types against reference vectors written by gguf-py
//! (`tests/data/quant/gen_vectors.py`), plus round trips, the reference dot product against
//! dequantize-then-dot, and the fast integer dot product against the reference.

use std::path::PathBuf;

use orcd_model::quant::{
    GgmlType, QuantizedActs, dequantize_row, dot_row, dot_row_q8, dot_row_q8_portable,
    dot_row_q8_scalar, quantize_row,
};

/// The reference vectors of `ty`: (row bytes, dequantized values, quantizer input if any).
fn vectors(ty: GgmlType) -> (Vec<u8>, Vec<f32>, Option<Vec<f32>>) {
    read_vectors(ty.name())
}

/// The vectors `name.bin`, `name.deq.f32` and, if present, `name.src.f32`.
fn read_vectors(name: &str) -> (Vec<u8>, Vec<f32>, Option<Vec<f32>>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/quant");
    let read = |ext: &str| std::fs::read(dir.join(format!("{name}.{ext}")));
    let floats = |b: Vec<u8>| -> Vec<f32> {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    let bin = read("bin").expect("reference bytes");
    let deq = floats(read("deq.f32").expect("reference values"));
    let src = read("src.f32").ok().map(floats);
    (bin, deq, src)
}

/// The types of the real models' tensors whose first blocks `gen_vectors.py` saved.
const REAL_TYPES: [GgmlType; 5] = [
    GgmlType::Q8_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q4K,
    GgmlType::Q6K,
];

/// Deterministic pseudo-random values in [-1, 1) (xorshift), scaled per block of 32 by a
/// factor between 1e-2 and 1e1 so blocks of very different magnitude meet in one row.
fn random_row(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    };
    let mut scale = 1.0f32;
    (0..n)
        .map(|i| {
            if i % 32 == 0 {
                scale = 10f32.powf(next() * 1.5 - 0.5);
            }
            next() * scale
        })
        .collect()
}

#[test]
fn dequantize_is_bit_exact_with_gguf_py() {
    // Bit-exact for every type: f16 -> f32 is exact, and the products are the same f32
    // operations in the same order as ggml's dequantize_row_* and gguf-py.
    for ty in GgmlType::ALL {
        let (bin, want, _) = vectors(ty);
        let mut got = vec![0.0f32; want.len()];
        dequantize_row(ty, &bin, &mut got).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(
                g.to_bits(),
                w.to_bits(),
                "{} element {i}: {g} vs {w}",
                ty.name()
            );
        }
    }
}

#[test]
fn mxfp4_blocks_of_every_exponent_dequantize_bit_exactly() {
    // Random codes under exponents 0..=250, the subnormal half-scales of 0 and 1 included.
    let (bin, want, _) = read_vectors("mxfp4_raw");
    assert_eq!(bin.len(), GgmlType::Mxfp4.row_bytes(want.len()).unwrap());
    let mut got = vec![0.0f32; want.len()];
    dequantize_row(GgmlType::Mxfp4, &bin, &mut got).unwrap();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(
            g.to_bits(),
            w.to_bits(),
            "mxfp4_raw element {i}: {g} vs {w}"
        );
    }
}

#[test]
fn real_model_blocks_dequantize_bit_exactly() {
    // Blocks llama.cpp's own quantizers wrote (SmolLM2-135M Q4_1, gemma-3-270m Q4_K_M).
    for ty in REAL_TYPES {
        let (bin, want, _) = read_vectors(&format!("real_{}", ty.name()));
        assert_eq!(bin.len(), ty.row_bytes(want.len()).unwrap());
        let mut got = vec![0.0f32; want.len()];
        dequantize_row(ty, &bin, &mut got).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "real {} element {i}", ty.name());
        }
    }
}

#[test]
fn dequantize_reads_unaligned_bytes() {
    for ty in GgmlType::ALL {
        let (bin, want, _) = vectors(ty);
        let mut shifted = vec![0xAAu8];
        shifted.extend_from_slice(&bin);
        let mut got = vec![0.0f32; want.len()];
        dequantize_row(ty, &shifted[1..], &mut got).unwrap();
        assert!(
            got.iter()
                .zip(&want)
                .all(|(g, w)| g.to_bits() == w.to_bits())
        );
    }
}

#[test]
fn quantize_is_byte_exact_with_gguf_py_where_it_has_a_quantizer() {
    // gguf-py quantizes the float types, the legacy quants and MXFP4 with ggml's reference
    // rules.
    let mut checked = 0;
    for ty in GgmlType::ALL {
        let (bin, _, src) = vectors(ty);
        let Some(src) = src else { continue };
        let got = quantize_row(ty, &src).unwrap();
        assert_eq!(got, bin, "{}", ty.name());
        checked += 1;
    }
    assert_eq!(
        checked, 9,
        "f32, f16, bf16, the five legacy quants and mxfp4"
    );
}

#[test]
fn wrong_sizes_and_non_finite_values_are_rejected() {
    for ty in GgmlType::ALL {
        let n = ty.block_size() * 2;
        let bytes = ty.row_bytes(n).unwrap();
        let mut dst = vec![0.0f32; n];
        assert!(dequantize_row(ty, &vec![0; bytes - 1], &mut dst).is_err());
        assert!(dequantize_row(ty, &vec![0; bytes + 1], &mut dst).is_err());
        assert!(dequantize_row(ty, &vec![0; bytes], &mut dst).is_ok());
        if ty.block_size() > 1 {
            assert!(dequantize_row(ty, &[], &mut dst[..n - 1]).is_err());
            assert!(quantize_row(ty, &vec![0.5; n - 1]).is_err());
            let mut bad = vec![0.5f32; n];
            bad[3] = f32::NAN;
            assert!(quantize_row(ty, &bad).is_err());
            bad[3] = f32::INFINITY;
            assert!(quantize_row(ty, &bad).is_err());
            bad[3] = -1e5;
            assert!(quantize_row(ty, &bad).is_err());
            bad[3] = -65504.0;
            assert!(quantize_row(ty, &bad).is_ok());
        }
    }
    assert!(QuantizedActs::new(&[1.0; 48]).is_err());
}

/// The largest error quantize -> dequantize may make on element `i` of `x`, per type.
/// `amax32` is the largest magnitude in the element's block of 32, `amax256` in its block
/// of 256 (the K-quants' super-block, whose scales couple the sub-blocks).
fn round_trip_bound(ty: GgmlType, x: &[f32], i: usize) -> f32 {
    let amax = |len: usize| {
        let start = i / len * len;
        x[start..(start + len).min(x.len())]
            .iter()
            .fold(0.0f32, |m, v| m.max(v.abs()))
    };
    let (a32, a256) = (amax(32), amax(256));
    let v = x[i].abs();
    match ty {
        GgmlType::F32 => 0.0,
        // half an ulp: 2^-11 relative for normals, 2^-25 absolute for subnormals
        GgmlType::F16 => v * 2f32.powi(-11) + 2f32.powi(-25),
        GgmlType::BF16 => v * 2f32.powi(-8),
        // the extreme maps to -8 exactly; the other side clips at +7: one step d = amax/8
        GgmlType::Q4_0 => a32 / 8.0 * 1.01,
        // half a step (max - min)/15 <= 2 amax/15, plus f16 rounding of d and m
        GgmlType::Q4_1 => a32 / 15.0 * 1.05,
        GgmlType::Q5_0 => a32 / 16.0 * 1.01,
        GgmlType::Q5_1 => a32 / 31.0 * 1.05,
        // half a step amax/127 plus f16 rounding of d (2^-11 relative, times up to 127)
        GgmlType::Q8_0 => a32 / 254.0 + a32 / 2048.0 * 1.01,
        // half a step (range + dmin)/15, where the 6-bit scale rounding adds up to one
        // super-step d = max step / 63
        GgmlType::Q4K => a32 / 15.0 * 1.05 + a256 / 300.0,
        GgmlType::Q5K => a32 / 31.0 * 1.05 + a256 / 600.0,
        // half a step amax16/31 plus half a super-step max step / 127
        GgmlType::Q6K => a32 / 62.0 * 1.05 + a256 / 6000.0,
        // ggml's exponent floor(log2 amax) - 2 puts the grid's top at 1.5 * 2^E >= 0.75 amax:
        // the largest values clip by up to amax / 4, the others round to within half the top
        // spacing (2^E / 4 <= amax / 4)
        GgmlType::Mxfp4 => a32 / 4.0 * 1.001,
    }
}

#[test]
fn quantize_round_trips_within_the_stated_bound() {
    for ty in GgmlType::ALL {
        for seed in 1..5u64 {
            let x = random_row(1024, seed);
            let q = quantize_row(ty, &x).unwrap();
            assert_eq!(q.len(), ty.row_bytes(x.len()).unwrap());
            let mut y = vec![0.0f32; x.len()];
            dequantize_row(ty, &q, &mut y).unwrap();
            for i in 0..x.len() {
                let bound = round_trip_bound(ty, &x, i);
                assert!(
                    (x[i] - y[i]).abs() <= bound,
                    "{} seed {seed} element {i}: {} -> {} (bound {bound})",
                    ty.name(),
                    x[i],
                    y[i]
                );
            }
        }
        // a constant block and an all-zero row survive too
        let mut x = vec![0.0f32; 256];
        x[..32].fill(-0.75);
        let mut y = vec![1.0f32; 256];
        dequantize_row(ty, &quantize_row(ty, &x).unwrap(), &mut y).unwrap();
        for i in 0..x.len() {
            assert!(
                (x[i] - y[i]).abs() <= round_trip_bound(ty, &x, i),
                "{}",
                ty.name()
            );
        }
    }
}

/// Rows to dot with: quantized random rows, the reference vectors (for the quantized types,
/// whose vectors are all finite) and the real models' blocks.
fn test_rows(ty: GgmlType) -> Vec<Vec<u8>> {
    let mut rows = vec![
        quantize_row(ty, &random_row(1024, 11)).unwrap(),
        quantize_row(ty, &random_row(512, 12)).unwrap(),
    ];
    if ty.block_size() > 1 {
        rows.push(vectors(ty).0);
    }
    if REAL_TYPES.contains(&ty) {
        rows.push(read_vectors(&format!("real_{}", ty.name())).0);
    }
    rows
}

#[test]
fn dot_row_matches_dequantize_then_dot() {
    for ty in GgmlType::ALL {
        for (r, row) in test_rows(ty).iter().enumerate() {
            let n = row.len() / ty.block_bytes() * ty.block_size();
            let x = random_row(n, 100 + r as u64);
            let mut w = vec![0.0f32; n];
            dequantize_row(ty, row, &mut w).unwrap();
            let want: f64 = w.iter().zip(&x).map(|(&a, &b)| a as f64 * b as f64).sum();
            let abs: f64 = w
                .iter()
                .zip(&x)
                .map(|(&a, &b)| (a as f64 * b as f64).abs())
                .sum();
            let got = dot_row(ty, row, &x) as f64;
            // f32 summation: at most ~n * 2^-24 of the absolute sum; allow 4x that
            let bound = 4.0 * n as f64 * f64::from(f32::EPSILON) / 2.0 * abs;
            assert!(
                (got - want).abs() <= bound,
                "{} row {r}: {got} vs {want} (bound {bound})",
                ty.name()
            );
        }
    }
}

#[test]
fn dot_row_q8_matches_the_reference_within_the_activation_rounding() {
    // Quantizing x moves each x_i by at most half its block's step d_b / 2, so the fast dot
    // differs from the exact one by at most sum_b d_b / 2 * sum_{i in b} |w_i|, plus f32
    // rounding of both paths (bounded by 1e-4 of sum |w_i x_i| for these lengths).
    let mut worst_rel = 0.0f64;
    for ty in GgmlType::ALL {
        for (r, row) in test_rows(ty).iter().enumerate() {
            let n = row.len() / ty.block_bytes() * ty.block_size();
            let x = random_row(n, 200 + r as u64);
            let acts = QuantizedActs::new(&x).unwrap();
            let mut w = vec![0.0f32; n];
            dequantize_row(ty, row, &mut w).unwrap();
            let abs: f64 = w
                .iter()
                .zip(&x)
                .map(|(&a, &b)| (a as f64 * b as f64).abs())
                .sum();
            let act_err: f64 = if ty.block_size() == 1 {
                0.0
            } else {
                w.chunks(32)
                    .enumerate()
                    .map(|(b, w)| {
                        let sum_w: f64 = w.iter().map(|v| v.abs() as f64).sum();
                        acts.scale(b) as f64 / 2.0 * sum_w
                    })
                    .sum()
            };
            let want = dot_row(ty, row, &x) as f64;
            let got = dot_row_q8(ty, row, &acts) as f64;
            let bound = act_err * 1.001 + 1e-4 * abs;
            assert!(
                (got - want).abs() <= bound,
                "{} row {r}: {got} vs {want} (bound {bound})",
                ty.name()
            );
            worst_rel = worst_rel.max((got - want).abs() / abs);
        }
    }
    // with 8-bit activations the error is a small fraction of sum |w_i x_i|
    assert!(worst_rel < 1e-2, "worst relative error {worst_rel}");
}

#[test]
fn dot_row_q8_simd_kernels_equal_the_scalar_kernel() {
    // Integer block sums are exact whatever the kernel, and the f32 work is the same source
    // in the same order, so the dispatched (AVX2 where present), portable (SSE2) and
    // plain-Rust builds are bit-identical.
    for ty in GgmlType::ALL {
        for (r, row) in test_rows(ty).iter().enumerate() {
            let n = row.len() / ty.block_bytes() * ty.block_size();
            let acts = QuantizedActs::new(&random_row(n, 300 + r as u64)).unwrap();
            let scalar = dot_row_q8_scalar(ty, row, &acts);
            let portable = dot_row_q8_portable(ty, row, &acts);
            let fast = dot_row_q8(ty, row, &acts);
            assert_eq!(
                portable.to_bits(),
                scalar.to_bits(),
                "{} row {r}",
                ty.name()
            );
            assert_eq!(fast.to_bits(), scalar.to_bits(), "{} row {r}", ty.name());
        }
    }
}

/// One thread's fast dot over a `rows x cols` matrix of `ty`: (microseconds per
/// matrix-vector product, GB/s of weights read).
fn matvec_speed(ty: GgmlType, rows: usize, cols: usize, portable: bool) -> (f64, f64) {
    let w = quantize_row(ty, &random_row(rows * cols, 7)).unwrap();
    let acts = QuantizedActs::new(&random_row(cols, 8)).unwrap();
    let row_bytes = ty.row_bytes(cols).unwrap();
    let mut out = vec![0.0f32; rows];
    let iters = 300;
    let start = std::time::Instant::now();
    for _ in 0..iters {
        for (o, row) in out.iter_mut().zip(w.chunks_exact(row_bytes)) {
            *o = if portable {
                dot_row_q8_portable(ty, row, &acts)
            } else {
                dot_row_q8(ty, row, &acts)
            };
        }
        std::hint::black_box(&mut out);
    }
    let secs = start.elapsed().as_secs_f64() / iters as f64;
    (secs * 1e6, w.len() as f64 / secs / 1e9)
}

/// Throughput of the fast dot over SmolLM2-135M's FFN shapes in Q4_1, one thread, and of
/// every type over 576 rows x 1536.
/// Run: `cargo test --release -p orcd-model --test quant_vectors -- --ignored --nocapture`
#[test]
#[ignore = "benchmark: prints GB/s"]
fn bench_dot_row_q8() {
    for (rows, cols) in [(1536usize, 576usize), (576, 1536)] {
        for (label, portable) in [("dispatch", false), ("portable", true)] {
            let (us, gbs) = matvec_speed(GgmlType::Q4_1, rows, cols, portable);
            println!("q4_1 {rows} rows x {cols} ({label}): {us:.1} us/matvec, {gbs:.2} GB/s");
        }
    }
    for ty in GgmlType::ALL {
        let (us, gbs) = matvec_speed(ty, 576, 1536, false);
        println!(
            "{:>5} 576 rows x 1536: {us:.1} us/matvec, {gbs:.2} GB/s",
            ty.name()
        );
    }
}
