//! Test support shared by the GPU test files: a seedable random source, a GPU with the kernels
//! loaded and a scratch allocator, and the relative error the tolerances are stated in.
#![allow(dead_code)] // each test file uses a part

use std::sync::Arc;

use orcd_cuda::compile::KernelCompiler;
use orcd_cuda::kernels::Kernels;
use orcd_cuda::operand::{GgufMatrix, Norm, PackedMatrix, Tokens};
use orcd_cuda::ops::Ops;
use orcd_cuda::{DeviceBuffer, GpuContext, Purpose, VramLedger};
use orcd_model::quant::GgmlType;

/// xorshift64*: small, seedable, good enough for test data.
pub struct Rng(pub u64);

impl Rng {
    pub fn fresh(what: &str) -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9)
            | 1;
        eprintln!("{what}: seed {seed}");
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in [-1, 1).
    pub fn f(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.f() * scale).collect()
    }
    /// n random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

pub struct Gpu {
    pub kernels: Kernels,
    pub ledger: Arc<VramLedger>,
    pub gpu: Arc<GpuContext>,
}

impl Gpu {
    pub fn new() -> Gpu {
        let gpu = Arc::new(GpuContext::new(0).expect("GPU 0"));
        let dir = std::env::temp_dir().join("orcd-kernel-tests");
        let compiler = KernelCompiler::new(gpu.compute_capability(), &dir).expect("nvrtc");
        let kernels = Kernels::load(&gpu, &compiler).expect("kernels");
        let ledger = VramLedger::new(Arc::clone(&gpu));
        Gpu {
            kernels,
            ledger,
            gpu,
        }
    }
    pub fn ops(&self) -> Ops<'_> {
        Ops::new(&self.gpu, &self.kernels)
    }
    pub fn up<T: Copy>(&self, data: &[T]) -> DeviceBuffer {
        let b = self
            .ledger
            .alloc(std::mem::size_of_val(data).max(4) as u64, Purpose::Scratch)
            .expect("alloc");
        b.write_sync(0, data).expect("upload");
        b
    }
    /// A buffer of n f32 filled with NaN.
    pub fn poisoned(&self, n: usize) -> DeviceBuffer {
        self.poisoned_bytes(n * 4)
    }
    /// A buffer of `bytes` filled with 0xFF (NaN as f32).
    pub fn poisoned_bytes(&self, bytes: usize) -> DeviceBuffer {
        let b = self
            .ledger
            .alloc(bytes.max(4) as u64, Purpose::Scratch)
            .expect("alloc");
        b.fill_sync(0xFF).expect("poison");
        b
    }
    pub fn down<T: Copy + Default>(&self, b: &DeviceBuffer, n: usize) -> Vec<T> {
        let mut v = vec![T::default(); n];
        b.read_sync(0, &mut v).expect("download");
        v
    }
}

/// ‖a − b‖ / ‖b‖ (NaN anywhere gives infinity).
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    if a.iter().any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum();
    let den: f64 = b.iter().map(|&y| f64::from(y).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

/// A GGUF-layout matrix of `rows` x `cols` in `b`.
pub fn gguf_mat(ty: GgmlType, b: &DeviceBuffer, rows: usize, cols: usize) -> GgufMatrix {
    GgufMatrix {
        ptr: b.ptr(),
        ty,
        rows,
        cols,
    }
}

/// A packed matrix of `rows` x `cols` in `b`.
pub fn pk_mat(ty: GgmlType, b: &DeviceBuffer, rows: usize, cols: usize) -> PackedMatrix {
    PackedMatrix::new(b.ptr(), ty, rows, cols).expect("a packed shape")
}

/// The norm with weights `w`.
pub fn norm(w: &DeviceBuffer, eps: f32) -> Norm {
    Norm {
        weight: w.ptr(),
        eps,
    }
}

/// `n` tokens with positions and slots in `pos`, `slot` ((n) i32 each).
pub fn tokens(n: usize, pos: &DeviceBuffer, slot: &DeviceBuffer) -> Tokens {
    Tokens {
        n,
        pos: pos.ptr(),
        slot: slot.ptr(),
    }
}

/// The f64 reference attention over sequences laid out back to back (`lens` tokens each, at
/// positions `0..len`): each token attends to its sequence's positions `lo..=p` (the last
/// `window` of them when `window` > 0) with a plain softmax. `q`: (tokens, n_heads, hd), `k`
/// and `v`: (tokens, n_kv_heads * hd); `heads`: (n_heads, n_kv_heads, hd). Out like `q`.
pub fn attention_f64(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    lens: &[usize],
    heads: (usize, usize, usize),
    window: usize,
    scale: f32,
) -> Vec<f32> {
    let (n_heads, n_kv_heads, hd) = heads;
    let kv_dim = n_kv_heads * hd;
    let group = n_heads / n_kv_heads;
    let mut want = vec![0f32; q.len()];
    let mut base = 0;
    for &len in lens {
        for p in 0..len {
            let t = base + p;
            let lo = if window > 0 {
                (p + 1).saturating_sub(window)
            } else {
                0
            };
            for h in 0..n_heads {
                let kvh = h / group;
                let qh = &q[(t * n_heads + h) * hd..][..hd];
                let scores: Vec<f64> = (lo..=p)
                    .map(|j| {
                        let kj = &k[(base + j) * kv_dim + kvh * hd..][..hd];
                        qh.iter()
                            .zip(kj)
                            .map(|(&a, &b)| f64::from(a) * f64::from(b))
                            .sum::<f64>()
                            * f64::from(scale)
                    })
                    .collect();
                let m = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for d in 0..hd {
                    let acc: f64 = (lo..=p)
                        .zip(&e)
                        .map(|(j, w)| w * f64::from(v[(base + j) * kv_dim + kvh * hd + d]))
                        .sum();
                    want[(t * n_heads + h) * hd + d] = (acc / z) as f32;
                }
            }
        }
        base += len;
    }
    want
}
