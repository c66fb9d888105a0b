//! Q8_0: blocks of 32 weights, signed 8-bit values with one f16 scale: `w = d * q`.

use super::float::{f16_to_f32, f32_to_f16};
use super::q8_act::QuantizedActs;
use super::simd::{Kernel, act_lanes, lane};
use super::{dot_f32_32, field};

/// Weights per block.
const QK: usize = 32;

/// ggml's `block_q8_0`: 34 bytes, packed.
/// - bytes 0..2: `d`, f16 LE scale
/// - bytes 2..34: `qs`, 32 `i8` values in weight order
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ8_0 {
    pub d: [u8; 2],
    pub qs: [u8; QK],
}
const _: () = assert!(size_of::<BlockQ8_0>() == 34);

impl BlockQ8_0 {
    pub const BYTES: usize = size_of::<BlockQ8_0>();

    /// The block stored in `b`.
    #[inline(always)]
    pub fn from_bytes(b: &[u8; Self::BYTES]) -> Self {
        BlockQ8_0 {
            d: field(b, 0),
            qs: field(b, 2),
        }
    }

    /// The block's bytes.
    pub fn to_bytes(&self) -> [u8; Self::BYTES] {
        let mut b = [0; Self::BYTES];
        b[..2].copy_from_slice(&self.d);
        b[2..].copy_from_slice(&self.qs);
        b
    }

    /// The 32 signed values, in weight order.
    #[inline(always)]
    fn values(&self) -> [i8; QK] {
        self.qs.map(|q| q as i8)
    }
}

pub(super) fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, out) in src.as_chunks().0.iter().zip(dst.as_chunks_mut::<QK>().0) {
        let b = BlockQ8_0::from_bytes(b);
        let d = f16_to_f32(b.d);
        for (o, q) in out.iter_mut().zip(b.values()) {
            *o = f32::from(q) * d;
        }
    }
}

pub(super) fn dot(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = 0.0f32;
    for (b, x) in row.as_chunks().0.iter().zip(x.as_chunks::<QK>().0) {
        let b = BlockQ8_0::from_bytes(b);
        acc += f16_to_f32(b.d) * dot_f32_32(&b.values().map(f32::from), x);
    }
    acc
}

/// Per block `d * dx * sum(q * qx)`.
#[inline(always)]
pub(super) fn dot_q8<K: Kernel>(k: K, row: &[u8], acts: &QuantizedActs) -> f32 {
    let mut acc = 0.0f32;
    for ((b, qx), &dx) in row.as_chunks().0.iter().zip(&acts.qs).zip(&acts.d) {
        let b = BlockQ8_0::from_bytes(b);
        let (lo, hi) = b.qs.as_chunks::<16>().0.split_at(1);
        let isum = k.dot32([lane(&lo[0]), lane(&hi[0])], act_lanes(qx));
        acc += f16_to_f32(b.d) * dx * isum as f32;
    }
    acc
}

/// ggml's `quantize_row_q8_0_ref`: `d = max|x| / 127`, `q = round(x / d)` (half away from zero).
pub(super) fn quantize(src: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len() / QK * BlockQ8_0::BYTES);
    for x in src.as_chunks::<QK>().0 {
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let qs = x.map(|v| (v * id).round() as i8 as u8);
        out.extend_from_slice(
            &BlockQ8_0 {
                d: f32_to_f16(d),
                qs,
            }
            .to_bytes(),
        );
    }
    out
}
