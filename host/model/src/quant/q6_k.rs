//! Q6_K: super-blocks of 256 weights in 16 sub-blocks of 16; 6-bit values, each sub-block with
//! a signed 8-bit scale, scaled by the super-block's f16 `d`: `w = d * sc[j] * (q - 32)`.

use super::float::{f16_to_f32, f32_to_f16};
use super::q4_k::QK_K;
use super::q8_act::QuantizedActs;
use super::simd::Kernel;
use super::{dot_f32, field};

/// Weights per sub-block (one scale each).
const SUB: usize = 16;
/// Weights per group of 32 (two sub-blocks; one activation block).
const G: usize = 32;

/// ggml's `block_q6_K`: 210 bytes, packed. Weight `e = 128 n + 32 k + l` (`n` in 0..2,
/// `k` in 0..4, `l` in 0..32) has:
/// - bytes 0..128: `ql`, low 4 bits: nibble `k / 2` (low, high) of `ql[64 n + 32 (k % 2) + l]`
/// - bytes 128..192: `qh`, high 2 bits: bits `2k..2k+2` of `qh[32 n + l]`
/// - bytes 192..208: `scales`, `i8` scale of sub-block `e / 16`
/// - bytes 208..210: `d`, f16 LE super-scale
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [u8; QK_K / SUB],
    pub d: [u8; 2],
}
const _: () = assert!(size_of::<BlockQ6K>() == 210);

impl BlockQ6K {
    pub const BYTES: usize = size_of::<BlockQ6K>();

    /// The block stored in `b`.
    #[inline(always)]
    pub fn from_bytes(b: &[u8; Self::BYTES]) -> Self {
        BlockQ6K {
            ql: field(b, 0),
            qh: field(b, 128),
            scales: field(b, 192),
            d: field(b, 208),
        }
    }

    /// The block's bytes.
    pub fn to_bytes(&self) -> [u8; Self::BYTES] {
        let mut b = [0; Self::BYTES];
        b[..128].copy_from_slice(&self.ql);
        b[128..192].copy_from_slice(&self.qh);
        b[192..208].copy_from_slice(&self.scales);
        b[208..].copy_from_slice(&self.d);
        b
    }

    /// Group `g`'s (weights `32 g .. 32 g + 32`) values `q - 32` in -32..=31.
    #[inline(always)]
    fn values(&self, g: usize) -> [i8; G] {
        let (n, k) = (g / 4, g % 4);
        let ql: &[u8; G] = &self.ql.as_chunks().0[2 * n + k % 2];
        let qh: &[u8; G] = &self.qh.as_chunks().0[n];
        let (lo_shift, hi_shift) = (4 * (k / 2), 2 * k);
        std::array::from_fn(|l| {
            let q = ((ql[l] >> lo_shift) & 0x0F) | (((qh[l] >> hi_shift) & 3) << 4);
            q as i8 - 32
        })
    }

    /// Sub-block `j`'s effective scale `d * sc`.
    #[inline(always)]
    fn sub_scale(&self, j: usize) -> f32 {
        f16_to_f32(self.d) * f32::from(self.scales[j] as i8)
    }
}

pub(super) fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, out) in src.as_chunks().0.iter().zip(dst.as_chunks_mut::<QK_K>().0) {
        let b = BlockQ6K::from_bytes(b);
        for (g, out) in out.as_chunks_mut::<G>().0.iter_mut().enumerate() {
            let q = b.values(g);
            for (l, o) in out.iter_mut().enumerate() {
                *o = b.sub_scale(2 * g + l / SUB) * f32::from(q[l]);
            }
        }
    }
}

pub(super) fn dot(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = 0.0f32;
    for (b, x) in row.as_chunks().0.iter().zip(x.as_chunks::<QK_K>().0) {
        let b = BlockQ6K::from_bytes(b);
        for (g, x) in x.as_chunks::<G>().0.iter().enumerate() {
            let q = b.values(g).map(f32::from);
            let lo = dot_f32(&q[..SUB], &x[..SUB]);
            let hi = dot_f32(&q[SUB..], &x[SUB..]);
            acc += b.sub_scale(2 * g) * lo + b.sub_scale(2 * g + 1) * hi;
        }
    }
    acc
}

