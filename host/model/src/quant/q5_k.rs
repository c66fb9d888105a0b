//! Q5_K: super-blocks of 256 weights in 8 sub-blocks of 32; 5-bit values, each sub-block with
//! a 6-bit scale and a 6-bit minimum (packed as in Q4_K), scaled by the super-block's f16 `d`
//! and `dmin`: `w = d * sc[j] * q - dmin * m[j]`.

use super::float::{f16_to_f32, f32_to_f16};
use super::q4_k::{QK_K, pack_scales, scale_min, super_scale};
use super::q8_act::QuantizedActs;
use super::simd::{Kernel, LOW_BITS, LOW_NIBBLES, act_lanes, lane};
use super::{dot_f32_32, field};

/// Weights per sub-block.
const SUB: usize = 32;

/// ggml's `block_q5_K`: 176 bytes, packed.
/// - bytes 0..2: `d`, f16 LE super-scale of the sub-block scales
/// - bytes 2..4: `dmin`, f16 LE super-scale of the sub-block minimums
/// - bytes 4..16: `scales`, eight 6-bit scales and minimums, packed as in Q4_K
/// - bytes 16..48: `qh`, the fifth bits: bit `j` of `qh[l]` belongs to weight `l` of sub-block `j`
/// - bytes 48..176: `qs`, the low 4 bits: 4 chunks of 32 bytes; chunk `c` holds sub-block `2c`
///   in its low nibbles and sub-block `2c + 1` in its high nibbles
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ5K {
    pub d: [u8; 2],
    pub dmin: [u8; 2],
    pub scales: [u8; 12],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(size_of::<BlockQ5K>() == 176);

impl BlockQ5K {
    pub const BYTES: usize = size_of::<BlockQ5K>();

    /// The block stored in `b`.
    #[inline(always)]
    pub fn from_bytes(b: &[u8; Self::BYTES]) -> Self {
        BlockQ5K {
            d: field(b, 0),
            dmin: field(b, 2),
            scales: field(b, 4),
            qh: field(b, 16),
            qs: field(b, 48),
        }
    }

    /// The block's bytes.
    pub fn to_bytes(&self) -> [u8; Self::BYTES] {
        let mut b = [0; Self::BYTES];
        b[..2].copy_from_slice(&self.d);
        b[2..4].copy_from_slice(&self.dmin);
        b[4..16].copy_from_slice(&self.scales);
        b[16..48].copy_from_slice(&self.qh);
        b[48..].copy_from_slice(&self.qs);
        b
    }

    /// Sub-block `j`'s 32 values `q` in 0..=31.
    #[inline(always)]
    fn values(&self, j: usize) -> [i8; SUB] {
        let chunk: &[u8; SUB] = &self.qs.as_chunks().0[j / 2];
        let shift = 4 * (j % 2);
        std::array::from_fn(|l| {
            (((chunk[l] >> shift) & 0x0F) | (((self.qh[l] >> j) & 1) << 4)) as i8
        })
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
        let b = BlockQ5K::from_bytes(b);
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
        let b = BlockQ5K::from_bytes(b);
        for (j, x) in x.as_chunks::<SUB>().0.iter().enumerate() {
            let (d, m) = b.sub_scale(j);
            let sum_x: f32 = x.iter().sum();
            acc += d * dot_f32_32(&b.values(j).map(f32::from), x) - m * sum_x;
        }
    }
    acc
}

/// Per sub-block `d * sc * dx * sum(q * qx) - dmin * m * dx * sum(qx)`. Written as four
/// chunks of two sub-blocks (low, high nibbles) so every shift is a constant.
#[inline(always)]
pub(super) fn dot_q8<K: Kernel>(k: K, row: &[u8], acts: &QuantizedActs) -> f32 {
    const SUBS: usize = QK_K / SUB;
    let mut acc = 0.0f32;
    let x_blocks = acts.qs.as_chunks::<SUBS>().0.iter();
    let x_blocks = x_blocks.zip(acts.d.as_chunks::<SUBS>().0.iter());
    let x_blocks = x_blocks.zip(acts.s.as_chunks::<SUBS>().0.iter());
    for (b, ((qx, dx), sx)) in row.as_chunks().0.iter().zip(x_blocks) {
        let b = BlockQ5K::from_bytes(b);
        let (d, dmin) = (f16_to_f32(b.d), f16_to_f32(b.dmin));
        let scales: [(u8, u8); SUBS] = std::array::from_fn(|j| scale_min(j, &b.scales));
        let chunks: &[[u8; 16]] = b.qs.as_chunks().0;
        let qh: &[[u8; 16]] = b.qh.as_chunks().0;
        let qh = [lane(&qh[0]), lane(&qh[1])];
        for c in 0..SUBS / 2 {
            let v = [lane(&chunks[2 * c]), lane(&chunks[2 * c + 1])];
            for (h, shift) in [(0, 0), (1, 4)] {
                let j = 2 * c + h;
                let q =
                    |i: usize| ((v[i] >> shift) & LOW_NIBBLES) | (((qh[i] >> j) & LOW_BITS) << 4);
                let (sc, m) = (d * f32::from(scales[j].0), dmin * f32::from(scales[j].1));
                acc += sc * dx[j] * k.dot32([q(0), q(1)], act_lanes(&qx[j])) as f32 - m * sx[j];
            }
        }
    }
    acc
}

/// The same simple quantizer as Q4_K's (see `q4_k::quantize`), with 32 levels per sub-block.
pub(super) fn quantize(src: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len() / QK_K * BlockQ5K::BYTES);
    for x in src.as_chunks::<QK_K>().0 {
        let subs = x.as_chunks::<SUB>().0;
        let (dmin, m) = super_scale(std::array::from_fn(|j| {
            -subs[j].iter().fold(0.0f32, |a, &v| a.min(v))
        }));
        let step = std::array::from_fn(|j| {
            let max = subs[j].iter().fold(-f32::MAX, |a, &v| a.max(v));
            (max + dmin * f32::from(m[j])) / 31.0
        });
        let (d, sc) = super_scale(step);
        let mut qs = [0u8; QK_K / 2];
        let mut qh = [0u8; QK_K / 8];
        for (j, sub) in subs.iter().enumerate() {
            let (ds, dm) = (d * f32::from(sc[j]), dmin * f32::from(m[j]));
            let id = if ds != 0.0 { 1.0 / ds } else { 0.0 };
            for (l, &v) in sub.iter().enumerate() {
                let q = ((v + dm) * id).round().clamp(0.0, 31.0) as u8;
                qs[j / 2 * SUB + l] |= (q & 0x0F) << (4 * (j % 2));
                qh[l] |= (q >> 4) << j;
            }
        }
        let block = BlockQ5K {
            d: f32_to_f16(d),
            dmin: f32_to_f16(dmin),
            scales: pack_scales(&sc, &m),
            qh,
            qs,
        };
        out.extend_from_slice(&block.to_bytes());
    }
    out
}
