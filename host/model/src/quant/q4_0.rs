//! Q4_0: blocks of 32 weights, 4-bit values with one f16 scale: `w = d * (q - 8)`.

use super::float::{f16_to_f32, f32_to_f16};
use super::q8_act::QuantizedActs;
use super::simd::Kernel;
use super::{dot_f32_32, field};

/// Weights per block.
const QK: usize = 32;

/// ggml's `block_q4_0`: 18 bytes, packed.
/// - bytes 0..2: `d`, f16 LE scale
/// - bytes 2..18: `qs`, 16 bytes of nibbles: the low nibble of `qs[j]` is weight `j`, the high
///   nibble weight `j + 16`
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ4_0 {
    pub d: [u8; 2],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockQ4_0>() == 18);

impl BlockQ4_0 {
    pub const BYTES: usize = size_of::<BlockQ4_0>();

    /// The block stored in `b`.
    #[inline(always)]
    pub fn from_bytes(b: &[u8; Self::BYTES]) -> Self {
        BlockQ4_0 {
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

    /// The 32 values `q - 8` in -8..=7, in weight order.
    #[inline(always)]
    fn values(&self) -> [i8; QK] {
        let mut v = [0i8; QK];
        for j in 0..QK / 2 {
            v[j] = (self.qs[j] & 0x0F) as i8 - 8;
            v[j + QK / 2] = (self.qs[j] >> 4) as i8 - 8;
        }
        v
    }
}

pub(super) fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, out) in src.as_chunks().0.iter().zip(dst.as_chunks_mut::<QK>().0) {
        let b = BlockQ4_0::from_bytes(b);
        let d = f16_to_f32(b.d);
        for (o, q) in out.iter_mut().zip(b.values()) {
            *o = d * f32::from(q);
        }
    }
}

pub(super) fn dot(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = 0.0f32;
    for (b, x) in row.as_chunks().0.iter().zip(x.as_chunks::<QK>().0) {
        let b = BlockQ4_0::from_bytes(b);
        acc += f16_to_f32(b.d) * dot_f32_32(&b.values().map(f32::from), x);
    }
    acc
}

/// Per block `d * dx * (sum(q * qx) - 8 * sum(qx))`, the nibbles unpacked in the kernel's
/// weight register ([`Kernel::nibbles16`]).
#[inline(always)]
pub(super) fn dot_q8<K: Kernel>(k: K, row: &[u8], acts: &QuantizedActs) -> f32 {
    let mut acc = 0.0f32;
    let x = acts.qs.iter().zip(&acts.d).zip(&acts.sum);
    for (b, ((qx, &dx), &sx)) in row.as_chunks().0.iter().zip(x) {
        let b = BlockQ4_0::from_bytes(b);
        let isum = k.dot32_w_unsigned(k.nibbles16(&b.qs), qx) - 8 * sx;
        acc += f16_to_f32(b.d) * dx * isum as f32;
    }
    acc
}

/// ggml's `quantize_row_q4_0_ref`: the value of largest magnitude maps to -8 exactly,
/// `d = max / -8`, `q = min(15, trunc(x / d + 8.5))`.
pub(super) fn quantize(src: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len() / QK * BlockQ4_0::BYTES);
    for x in src.as_chunks::<QK>().0 {
        let max = x
            .iter()
            .fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let q = |v: f32| ((v * id + 8.5) as u8).min(15);
        let qs = std::array::from_fn(|j| q(x[j]) | (q(x[j + QK / 2]) << 4));
        out.extend_from_slice(
            &BlockQ4_0 {
                d: f32_to_f16(d),
                qs,
            }
            .to_bytes(),
        );
    }
    out
}