/// Per group of 32 `d * dx * (sc_lo * sum_lo(q * qx) + sc_hi * sum_hi(q * qx))`, the
/// 6-bit values built and made signed in the kernel's weight register
/// ([`Kernel::q6_k_weights`]). The four groups of each 128 are spelled out so that every shift is a
/// constant.
#[inline(always)]
pub(super) fn dot_q8<K: Kernel>(k: K, row: &[u8], acts: &QuantizedActs) -> f32 {
    const GROUPS: usize = QK_K / G;
    let mut acc = 0.0f32;
    let x_blocks = acts.qs.as_chunks::<GROUPS>().0.iter();
    let x_blocks = x_blocks.zip(acts.d.as_chunks::<GROUPS>().0.iter());
    for (b, (qx, dx)) in row.as_chunks().0.iter().zip(x_blocks) {
        let b = BlockQ6K::from_bytes(b);
        let d = f16_to_f32(b.d);
        let ql: &[[u8; G]] = b.ql.as_chunks().0;
        let qh: &[[u8; G]] = b.qh.as_chunks().0;
        for n in 0..2 {
            // group 4n + k4: the low nibbles of ql[2n + k4 % 2] (the high ones for k4 >= 2)
            // and bits 2 k4.. of qh[n]
            let (l, h) = ((&ql[2 * n], &ql[2 * n + 1]), &qh[n]);
            let w = [
                k.q6_k_weights::<0, 0>(l.0, h),
                k.q6_k_weights::<0, 2>(l.1, h),
                k.q6_k_weights::<4, 4>(l.0, h),
                k.q6_k_weights::<4, 6>(l.1, h),
            ];
            for (k4, w) in w.into_iter().enumerate() {
                let g = 4 * n + k4;
                let sc_lo = i32::from(b.scales[2 * g] as i8);
                let sc_hi = i32::from(b.scales[2 * g + 1] as i8);
                let isum = k.dot16x2_scaled_w(w, [sc_lo, sc_hi], &qx[g]);
                acc += d * dx[g] * isum as f32;
            }
        }
    }
    acc
}

/// A simple (not ggml's iterative) Q6_K quantizer: each sub-block's step is `max|x| / 31`,
/// `d` is the largest step / 127 (rounded to f16) and each `i8` scale rounds `step / d` up,
/// so `q = round(x / (d * sc))` stays in -31..=31. The error per weight is at most half a
/// step plus f16 rounding of `d`.
pub(super) fn quantize(src: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len() / QK_K * BlockQ6K::BYTES);
    for x in src.as_chunks::<QK_K>().0 {
        let subs = x.as_chunks::<SUB>().0;
        let step: [f32; QK_K / SUB] =
            std::array::from_fn(|j| subs[j].iter().fold(0.0f32, |a, v| a.max(v.abs())) / 31.0);
        let max = step.iter().fold(0.0f32, |a, &b| a.max(b));
        let d = f16_to_f32(f32_to_f16(max / 127.0));
        let sc = step.map(|s| {
            if d != 0.0 {
                (s / d).ceil().min(127.0) as u8
            } else {
                0
            }
        });
        let mut ql = [0u8; QK_K / 2];
        let mut qh = [0u8; QK_K / 4];
        for (e, &v) in x.iter().enumerate() {
            let ds = d * f32::from(sc[e / SUB]);
            let id = if ds != 0.0 { 1.0 / ds } else { 0.0 };
            let q = ((v * id).round().clamp(-32.0, 31.0) + 32.0) as u8;
            let (n, k, l) = (e / 128, e % 128 / G, e % G);
            ql[64 * n + 32 * (k % 2) + l] |= (q & 0x0F) << (4 * (k / 2));
            qh[32 * n + l] |= (q >> 4) << (2 * k);
        }
        let block = BlockQ6K {
            ql,
            qh,
            scales: sc,
            d: f32_to_f16(d),
        };
        out.extend_from_slice(&block.to_bytes());
    }
    out
}
