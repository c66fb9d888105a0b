//! Q4_K: super-blocks of 256 weights in 8 sub-blocks of 32; 4-bit values, each sub-block with
//! a 6-bit scale and a 6-bit minimum, themselves scaled by the super-block's f16 `d` and `dmin`:
//! `w = d * sc[j] * q - dmin * m[j]`.
//!
//! Also the 12-byte packed scale/min format that Q5_K shares ([`scale_min`], [`pack_scales`]).

use super::float::{f16_to_f32, f32_to_f16};
use super::q8_act::QuantizedActs;
use super::simd::Kernel;
use super::{dot_f32_32, field};

/// Weights per super-block.
pub(super) const QK_K: usize = 256;
/// Weights per sub-block.
const SUB: usize = 32;

/// ggml's `block_q4_K`: 144 bytes, packed.
/// - bytes 0..2: `d`, f16 LE super-scale of the sub-block scales
/// - bytes 2..4: `dmin`, f16 LE super-scale of the sub-block minimums
/// - bytes 4..16: `scales`, eight 6-bit scales and eight 6-bit minimums (see [`scale_min`])
/// - bytes 16..144: `qs`, 4 chunks of 32 bytes; chunk `c` holds sub-block `2c` in its low
///   nibbles and sub-block `2c + 1` in its high nibbles
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ4K {
    pub d: [u8; 2],
    pub dmin: [u8; 2],
    pub scales: [u8; 12],
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(size_of::<BlockQ4K>() == 144);

/// Sub-block `j`'s (scale, minimum) from the packed 12 bytes (ggml's `get_scale_min_k4`):
/// bytes 0..4 hold the low 6 bits of scales 0..4 and bytes 4..8 those of minimums 0..4;
/// scales and minimums 4..8 keep their low 4 bits in the nibbles of bytes 8..12 and their top
/// 2 bits in the top 2 bits of bytes 0..8.
#[inline(always)]
pub(super) fn scale_min(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// The inverse of [`scale_min`]: pack eight 6-bit scales and minimums.
pub(super) fn pack_scales(sc: &[u8; 8], m: &[u8; 8]) -> [u8; 12] {
    let mut q = [0u8; 12];
    for j in 0..4 {
        q[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
        q[j + 4] = m[j] | ((m[j + 4] >> 4) << 6);
        q[j + 8] = (sc[j + 4] & 0x0F) | ((m[j + 4] & 0x0F) << 4);
    }
    q
}

impl BlockQ4K {
    pub const BYTES: usize = size_of::<BlockQ4K>();

    /// The block stored in `b`.
    #[inline(always)]
    pub fn from_bytes(b: &[u8; Self::BYTES]) -> Self {
        BlockQ4K {
            d: field(b, 0),
            dmin: field(b, 2),
            scales: field(b, 4),
            qs: field(b, 16),
        }
    }

    /// The block's bytes.
    pub fn to_bytes(&self) -> [u8; Self::BYTES] {
        let mut b = [0; Self::BYTES];
        b[..2].copy_from_slice(&self.d);
        b[2..4].copy_from_slice(&self.dmin);
        b[4..16].copy_from_slice(&self.scales);
        b[16..].copy_from_slice(&self.qs);
        b
    }

    /// Sub-block `j`'s 32 values `q` in 0..=15.
    #[inline(always)]
    fn values(&self, j: usize) -> [i8; SUB] {
        let chunk: &[u8; SUB] = &self.qs.as_chunks().0[j / 2];
        let shift = 4 * (j % 2);
        chunk.map(|q| ((q >> shift) & 0x0F) as i8)
    }

    /// Sub-block `j`'s effective scale `d * sc` and minimum `dmin * m`.
    #[inline(always)]
    fn sub_scale(&self, j: usize) -> (f32, f32) {
        let (sc, m) = scale_min(j, &self.scales);
        (
            f16_to_f32(self.d) * f32::from(sc),
            f16_to_f32(self.dmin) * f32::from(m),
        )
    }
}

pub(super) fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, out) in src.as_chunks().0.iter().zip(dst.as_chunks_mut::<QK_K>().0) {
        let b = BlockQ4K::from_bytes(b);
        for (j, out) in out.as_chunks_mut::<SUB>().0.iter_mut().enumerate() {
            let (d, m) = b.sub_scale(j);
            for (o, q) in out.iter_mut().zip(b.values(j)) {
                *o = d * f32::from(q) - m;
            }
        }
    }
}

pub(super) fn dot(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = 0.0f32;
    for (b, x) in row.as_chunks().0.iter().zip(x.as_chunks::<QK_K>().0) {
        let b = BlockQ4K::from_bytes(b);
        for (j, x) in x.as_chunks::<SUB>().0.iter().enumerate() {
            let (d, m) = b.sub_scale(j);
            let sum_x: f32 = x.iter().sum();
            acc += d * dot_f32_32(&b.values(j).map(f32::from), x) - m * sum_x;
        }
    }
    acc
}

/// Per sub-block `d * sc * dx * sum(q * qx) - dmin * m * dx * sum(qx)`. Written as four
/// chunks of two sub-blocks (low, high nibbles, [`Kernel::nibbles32`]).
#[inline(always)]
pub(super) fn dot_q8<K: Kernel>(k: K, row: &[u8], acts: &QuantizedActs) -> f32 {
    const SUBS: usize = QK_K / SUB;
    let mut acc = 0.0f32;
    let x_blocks = acts.qs.as_chunks::<SUBS>().0.iter();
    let x_blocks = x_blocks.zip(acts.d.as_chunks::<SUBS>().0.iter());
    let x_blocks = x_blocks.zip(acts.s.as_chunks::<SUBS>().0.iter());
    for (b, ((qx, dx), sx)) in row.as_chunks().0.iter().zip(x_blocks) {
        let b = BlockQ4K::from_bytes(b);
        let (d, dmin) = (f16_to_f32(b.d), f16_to_f32(b.dmin));
        let scales: [(u8, u8); SUBS] = std::array::from_fn(|j| scale_min(j, &b.scales));
        let chunks: &[[u8; 32]] = b.qs.as_chunks().0;
        for (c, chunk) in chunks.iter().enumerate() {
            for (h, w) in k.nibbles32(chunk).into_iter().enumerate() {
                let j = 2 * c + h;
                let (sc, m) = (d * f32::from(scales[j].0), dmin * f32::from(scales[j].1));
                acc += sc * dx[j] * k.dot32_w_unsigned(w, &qx[j]) as f32 - m * sx[j];
            }
        }
    }
    acc
}

/// A simple (not ggml's iterative) Q4_K quantizer. Per sub-block: the minimum is
/// `min(0, min x)`; the super-block's `dmin` is the largest `-min / 63` and each 6-bit `m`
/// rounds `-min / dmin` up, so the stored minimum is never above the true one. Then each
/// sub-block's step is `(max - stored_min) / 15`, `d` the largest step / 63 and each 6-bit
/// `sc` rounds `step / d` up, so the 16 levels cover the sub-block; `q` is the nearest level.
/// The error per weight is at most half a step (`d * sc / 2`) plus f16 rounding of `d`.
pub(super) fn quantize(src: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len() / QK_K * BlockQ4K::BYTES);
    for x in src.as_chunks::<QK_K>().0 {
        let subs = x.as_chunks::<SUB>().0;
        let (dmin, m) = super_scale(std::array::from_fn(|j| {
            -subs[j].iter().fold(0.0f32, |a, &v| a.min(v))
        }));
        let step = std::array::from_fn(|j| {
            let max = subs[j].iter().fold(-f32::MAX, |a, &v| a.max(v));
            (max + dmin * f32::from(m[j])) / 15.0
        });
        let (d, sc) = super_scale(step);
        let mut qs = [0u8; QK_K / 2];
        for (j, sub) in subs.iter().enumerate() {
            let (ds, dm) = (d * f32::from(sc[j]), dmin * f32::from(m[j]));
            let id = if ds != 0.0 { 1.0 / ds } else { 0.0 };
            for (l, &v) in sub.iter().enumerate() {
                let q = ((v + dm) * id).round().clamp(0.0, 15.0) as u8;
                qs[j / 2 * SUB + l] |= q << (4 * (j % 2));
            }
        }
        let block = BlockQ4K {
            d: f32_to_f16(d),
            dmin: f32_to_f16(dmin),
            scales: pack_scales(&sc, &m),
            qs,
        };
        out.extend_from_slice(&block.to_bytes());
    }
    out
}

/// For eight non-negative sub-block values, the f16-representable super-scale `s` (as f32)
/// and the 6-bit multipliers `ceil(v / s)` (at most 63), so that `s * mult >= v` up to the
/// f16 rounding of `s`.
pub(super) fn super_scale(v: [f32; 8]) -> (f32, [u8; 8]) {
    let max = v.iter().fold(0.0f32, |a, &b| a.max(b));
    let s = f16_to_f32(f32_to_f16(max / 63.0));
    if s == 0.0 {
        return (0.0, [0; 8]);
    }
    (s, v.map(|v| (v / s).ceil().clamp(0.0, 63.0) as u8))
}
