//! Q4_1: blocks of 32 weights, 4-bit values with an f16 scale and an f16 minimum:
//! `w = d * q + m`.

use super::float::{f16_to_f32, f32_to_f16};
use super::q8_act::QuantizedActs;
use super::simd::Kernel;
use super::{dot_f32_32, field};

/// Weights per block.
const QK: usize = 32;

/// ggml's `block_q4_1`: 20 bytes, packed.
/// - bytes 0..2: `d`, f16 LE scale
/// - bytes 2..4: `m`, f16 LE minimum
/// - bytes 4..20: `qs`, 16 bytes of nibbles: the low nibble of `qs[j]` is weight `j`, the high
///   nibble weight `j + 16`
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ4_1 {
    pub d: [u8; 2],
    pub m: [u8; 2],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockQ4_1>() == 20);

impl BlockQ4_1 {
    pub const BYTES: usize = size_of::<BlockQ4_1>();

    /// The block stored in `b`.
    #[inline(always)]
    pub fn from_bytes(b: &[u8; Self::BYTES]) -> Self {
        BlockQ4_1 {
            d: field(b, 0),
            m: field(b, 2),
            qs: field(b, 4),
        }
    }

    /// The block's bytes.
    pub fn to_bytes(&self) -> [u8; Self::BYTES] {
        let mut b = [0; Self::BYTES];
        b[..2].copy_from_slice(&self.d);
        b[2..4].copy_from_slice(&self.m);
        b[4..].copy_from_slice(&self.qs);
        b
    }

    /// The 32 values `q` in 0..=15, in weight order.
    #[inline(always)]
    fn values(&self) -> [i8; QK] {
        let mut v = [0i8; QK];
        for j in 0..QK / 2 {
            v[j] = (self.qs[j] & 0x0F) as i8;
            v[j + QK / 2] = (self.qs[j] >> 4) as i8;
        }
        v
    }
}

pub(super) fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, out) in src.as_chunks().0.iter().zip(dst.as_chunks_mut::<QK>().0) {
        let b = BlockQ4_1::from_bytes(b);
        let (d, m) = (f16_to_f32(b.d), f16_to_f32(b.m));
        for (o, q) in out.iter_mut().zip(b.values()) {
            *o = d * f32::from(q) + m;
        }
    }
}

pub(super) fn dot(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = 0.0f32;
    for (b, x) in row.as_chunks().0.iter().zip(x.as_chunks::<QK>().0) {
        let b = BlockQ4_1::from_bytes(b);
        let sum_x: f32 = x.iter().sum();
        acc +=
            f16_to_f32(b.d) * dot_f32_32(&b.values().map(f32::from), x) + f16_to_f32(b.m) * sum_x;
    }
    acc
}

/// Per block `d * dx * sum(q * qx) + m * dx * sum(qx)`, the nibbles unpacked in the kernel's
/// weight register ([`Kernel::nibbles16`]).
#[inline(always)]
pub(super) fn dot_q8<K: Kernel>(k: K, row: &[u8], acts: &QuantizedActs) -> f32 {
    let mut acc = 0.0f32;
    let x = acts.qs.iter().zip(&acts.d).zip(&acts.s);
    for (b, ((qx, &dx), &sx)) in row.as_chunks().0.iter().zip(x) {
        let b = BlockQ4_1::from_bytes(b);
        let isum = k.dot32_w_unsigned(k.nibbles16(&b.qs), qx);
        acc += f16_to_f32(b.d) * dx * isum as f32 + f16_to_f32(b.m) * sx;
    }
    acc
}

/// ggml's `quantize_row_q4_1_ref`: `d = (max - min) / 15`, `m = min`,
/// `q = min(15, trunc((x - min) / d + 0.5))`.
pub(super) fn quantize(src: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len() / QK * BlockQ4_1::BYTES);
    for x in src.as_chunks::<QK>().0 {
        let min = x.iter().fold(f32::MAX, |m, &v| m.min(v));
        let max = x.iter().fold(-f32::MAX, |m, &v| m.max(v));
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let q = |v: f32| (((v - min) * id + 0.5) as u8).min(15);
        let qs = std::array::from_fn(|j| q(x[j]) | (q(x[j + QK / 2]) << 4));
        let block = BlockQ4_1 {
            d: f32_to_f16(d),
            m: f32_to_f16(min),
            qs,
        };
        out.extend_from_slice(&block.to_bytes());
    }
    out
}
