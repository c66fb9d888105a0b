//! The attention kernels (`kernels/attention.cu`): the flash-decoding and query-tile kernels
//! against the reference kernel, and the batch invariance they promise: a token's output has the
//! same bits whichever fast kernel computes it, split or not, alone, in a prefill tile or in a
//! batch of decodes. GPU tests: `#[ignore]`d, run on the GPU machine.
//!
//! Tolerance against the reference (another summation order, f32): relative error 1e-5 over a
//! launch's outputs. Between the fast kernels: bit-identical.
//! `sinks_join_the_softmax_in_every_kernel`: GPT-OSS's attention sinks in every kernel against
//! a host twin (`cpu::ops::softmax_with_sink`, as the CPU backend), with the same bit-identity
//! and batch invariance between the fast kernels.
//! `attention_timings` prints per-launch times (reference vs the picked kernel) for the decode
//! shapes of SmolLM2-135M, Qwen2.5-0.5B and Llama-3-8B at 128, 1024 and 4096 keys, a batch of
//! 64 8B decodes, and an 8B 512-token prefill; `ORCD_ATTN_ITERS` sets the launches per figure.

mod common;

use common::{Gpu, Rng, rel_err, tokens as toks};
use std::time::Instant;

use orcd_cpu::ops as cpu_ops;
use orcd_cuda::DeviceBuffer;
use orcd_cuda::operand::KvLayer;
use orcd_cuda::ops::{AttnKernel, AttnParams, KvGeometry};

/// Index of the first element whose bits differ, if any.
fn first_bit_difference(a: &[f32], b: &[f32]) -> Option<usize> {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .position(|(x, y)| x.to_bits() != y.to_bits())
}

/// A KV cache holding every position of some sequences (written through `kv_write`, pages
/// scattered at random), and a query per position.
struct Cache {
    n_heads: usize,
    hd: usize,
    table: DeviceBuffer,
    kc: DeviceBuffer,
    vc: DeviceBuffer,
    pages_per_slot: usize,
    n_kv_heads: usize,
    /// Every cached position as a token: (slot, pos), sequence by sequence.
    tokens: Vec<(i32, i32)>,
    /// (tokens, n_heads, head_dim) queries.
    q: Vec<f32>,
    /// (tokens, kv_dim) the keys and values written, for the host twin.
    k: Vec<f32>,
    v: Vec<f32>,
}

impl Cache {
    fn new(g: &Gpu, rng: &mut Rng, heads: (usize, usize, usize), lens: &[usize]) -> Cache {
        let (n_heads, n_kv_heads, hd) = heads;
        let kv_dim = n_kv_heads * hd;
        let page_tokens = 16;
        let pages_per_slot = lens.iter().max().unwrap().div_ceil(page_tokens) + 1;
        let n_pages = pages_per_slot * lens.len();
        // A random permutation of the pages over the slots' table rows.
        let mut ids: Vec<i32> = (0..n_pages as i32).collect();
        for i in (1..ids.len()).rev() {
            ids.swap(i, rng.below(i + 1));
        }
        let tokens: Vec<(i32, i32)> = lens
            .iter()
            .enumerate()
            .flat_map(|(s, &len)| (0..len as i32).map(move |p| (s as i32, p)))
            .collect();
        let ntok = tokens.len();
        let k = rng.vec(ntok * kv_dim, 1.0);
        let v = rng.vec(ntok * kv_dim, 1.0);
        let q = rng.vec(ntok * n_heads * hd, 1.5);
        let cache_len = n_pages * page_tokens * kv_dim;
        let kc = g.poisoned(cache_len);
        let vc = g.poisoned(cache_len);
        let table = g.up(&ids);
        let slot: Vec<i32> = tokens.iter().map(|t| t.0).collect();
        let pos: Vec<i32> = tokens.iter().map(|t| t.1).collect();
        let (sd, pd, kd, vd) = (g.up(&slot), g.up(&pos), g.up(&k), g.up(&v));
        let c = Cache {
            n_heads,
            hd,
            table,
            kc,
            vc,
            pages_per_slot,
            n_kv_heads,
            tokens,
            q,
            k,
            v,
        };
        g.ops()
            .kv_write(
                &c.geo(),
                kd.ptr(),
                vd.ptr(),
                KvLayer {
                    k: c.kc.ptr(),
                    v: c.vc.ptr(),
                },
                &toks(ntok, &pd, &sd),
            )
            .unwrap();
        c
    }

