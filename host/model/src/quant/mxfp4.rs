//! MXFP4 (OCP microscaling FP4, ggml type 39): blocks of 32 weights, each an E2M1 4-bit float
//! with one shared E8M0 power-of-two scale: `w = 2^(e - 127) * fp4(q)`. GPT-OSS ships its expert
//! weights in it.
//!
//! ggml stores the E2M1 values doubled, as the integers of [`KVALUES`] (so they fit an `i8`),
//! and halves the scale instead ([`e8m0_to_f32_half`]): `w = kvalues[q] * 2^(e - 128)`. The
//! integer dot with Q8 activations therefore needs no table of fractions: per block
//! `d_w * d_x * sum(kvalues[q_i] * qx_i)`, as ggml's `ggml_vec_dot_mxfp4_q8_0`.

use super::q8_act::QuantizedActs;
use super::simd::{Kernel, act_lanes, lane};
use super::{dot_f32_32, field};

/// Weights per block.
const QK: usize = 32;

/// ggml's `kvalues_mxfp4`: the E2M1 values times two, indexed by the 4-bit code (sign bit 3:
/// 0, 0.5, 1, 1.5, 2, 3, 4, 6 and their negatives).
pub const KVALUES: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// ggml's `block_mxfp4`: 17 bytes, packed.
/// - byte 0: `e`, the E8M0 scale exponent (`2^(e - 127)`)
/// - bytes 1..17: `qs`, 16 bytes of E2M1 codes: the low nibble of `qs[j]` is weight `j`, the
///   high nibble weight `j + 16`
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct BlockMxfp4 {
    pub e: u8,
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockMxfp4>() == 17);

impl BlockMxfp4 {
    pub const BYTES: usize = size_of::<BlockMxfp4>();

    /// The block stored in `b`.
    #[inline(always)]
    pub fn from_bytes(b: &[u8; Self::BYTES]) -> Self {
        BlockMxfp4 {
            e: b[0],
            qs: field(b, 1),
        }
    }

    /// The block's bytes.
    pub fn to_bytes(&self) -> [u8; Self::BYTES] {
        let mut b = [0; Self::BYTES];
        b[0] = self.e;
        b[1..].copy_from_slice(&self.qs);
        b
    }

    /// The 32 doubled E2M1 values `kvalues[q]` in -12..=12, in weight order.
    #[inline(always)]
    fn values(&self) -> [i8; QK] {
        let mut v = [0i8; QK];
        for j in 0..QK / 2 {
            v[j] = KVALUES[usize::from(self.qs[j] & 0x0F)];
            v[j + QK / 2] = KVALUES[usize::from(self.qs[j] >> 4)];
        }
        v
    }
}

/// ggml's `ggml_e8m0_to_fp32_half`: `2^(e - 128)`, half the block scale (the values are
/// doubled), built from its bits: a subnormal for `e < 2`.
#[inline(always)]
pub fn e8m0_to_f32_half(e: u8) -> f32 {
    let bits = if e < 2 {
        0x0020_0000u32 << e
    } else {
        u32::from(e - 1) << 23
    };
    f32::from_bits(bits)
}

pub(super) fn dequantize(src: &[u8], dst: &mut [f32]) {
    for (b, out) in src.as_chunks().0.iter().zip(dst.as_chunks_mut::<QK>().0) {
        let b = BlockMxfp4::from_bytes(b);
        let d = e8m0_to_f32_half(b.e);
        for (o, q) in out.iter_mut().zip(b.values()) {
            *o = f32::from(q) * d;
        }
    }
}

pub(super) fn dot(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = 0.0f32;
    for (b, x) in row.as_chunks().0.iter().zip(x.as_chunks::<QK>().0) {
        let b = BlockMxfp4::from_bytes(b);
        acc += e8m0_to_f32_half(b.e) * dot_f32_32(&b.values().map(f32::from), x);
    }
    acc
}

/// Per block `d_w * d_x * sum(kvalues[q] * qx)`, the looked-up values as two signed lanes.
#[inline(always)]
pub(super) fn dot_q8<K: Kernel>(k: K, row: &[u8], acts: &QuantizedActs) -> f32 {
    let mut acc = 0.0f32;
    for ((b, qx), &dx) in row.as_chunks().0.iter().zip(&acts.qs).zip(&acts.d) {
        let b = BlockMxfp4::from_bytes(b);
        let isum = k.dot32(lanes(&b), act_lanes(qx));
        acc += e8m0_to_f32_half(b.e) * dx * isum as f32;
    }
    acc
}

/// The block's 32 values as two 16-byte lanes of `i8` (weights 0..16, then 16..32).
#[inline(always)]
pub(super) fn lanes(b: &BlockMxfp4) -> [u128; 2] {
    let v = b.values().map(|q| q as u8);
    let (lo, hi) = v.as_chunks::<16>().0.split_at(1);
    [lane(&lo[0]), lane(&hi[0])]
}

/// ggml's `quantize_row_mxfp4_ref`: the exponent `floor(log2(amax)) - 2` (so that the largest
/// magnitude lands in 4..8 times the half scale, within E2M1's 6), then each value to the
/// nearest doubled E2M1 value, the lowest code on a tie. An all-zero block gets `e = 0`; an
/// exponent below 0 (magnitudes under 2^-125) saturates to 0 where ggml's cast is undefined.
pub(super) fn quantize(src: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len() / QK * BlockMxfp4::BYTES);
    for x in src.as_chunks::<QK>().0 {
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let e = if amax > 0.0 {
            (amax.log2().floor() - 2.0 + 127.0) as u8
        } else {
            0
        };
        let d = e8m0_to_f32_half(e);
        let q = |v: f32| {
            let mut best = (0u8, (f32::from(KVALUES[0]) * d - v).abs());
            for (i, &k) in KVALUES.iter().enumerate().skip(1) {
                let err = (f32::from(k) * d - v).abs();
                if err < best.1 {
                    best = (i as u8, err);
                }
            }
            best.0
        };
        let qs = std::array::from_fn(|j| q(x[j]) | (q(x[j + QK / 2]) << 4));
        out.extend_from_slice(&BlockMxfp4 { e, qs }.to_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_scale_is_a_power_of_two() {
        assert_eq!(e8m0_to_f32_half(128), 1.0);
        assert_eq!(e8m0_to_f32_half(127), 0.5);
        assert_eq!(e8m0_to_f32_half(130), 4.0);
        assert_eq!(e8m0_to_f32_half(1), 2f32.powi(-127));
        assert_eq!(e8m0_to_f32_half(0), 2f32.powi(-128));
    }

    #[test]
    fn codes_decode_to_the_e2m1_values() {
        // e = 128: d = 1, so a code's weight is its doubled E2M1 value.
        let mut qs = [0u8; 16];
        for (j, q) in qs.iter_mut().enumerate() {
            *q = j as u8 | ((15 - j as u8) << 4);
        }
        let bytes = BlockMxfp4 { e: 128, qs }.to_bytes();
        let mut out = [0.0f32; 32];
        dequantize(&bytes, &mut out);
        for j in 0..16 {
            assert_eq!(out[j], f32::from(KVALUES[j]));
            assert_eq!(out[j + 16], f32::from(KVALUES[15 - j]));
        }
    }
}
