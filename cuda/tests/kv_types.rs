//! The KV cache's row types on the GPU (`orcd_model::KvType`: f16, q8_0, and f32 beside
//! them): the store kernels (`kv_write_*`, `rope_qk_store_*`) write the bytes the CPU twin
//! `KvType::store_row` writes, bit for bit; every attention kernel reading a cache of each type
//! computes what an f64 CPU twin computes over `KvType::load_row`'s values, and the fast kernels
//! keep giving each token the same bits (the canonical reduction). GPU tests: `#[ignore]`d, run
//! on the GPU machine: `cargo test --release -p orcd-cuda --test kv_types -- --ignored`.

mod common;

use common::{Gpu, Rng, attention_f64, rel_err, tokens};

use orcd_cuda::DeviceBuffer;
use orcd_cuda::operand::KvLayer;
use orcd_cuda::ops::{AttnKernel, AttnParams, KvGeometry, QkNorm, Qkv, Rope, RopeScale, RopeStyle};
use orcd_model::KvType;

const PAGE_TOKENS: usize = 16;

/// (n_heads, n_kv_heads, head_dim, window): SmolLM2, a Gemma-3-like sliding layer, head_dim
/// 96, Llama-3-8B, 16 heads on one KV head with a window.
const SHAPES: [(usize, usize, usize, usize); 5] = [
    (9, 3, 64, 0),
    (8, 4, 256, 40),
    (6, 2, 96, 0),
    (32, 8, 128, 0),
    (16, 1, 64, 70),
];

/// One cache layer of `pages` pages of `ty` rows, poisoned.
fn cache_layer(g: &Gpu, ty: KvType, kv_dim: usize, pages: usize) -> (DeviceBuffer, DeviceBuffer) {
    let bytes = pages * PAGE_TOKENS * ty.row_bytes(kv_dim);
    (g.poisoned_bytes(bytes), g.poisoned_bytes(bytes))
}

/// The bytes `ty` stores for `row`.
fn stored(ty: KvType, row: &[f32]) -> Vec<u8> {
    let mut b = vec![0u8; ty.row_bytes(row.len())];
    ty.store_row(row, &mut b);
    b
}