    fn geo(&self) -> KvGeometry {
        KvGeometry {
            kv_type: orcd_model::KvType::F32,
            page_table: self.table.ptr(),
            pages_per_slot: self.pages_per_slot,
            page_tokens: 16,
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            head_dim: self.hd,
        }
    }

    /// The attention of the tokens `idx` (indices into `tokens`, in this order, as one step)
    /// through `kernel`: (idx.len(), n_heads, head_dim).
    fn run(&self, g: &Gpu, kernel: AttnKernel, idx: &[usize], window: usize) -> Vec<f32> {
        self.run_with_sinks(g, kernel, idx, window, 0)
    }

    /// [`Cache::run`] with the heads' sink logits at `sinks` ((n_heads) f32; 0: none).
    fn run_with_sinks(
        &self,
        g: &Gpu,
        kernel: AttnKernel,
        idx: &[usize],
        window: usize,
        sinks: u64,
    ) -> Vec<f32> {
        let row = self.n_heads * self.hd;
        let q: Vec<f32> = idx
            .iter()
            .flat_map(|&i| self.q[i * row..(i + 1) * row].iter().copied())
            .collect();
        let slot: Vec<i32> = idx.iter().map(|&i| self.tokens[i].0).collect();
        let pos: Vec<i32> = idx.iter().map(|&i| self.tokens[i].1).collect();
        let (qd, sd, pd) = (g.up(&q), g.up(&slot), g.up(&pos));
        let out = g.poisoned(idx.len() * row);
        let scale = 1.0 / (self.hd as f32).sqrt();
        g.ops()
            .attention(
                &self.geo(),
                KvLayer {
                    k: self.kc.ptr(),
                    v: self.vc.ptr(),
                },
                qd.ptr(),
                out.ptr(),
                &toks(idx.len(), &pd, &sd),
                AttnParams {
                    kernel,
                    window,
                    scale,
                    sinks,
                },
            )
            .unwrap();
        g.down(&out, idx.len() * row)
    }

    /// The host twin of token `i`'s attention, as the CPU backend computes it: per head, the
    /// scaled scores of the visible keys, `softmax_with_sink` with the head's sink (or the
    /// plain softmax), the weighted sum of the values. (n_heads, head_dim).
    fn host(&self, i: usize, window: usize, sinks: Option<&[f32]>) -> Vec<f32> {
        let (hd, kv_dim) = (self.hd, self.n_kv_heads * self.hd);
        let group = self.n_heads / self.n_kv_heads;
        let (_, p) = self.tokens[i];
        let p = p as usize;
        // the slot's position 0 is `p` tokens before this one (sequences are listed in order)
        let first = i - p;
        let lo = if window > 0 {
            (p + 1).saturating_sub(window)
        } else {
            0
        };
        let scale = 1.0 / (hd as f32).sqrt();
        let mut out = vec![0.0f32; self.n_heads * hd];
        for h in 0..self.n_heads {
            let qh = &self.q[(i * self.n_heads + h) * hd..][..hd];
            let kvh = (h / group) * hd;
            let row = |buf: &[f32], j: usize| buf[(first + j) * kv_dim + kvh..][..hd].to_vec();
            let mut scores: Vec<f32> = (lo..=p)
                .map(|j| cpu_ops::dot_f32(qh, &row(&self.k, j)) * scale)
                .collect();
            match sinks {
                Some(sk) => cpu_ops::softmax_with_sink(&mut scores, sk[h]),
                None => cpu_ops::softmax(&mut scores),
            }
            let oh = &mut out[h * hd..(h + 1) * hd];
            for (j, w) in (lo..=p).zip(&scores) {
                cpu_ops::axpy(oh, *w, &row(&self.v, j));
            }
        }
        out
    }
}

