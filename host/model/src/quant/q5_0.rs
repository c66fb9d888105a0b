//! Q5_0: blocks of 32 weights, 5-bit values with one f16 scale: `w = d * (q - 16)`.

use super::float::{f16_to_f32, f32_to_f16};
use super::q8_act::QuantizedActs;
use super::simd::Kernel;
use super::{dot_f32_32, field};

/// Weights per block.
const QK: usize = 32;

/// ggml's `block_q5_0`: 22 bytes, packed.
/// - bytes 0..2: `d`, f16 LE scale
/// - bytes 2..6: `qh`, u32 LE: bit `j` is the fifth (high) bit of weight `j`
/// - bytes 6..22: `qs`, the low 4 bits: low nibble of `qs[j]` is weight `j`, high nibble
///   weight `j + 16`
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockQ5_0 {
    pub d: [u8; 2],
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockQ5_0>() == 22);

impl BlockQ5_0 {
    pub const BYTES: usize = size_of::<BlockQ5_0>();

    /// The block stored in `b`.
    #[inline(always)]
    pub fn from_bytes(b: &[u8; Self::BYTES]) -> Self {
        BlockQ5_0 {
            d: field(b, 0),
            qh: field(b, 2),
            qs: field(b, 6),
        }
    }

    /// The block's bytes.
    pub fn to_bytes(&self) -> [u8; Self::BYTES] {
        let mut b = [0; Self::BYTES];
        b[..2].copy_from_slice(&self.d);
        b[2..6].copy_from_slice(&self.qh);
        b[6..].copy_from_slice(&self.qs);
        b
    }

    /// The 32 values `q - 16` in -16..=15, in weight order.
    #[inline(always)]
    fn values(&self) -> [i8; QK] {
        let qh = u32::from_le_bytes(self.qh);
        let mut v = [0i8; QK];
        for j in 0..QK / 2 {
            let h0 = ((qh >> j) << 4) & 0x10;
            let h1 = (qh >> (j + 12)) & 0x10;
            v[j] = ((self.qs[j] & 0x0F) as u32 | h0) as i8 - 16;
            v[j + QK / 2] = ((self.qs[j] >> 4) as u32 | h1) as i8 - 16;
        }
        v
    }
}

pub(super) fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, out) in src.as_chunks().0.iter().zip(dst.as_chunks_mut::<QK>().0) {
        let b = BlockQ5_0::from_bytes(b);
        let d = f16_to_f32(b.d);
        for (o, q) in out.iter_mut().zip(b.values()) {
            *o = d * f32::from(q);
        }
    }
}

pub(super) fn dot(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = 0.0f32;
    for (b, x) in row.as_chunks().0.iter().zip(x.as_chunks::<QK>().0) {
        let b = BlockQ5_0::from_bytes(b);
        acc += f16_to_f32(b.d) * dot_f32_32(&b.values().map(f32::from), x);
    }
    acc
}

/// Per block `d * dx * (sum(q * qx) - 16 * sum(qx))`, the 5-bit values built in the
/// kernel's weight register ([`Kernel::q5_0_weights`]).
#[inline(always)]
pub(super) fn dot_q8<K: Kernel>(k: K, row: &[u8], acts: &QuantizedActs) -> f32 {
    let mut acc = 0.0f32;
    let x = acts.qs.iter().zip(&acts.d).zip(&acts.sum);
    for (b, ((qx, &dx), &sx)) in row.as_chunks().0.iter().zip(x) {
        let b = BlockQ5_0::from_bytes(b);
        let w = k.q5_0_weights(&b.qs, u32::from_le_bytes(b.qh));
        let isum = k.dot32_w_unsigned(w, qx) - 16 * sx;
        acc += f16_to_f32(b.d) * dx * isum as f32;
    }
    acc
}

/// ggml's `quantize_row_q5_0_ref`: the value of largest magnitude maps to -16 exactly,
/// `d = max / -16`, `q = min(31, trunc(x / d + 16.5))`.
pub(super) fn quantize(src: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len() / QK * BlockQ5_0::BYTES);
    for x in src.as_chunks::<QK>().0 {
        let max = x
            .iter()
            .fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let q: [u8; QK] = std::array::from_fn(|j| ((x[j] * id + 16.5) as u8).min(31));
        let qs = std::array::from_fn(|j| (q[j] & 0x0F) | ((q[j + QK / 2] & 0x0F) << 4));
        let qh = (0..QK).fold(0u32, |h, j| h | (u32::from(q[j] >> 4) << j));
        let block = BlockQ5_0 {
            d: f32_to_f16(d),
            qh: qh.to_le_bytes(),
            qs,
        };
        out.extend_from_slice(&block.to_bytes());
    }
    out
}