/// Check that cache row `r` (page `table[p / 16]`, row `p % 16`) of `cache` holds `want`.
fn assert_rows(
    ty: KvType,
    cache: &[u8],
    table: &[i32],
    pos: &[i32],
    rows: &[f32],
    kv_dim: usize,
    what: &str,
) {
    let rb = ty.row_bytes(kv_dim);
    for (t, &p) in pos.iter().enumerate() {
        let p = p as usize;
        let r = table[p / PAGE_TOKENS] as usize * PAGE_TOKENS + p % PAGE_TOKENS;
        let want = stored(ty, &rows[t * kv_dim..(t + 1) * kv_dim]);
        // Only the row's data bytes: q8_0's padding is never written.
        let data = match ty {
            KvType::Q8_0 => kv_dim + 2 * kv_dim / 32,
            _ => rb,
        };
        assert_eq!(
            &cache[r * rb..r * rb + data],
            &want[..data],
            "{what} {ty}: position {p}"
        );
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn store_kernels_write_the_cpu_twins_bytes() {
    let g = Gpu::new();
    let mut rng = Rng::fresh("kv types store");
    for ty in KvType::ALL {
        for (n_heads, n_kv_heads, hd, _) in SHAPES {
            let kv_dim = n_kv_heads * hd;
            let table: Vec<i32> = vec![2, 0, 3, 1];
            let ntok = 4 * PAGE_TOKENS;
            let pos: Vec<i32> = (0..ntok as i32).collect();
            let slot = vec![0i32; ntok];
            let mut k = rng.vec(ntok * kv_dim, 3.0);
            let v = rng.vec(ntok * kv_dim, 0.02);
            // A block of zeros (a zero q8_0 scale) and one large value per row.
            k[..32].fill(0.0);
            for t in 0..ntok {
                k[t * kv_dim + (t * 7) % kv_dim] = 250.0;
            }
            let (td, sd, pd) = (g.up(&table), g.up(&slot), g.up(&pos));
            let geo = KvGeometry {
                kv_type: ty,
                page_table: td.ptr(),
                pages_per_slot: table.len(),
                page_tokens: PAGE_TOKENS,
                n_heads,
                n_kv_heads,
                head_dim: hd,
            };
            let toks = tokens(ntok, &pd, &sd);
            let rb = ty.row_bytes(kv_dim);
            let n_bytes = 4 * PAGE_TOKENS * rb;
            // kv_write
            let (kc, vc) = cache_layer(&g, ty, kv_dim, 4);
            let (kd, vd) = (g.up(&k), g.up(&v));
            let cache = KvLayer {
                k: kc.ptr(),
                v: vc.ptr(),
            };
            g.ops()
                .kv_write(&geo, kd.ptr(), vd.ptr(), cache, &toks)
                .unwrap();
            let label = format!("kv_write {n_heads}/{n_kv_heads}/{hd}");
            assert_rows(ty, &g.down(&kc, n_bytes), &table, &pos, &k, kv_dim, &label);
            assert_rows(ty, &g.down(&vc, n_bytes), &table, &pos, &v, kv_dim, &label);
            // rope_qk_store: the rotated keys (read back from the kernel) and the values.
            let (kc, vc) = cache_layer(&g, ty, kv_dim, 4);
            let q = rng.vec(ntok * n_heads * hd, 1.0);
            let (qd, kd, vd) = (g.up(&q), g.up(&k), g.up(&v));
            let rope = Rope {
                n_rot: hd,
                base: 10_000.0,
                freq_scale: 1.0,
                style: RopeStyle::Neox,
                scale: RopeScale {
                    factors: 0,
                    ext_factor: 0.0,
                    attn_factor: 1.0,
                    corr: [0.0, 0.0],
                },
            };
            let norms = QkNorm {
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
                .rope_qk_store(&geo, qkv, cache, &toks, norms, &rope)
                .unwrap();
            let rotated: Vec<f32> = g.down(&kd, k.len());
            let label = format!("rope_qk_store {n_heads}/{n_kv_heads}/{hd}");
            let kb = g.down(&kc, n_bytes);
            assert_rows(ty, &kb, &table, &pos, &rotated, kv_dim, &label);
            assert_rows(ty, &g.down(&vc, n_bytes), &table, &pos, &v, kv_dim, &label);
        }
    }
}

/// Keys and values (rows of `kv_dim`) as a cache of `ty` reads them back: each row through
/// the type's round trip, so the CPU twin attends over exactly the cached values.
fn through_cache(ty: KvType, k: &[f32], v: &[f32], kv_dim: usize) -> (Vec<f32>, Vec<f32>) {
    let read = |x: &[f32]| {
        let mut out = x.to_vec();
        for r in out.chunks_mut(kv_dim) {
            ty.round_trip(r, &mut Vec::new());
        }
        out
    };
    (read(k), read(v))
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn every_attention_kernel_reads_each_kv_type_like_the_cpu_twin() {
    let g = Gpu::new();
    let mut rng = Rng::fresh("kv types attention");
    let lens = [130usize, 37];
    for ty in KvType::ALL {
        for (n_heads, n_kv_heads, hd, window) in SHAPES {
            let kv_dim = n_kv_heads * hd;
            let pages_per_slot = 130usize.div_ceil(PAGE_TOKENS);
            let n_pages = 2 * pages_per_slot;
            // Scattered pages.
            let mut ids: Vec<i32> = (0..n_pages as i32).collect();
            for i in (1..ids.len()).rev() {
                ids.swap(i, rng.below(i + 1));
            }
            let (slot, pos): (Vec<i32>, Vec<i32>) = lens
                .iter()
                .enumerate()
                .flat_map(|(s, &len)| (0..len as i32).map(move |p| (s as i32, p)))
                .unzip();
            let ntok = slot.len();
            let k = rng.vec(ntok * kv_dim, 1.0);
            let v = rng.vec(ntok * kv_dim, 1.0);
            let q = rng.vec(ntok * n_heads * hd, 1.5);
            let (td, sd, pd) = (g.up(&ids), g.up(&slot), g.up(&pos));
            let (kd, vd, qd) = (g.up(&k), g.up(&v), g.up(&q));
            let geo = KvGeometry {
                kv_type: ty,
                page_table: td.ptr(),
                pages_per_slot,
                page_tokens: PAGE_TOKENS,
                n_heads,
                n_kv_heads,
                head_dim: hd,
            };
            let (kc, vc) = cache_layer(&g, ty, kv_dim, n_pages);
            let cache = KvLayer {
                k: kc.ptr(),
                v: vc.ptr(),
            };
            let toks = tokens(ntok, &pd, &sd);
            g.ops()
                .kv_write(&geo, kd.ptr(), vd.ptr(), cache, &toks)
                .unwrap();
            let scale = 1.0 / (hd as f32).sqrt();
            // The CPU twin: f64 attention over the values the cache reads back.
            let (k_read, v_read) = through_cache(ty, &k, &v, kv_dim);
            let heads = (n_heads, n_kv_heads, hd);
            let want = attention_f64(&q, &k_read, &v_read, &lens, heads, window, scale);
            let run = |kernel: AttnKernel| {
                let out = g.poisoned(q.len());
                let params = AttnParams {
                    kernel,
                    window,
                    scale,
                    sinks: 0,
                };
                g.ops()
                    .attention(&geo, cache, qd.ptr(), out.ptr(), &toks, params)
                    .unwrap();
                g.down::<f32>(&out, q.len())
            };
            let label = format!("{ty} {n_heads}/{n_kv_heads}/{hd} window {window}");
            let reference = run(AttnKernel::Reference);
            let e = rel_err(&reference, &want);
            eprintln!("{label}: reference vs CPU twin {e:.2e}");
            assert!(e < 1e-5, "{label}: reference {e}");
            let prefill = run(AttnKernel::Prefill);
            for kernel in [
                AttnKernel::Prefill,
                AttnKernel::Decode(None),
                AttnKernel::Decode(Some(1)),
                AttnKernel::Decode(Some(64)),
                AttnKernel::Auto,
            ] {
                let got = run(kernel);
                let e = rel_err(&got, &want);
                assert!(e < 1e-5, "{label}: {kernel:?} {e}");
                let same = got
                    .iter()
                    .zip(&prefill)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(
                    same,
                    "{label}: {kernel:?} differs from the prefill kernel's bits"
                );
            }
        }
    }
}
