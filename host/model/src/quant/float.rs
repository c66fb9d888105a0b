//! The unquantized element types: F32, F16 and BF16 (one element per "block", little-endian).
//!
//! Also the f16 scale helpers every quantized block uses: ggml stores block scales as IEEE
//! half floats, little-endian, at byte (not 2-byte) alignment.

use half::{bf16, f16};

/// The f32 value of a little-endian IEEE half (exact: every f16 is an f32).
///
/// Bit arithmetic rather than `half`'s conversion, so that it inlines into the block loops
/// (`half` calls out to a runtime-detected F16C routine): move the 5-bit exponent and 10-bit
/// mantissa into f32 position and rebias the exponent by 127 - 15; infinities and NaNs get
/// the f32 all-ones exponent; subnormals (exponent 0) are renormalised exactly by an f32
/// subtraction of the implicit bit.
#[inline(always)]
pub fn f16_to_f32(b: [u8; 2]) -> f32 {
    const EXP_F16: u32 = 0x7C00 << 13; // the f16 exponent field, in f32 position
    const REBIAS: u32 = (127 - 15) << 23;
    let h = u32::from(u16::from_le_bytes(b));
    let magnitude = (h & 0x7FFF) << 13;
    let exp = magnitude & EXP_F16;
    // all three candidates, then a select: branch-free, so loops over halves vectorize
    let normal = magnitude + REBIAS;
    let inf_nan = normal + ((128 - 16) << 23);
    // m * 2^-24 = (2^-14 + m * 2^-24) - 2^-14, both terms exact in f32
    let two_pow_m14 = f32::from_bits((127 - 14) << 23);
    let subnormal = (f32::from_bits(normal + (1 << 23)) - two_pow_m14).to_bits();
    let bits = if exp == EXP_F16 {
        inf_nan
    } else if exp == 0 {
        subnormal
    } else {
        normal
    };
    f32::from_bits(bits | ((h & 0x8000) << 16))
}

/// `v` rounded to the nearest IEEE half (ties to even, as ggml's `GGML_FP32_TO_FP16`), as LE bytes.
#[inline(always)]
pub(crate) fn f32_to_f16(v: f32) -> [u8; 2] {
    f16::from_f32(v).to_le_bytes()
}

/// The f32 value of a little-endian bfloat16 (its bits are the top half of an f32: exact).
#[inline(always)]
fn bf16_to_f32(b: [u8; 2]) -> f32 {
    f32::from_bits(u32::from(u16::from_le_bytes(b)) << 16)
}

/// F32 row: `src` is `dst.len()` LE f32 values (4 bytes each).
pub(super) fn dequantize_f32(src: &[u8], dst: &mut [f32]) {
    for (o, b) in dst.iter_mut().zip(src.as_chunks::<4>().0) {
        *o = f32::from_le_bytes(*b);
    }
}

/// F16 row: `src` is `dst.len()` LE halves (2 bytes each).
pub(super) fn dequantize_f16(src: &[u8], dst: &mut [f32]) {
    for (o, b) in dst.iter_mut().zip(src.as_chunks::<2>().0) {
        *o = f16_to_f32(*b);
    }
}

/// BF16 row: `src` is `dst.len()` LE bfloat16 values (2 bytes each).
pub(super) fn dequantize_bf16(src: &[u8], dst: &mut [f32]) {
    for (o, b) in dst.iter_mut().zip(src.as_chunks::<2>().0) {
        *o = bf16_to_f32(*b);
    }
}

/// Lanes of the float dot products: 16 independent partial sums, so the compiler can keep
/// them in vector registers (a single running sum is a serial dependency it may not reorder).
const LANES: usize = 16;

/// `sum_i w(i) * x_i` with `w` read from `row` by `elem` (`B` bytes per element), in
/// [`LANES`] partial sums added at the end.
#[inline(always)]
fn dot_lanes<const B: usize>(row: &[u8], x: &[f32], elem: impl Fn([u8; B]) -> f32) -> f32 {
    let (row_elems, _) = row.as_chunks::<B>();
    let mut acc = [0.0f32; LANES];
    let (w_chunks, w_tail) = row_elems.as_chunks::<LANES>();
    let (x_chunks, x_tail) = x.as_chunks::<LANES>();
    for (w, x) in w_chunks.iter().zip(x_chunks) {
        for l in 0..LANES {
            acc[l] += elem(w[l]) * x[l];
        }
    }
    let tail: f32 = w_tail.iter().zip(x_tail).map(|(w, x)| elem(*w) * x).sum();
    acc.iter().sum::<f32>() + tail
}

/// `sum_i w_i * x_i` for an F32 row.
pub(super) fn dot_f32(row: &[u8], x: &[f32]) -> f32 {
    dot_lanes(row, x, f32::from_le_bytes)
}

/// `sum_i w_i * x_i` for an F16 row.
pub(super) fn dot_f16(row: &[u8], x: &[f32]) -> f32 {
    dot_lanes(row, x, f16_to_f32)
}

/// `sum_i w_i * x_i` for a BF16 row.
pub(super) fn dot_bf16(row: &[u8], x: &[f32]) -> f32 {
    dot_lanes(row, x, bf16_to_f32)
}

/// F32 row bytes of `src`.
pub(super) fn quantize_f32(src: &[f32]) -> Vec<u8> {
    src.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// F16 row bytes of `src`, each value rounded to nearest even (overflow becomes infinity).
pub(super) fn quantize_f16(src: &[f32]) -> Vec<u8> {
    src.iter().flat_map(|&v| f32_to_f16(v)).collect()
}

/// BF16 row bytes of `src`, rounded to nearest even like ggml's `ggml_compute_fp32_to_bf16`
/// (NaN stays NaN).
pub(super) fn quantize_bf16(src: &[f32]) -> Vec<u8> {
    src.iter()
        .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_to_f32_is_exact_for_every_half() {
        for h in 0..=u16::MAX {
            let want = f16::from_bits(h).to_f32();
            let got = f16_to_f32(h.to_le_bytes());
            if want.is_nan() {
                assert!(got.is_nan(), "{h:#06x}");
            } else {
                assert_eq!(got.to_bits(), want.to_bits(), "{h:#06x}");
            }
        }
    }
}