/// (n_heads, n_kv_heads, head_dim, window): SmolLM2, Qwen2.5-0.5B, Llama-3-8B, Gemma-3-like
/// sliding windows, head_dim 96 (a partial float4 column group), 16 heads on one KV head (two
/// decode row groups), multi-head attention.
const SHAPES: [(usize, usize, usize, usize); 8] = [
    (9, 3, 64, 0),
    (14, 2, 64, 0),
    (32, 8, 128, 0),
    (8, 4, 256, 40),
    (4, 1, 256, 5),
    (6, 2, 96, 0),
    (16, 1, 64, 70),
    (8, 8, 128, 0),
];

/// Sequence lengths: one token, one page and a bit, two chunks and a bit, > 3 chunks.
const LENS: [usize; 4] = [1, 37, 130, 200];

#[test]
#[ignore = "needs a CUDA GPU"]
fn fast_kernels_match_the_reference_and_each_other_bit_for_bit() {
    let g = Gpu::new();
    let mut rng = Rng::fresh("attention");
    for (n_heads, n_kv_heads, hd, window) in SHAPES {
        let c = Cache::new(&g, &mut rng, (n_heads, n_kv_heads, hd), &LENS);
        let all: Vec<usize> = (0..c.tokens.len()).collect();
        let want = c.run(&g, AttnKernel::Reference, &all, window);
        let prefill = c.run(&g, AttnKernel::Prefill, &all, window);
        let e = rel_err(&prefill, &want);
        eprintln!(
            "{n_heads}/{n_kv_heads} heads, head_dim {hd}, window {window}: prefill vs reference {e:.2e}"
        );
        assert!(e < 1e-5, "prefill: {e}");
        for kernel in [
            AttnKernel::Decode(None),
            AttnKernel::Decode(Some(1)),
            AttnKernel::Decode(Some(2)),
            AttnKernel::Decode(Some(64)),
            AttnKernel::Auto,
        ] {
            let got = c.run(&g, kernel, &all, window);
            let e = rel_err(&got, &want);
            assert!(e < 1e-5, "{kernel:?}: {e}");
            assert_eq!(
                first_bit_difference(&got, &prefill),
                None,
                "{kernel:?} vs prefill, {n_heads}/{n_kv_heads}/{hd} window {window}"
            );
        }
    }
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn a_token_gets_the_same_bits_alone_in_a_tile_and_in_a_batch() {
    let g = Gpu::new();
    let mut rng = Rng::fresh("attention batch invariance");
    for (n_heads, n_kv_heads, hd, window) in SHAPES {
        let c = Cache::new(&g, &mut rng, (n_heads, n_kv_heads, hd), &LENS);
        let row = n_heads * hd;
        let all: Vec<usize> = (0..c.tokens.len()).collect();
        // Reference bits: every position as one prefill step (the query-tile kernel).
        let full = c.run(&g, AttnKernel::Auto, &all, window);
        let bits_of = |i: usize| &full[i * row..(i + 1) * row];
        // Each sequence's last token alone (split decoding), and all of them as a decode
        // batch, through both kernels and in reverse order.
        let mut last = Vec::new();
        let mut end = 0;
        for len in LENS {
            end += len;
            last.push(end - 1);
        }
        for &i in &last {
            let alone = c.run(&g, AttnKernel::Auto, &[i], window);
            assert_eq!(
                first_bit_difference(&alone, bits_of(i)),
                None,
                "token {i} alone"
            );
        }
        let mut reversed = last.clone();
        reversed.reverse();
        for (kernel, idx) in [
            (AttnKernel::Auto, &last),
            (AttnKernel::Prefill, &last),
            (AttnKernel::Decode(Some(3)), &reversed),
            (AttnKernel::Prefill, &reversed),
        ] {
            let got = c.run(&g, kernel, idx, window);
            for (n, &i) in idx.iter().enumerate() {
                assert_eq!(
                    first_bit_difference(&got[n * row..(n + 1) * row], bits_of(i)),
                    None,
                    "{kernel:?}: token {i} in a batch of {}",
                    idx.len()
                );
            }
        }
        // A prefill chunk that ends mid-tile and mid-chunk, with a decode of another sequence
        // in front: positions 20..117 of the 130-token sequence.
        let mixed: Vec<usize> = std::iter::once(last[1])
            .chain((38 + 20)..(38 + 117))
            .collect();
        for kernel in [AttnKernel::Prefill, AttnKernel::Decode(None)] {
            let got = c.run(&g, kernel, &mixed, window);
            for (n, &i) in mixed.iter().enumerate() {
                assert_eq!(
                    first_bit_difference(&got[n * row..(n + 1) * row], bits_of(i)),
                    None,
                    "{kernel:?}: token {i} in a mixed step"
                );
            }
        }
    }
}

/// GPT-OSS's attention sinks ((n_heads) logits, one joining each softmax of its head's rows):
/// the reference and the query-tile kernel against the host twin (`softmax_with_sink`), every
/// fast kernel (split decoding included) bit-identical to the query-tile kernel, a token's bits
/// the same alone and in a batch, and the sinks changing the result (a sink far above the
/// scores takes nearly all the weight, one far below nearly none). Shapes: GPT-OSS's 64 / 8
/// heads of 64 with its 128-token window and without (its full layers), SmolLM2's heads, one
/// KV head for 16 query heads with a window.
#[test]
#[ignore = "needs a CUDA GPU"]
fn sinks_join_the_softmax_in_every_kernel() {
    let g = Gpu::new();
    let mut rng = Rng::fresh("attention sinks");
    let lens = [1, 37, 130, 300];
    for (n_heads, n_kv_heads, hd, window) in [
        (64, 8, 64, 128),
        (64, 8, 64, 0),
        (9, 3, 64, 0),
        (16, 1, 64, 70),
    ] {
        let c = Cache::new(&g, &mut rng, (n_heads, n_kv_heads, hd), &lens);
        let row = n_heads * hd;
        let mut sinks = rng.vec(n_heads, 3.0);
        sinks[0] = 30.0; // above every score: the sink takes nearly all the weight
        sinks[n_heads - 1] = -30.0; // below every score: nearly none
        let sd = g.up(&sinks);
        let all: Vec<usize> = (0..c.tokens.len()).collect();
        let want: Vec<f32> = all
            .iter()
            .flat_map(|&i| c.host(i, window, Some(&sinks)))
            .collect();
        let run = |kernel, idx: &[usize]| c.run_with_sinks(&g, kernel, idx, window, sd.ptr());
        let reference = run(AttnKernel::Reference, &all);
        let prefill = run(AttnKernel::Prefill, &all);
        let (e_ref, e_pre) = (rel_err(&reference, &want), rel_err(&prefill, &want));
        eprintln!(
            "sinks, {n_heads}/{n_kv_heads} heads, head_dim {hd}, window {window}: reference vs host {e_ref:.2e}, prefill vs host {e_pre:.2e}"
        );
        assert!(e_ref < 1e-5, "reference: {e_ref}");
        assert!(e_pre < 1e-5, "prefill: {e_pre}");
        // the sinks matter: without them the rows are another result
        let plain = c.run(&g, AttnKernel::Prefill, &all, window);
        let without: Vec<f32> = all.iter().flat_map(|&i| c.host(i, window, None)).collect();
        assert!(rel_err(&plain, &without) < 1e-5, "no sinks vs host");
        assert!(rel_err(&plain, &want) > 1e-2, "the sinks changed nothing");
        for kernel in [
            AttnKernel::Decode(None),
            AttnKernel::Decode(Some(1)),
            AttnKernel::Decode(Some(2)),
            AttnKernel::Decode(Some(64)),
            AttnKernel::Auto,
        ] {
            assert_eq!(
                first_bit_difference(&run(kernel, &all), &prefill),
                None,
                "{kernel:?} vs prefill with sinks, {n_heads}/{n_kv_heads}/{hd} window {window}"
            );
        }
        // each sequence's last token alone, and the last tokens as one decode batch
        let mut last = Vec::new();
        let mut end = 0;
        for len in lens {
            end += len;
            last.push(end - 1);
        }
        for &i in &last {
            let alone = run(AttnKernel::Auto, &[i]);
            assert_eq!(
                first_bit_difference(&alone, &prefill[i * row..(i + 1) * row]),
                None,
                "token {i} alone, with sinks"
            );
        }
        for kernel in [AttnKernel::Decode(Some(3)), AttnKernel::Prefill] {
            let got = run(kernel, &last);
            for (n, &i) in last.iter().enumerate() {
                assert_eq!(
                    first_bit_difference(
                        &got[n * row..(n + 1) * row],
                        &prefill[i * row..(i + 1) * row]
                    ),
                    None,
                    "{kernel:?}: token {i} in a batch of {}, with sinks",
                    last.len()
                );
            }
        }
    }
}

/// Per-launch time of `kernel` in µs (mean of `iters` launches after a warm-up; launch
/// overhead included: short kernels read high, see ncu for device times).
fn time_us(g: &Gpu, iters: usize, mut launch: impl FnMut()) -> f64 {
    for _ in 0..3 {
        launch();
    }
    g.gpu.synchronize().unwrap();
    let t = Instant::now();
    for _ in 0..iters {
        launch();
    }
    g.gpu.synchronize().unwrap();
    t.elapsed().as_secs_f64() * 1e6 / iters as f64
}

/// One timing scenario: `seqs` sequences of `ctx` cached positions each; `ntok` new tokens
/// (decode: one per sequence at the last position; prefill: positions 0..ntok of sequence 0).
struct Scenario {
    name: &'static str,
    heads: (usize, usize, usize),
    context: usize,
    seqs: usize,
    ctx: usize,
    prefill: bool,
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn attention_timings() {
    let g = Gpu::new();
    let mut rng = Rng::fresh("attention timings");
    let iters: usize = std::env::var("ORCD_ATTN_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let smol = (9, 3, 64);
    let qwen = (14, 2, 64);
    let l8b = (32, 8, 128);
    let mut sc = Vec::new();
    for ctx in [128, 1024, 4096] {
        for (name, heads, context) in [
            ("smollm2", smol, 8192),
            ("qwen0.5b", qwen, 32768),
            ("llama8b", l8b, 8192),
        ] {
            sc.push(Scenario {
                name,
                heads,
                context,
                seqs: 1,
                ctx,
                prefill: false,
            });
        }
    }
    sc.push(Scenario {
        name: "llama8b x64",
        heads: l8b,
        context: 8192,
        seqs: 64,
        ctx: 1024,
        prefill: false,
    });
    sc.push(Scenario {
        name: "qwen0.5b x64",
        heads: qwen,
        context: 32768,
        seqs: 64,
        ctx: 1024,
        prefill: false,
    });
    sc.push(Scenario {
        name: "llama8b prefill",
        heads: l8b,
        context: 8192,
        seqs: 1,
        ctx: 512,
        prefill: true,
    });
    // `ORCD_ATTN_ONLY=<text>`: only the scenarios whose "name keys" contain it (for profilers).
    let only = std::env::var("ORCD_ATTN_ONLY").unwrap_or_default();
    println!("scenario | keys | ref µs | new µs | new kernel GB/s (K+V bytes / time) | rel err");
    for s in sc {
        if !format!("{} {}", s.name, s.ctx).contains(&only) {
            continue;
        }
        let (n_heads, n_kv_heads, hd) = s.heads;
        let kv_dim = n_kv_heads * hd;
        let pages_per_slot = s.context / 16;
        let seq_pages = s.ctx.div_ceil(16);
        // Slot i's pages are i * seq_pages.., the rest of its table row page 0.
        let mut table = vec![0i32; s.seqs * pages_per_slot];
        for i in 0..s.seqs {
            for p in 0..seq_pages {
                table[i * pages_per_slot + p] = (i * seq_pages + p) as i32;
            }
        }
        let n = s.seqs * seq_pages * 16 * kv_dim;
        let kc = g.up(&rng.vec(n, 1.0));
        let vc = g.up(&rng.vec(n, 1.0));
        let td = g.up(&table);
        let (slot, pos): (Vec<i32>, Vec<i32>) = if s.prefill {
            (0..s.ctx as i32).map(|p| (0, p)).unzip()
        } else {
            (0..s.seqs as i32).map(|i| (i, s.ctx as i32 - 1)).unzip()
        };
        let ntok = slot.len();
        let q = g.up(&rng.vec(ntok * n_heads * hd, 1.5));
        let (sd, pd) = (g.up(&slot), g.up(&pos));
        let geo = KvGeometry {
            kv_type: orcd_model::KvType::F32,
            page_table: td.ptr(),
            pages_per_slot,
            page_tokens: 16,
            n_heads,
            n_kv_heads,
            head_dim: hd,
        };
        let outs = [
            g.poisoned(ntok * n_heads * hd),
            g.poisoned(ntok * n_heads * hd),
        ];
        let scale = 1.0 / (hd as f32).sqrt();
        let run = |kernel: AttnKernel, out: &DeviceBuffer| {
            g.ops()
                .attention(
                    &geo,
                    KvLayer {
                        k: kc.ptr(),
                        v: vc.ptr(),
                    },
                    q.ptr(),
                    out.ptr(),
                    &toks(ntok, &pd, &sd),
                    AttnParams {
                        kernel,
                        window: 0,
                        scale,
                        sinks: 0,
                    },
                )
                .unwrap()
        };
        let t_ref = time_us(&g, iters, || run(AttnKernel::Reference, &outs[0]));
        let t_new = time_us(&g, iters, || run(AttnKernel::Auto, &outs[1]));
        let want: Vec<f32> = g.down(&outs[0], ntok * n_heads * hd);
        let got: Vec<f32> = g.down(&outs[1], ntok * n_heads * hd);
        let e = rel_err(&got, &want);
        // K and V bytes the step reads (prefill: each position once).
        let bytes = (s.seqs * s.ctx * kv_dim * 2 * 4) as f64;
        println!(
            "{} | {} x{} | {t_ref:.1} | {t_new:.1} | {:.0} | {e:.1e}",
            s.name,
            s.ctx,
            s.seqs,
            bytes / (t_new * 1e3),
        );
        if s.seqs == 1 && !s.prefill {
            for split in [1, 8] {
                let t = time_us(&g, iters, || run(AttnKernel::Decode(Some(split)), &outs[1]));
                println!("{} {} keys, {split} split(s) | {t:.1} µs", s.name, s.ctx);
            }
        }
        if s.prefill {
            let t_dec = time_us(&g, iters.min(20), || {
                run(AttnKernel::Decode(None), &outs[1])
            });
            println!("{} through the decode kernel | {t_dec:.1} µs", s.name);
        }
        assert!(e < 1e-5, "{}: {e}", s.name);
    }
}
