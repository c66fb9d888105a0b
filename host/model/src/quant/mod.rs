//! Tensor element types of GGUF/ggml, their block layouts, dequantization and dot products.
//!
//! Each quantized type is a sequence of fixed-size blocks; one block holds `block_size()`
//! weights in `block_bytes()` bytes. A tensor row (`ne[0]` elements, the contiguous dimension)
//! is always a whole number of blocks.

//!
//! Per type: [`dequantize_row`] (bit-exact with ggml/gguf-py), [`dot_row`] (the exact f32
//! reference dot product), [`quantize_row`] (ggml's reference quantizers for the legacy types
//! and MXFP4, a simpler documented one for the K-quants) and the fast path [`dot_row_q8`]: activations
//! quantized once per row into [`QuantizedActs`] and an integer dot per block, as llama.cpp
//! does it. Each type unpacks its weights into 16-byte lanes with whole-register bit
//! operations; the lanes go to a small integer kernel (`simd.rs`): SSE2 (the x86-64 baseline),
//! AVX2 (chosen at runtime) or plain Rust (the reference). Integer sums are exact and the f32
//! work is the same source in every build, so all three give bit-identical results.
//!
//! Blocks are read from unaligned bytes (an mmap only guarantees 32-byte file alignment) by
//! copying their fields; the `#[repr(C)]` block structs document ggml's layouts and are
//! size-checked at compile time.

#[cfg(target_arch = "x86_64")]
mod avx2;
mod float;
mod multi;
mod mxfp4;
mod q4_0;
mod q4_1;
mod q4_k;
mod q5_0;
mod q5_1;
mod q5_k;
mod q6_k;
mod q8_0;
mod q8_act;
mod simd;

pub use float::f16_to_f32;
pub use multi::{ActsTile, TILE as DOT_TILE};
pub use mxfp4::{BlockMxfp4, KVALUES as MXFP4_KVALUES, e8m0_to_f32_half};
pub use q4_0::BlockQ4_0;
pub use q4_1::BlockQ4_1;
pub use q4_k::BlockQ4K;
pub use q5_0::BlockQ5_0;
pub use q5_1::BlockQ5_1;
pub use q5_k::BlockQ5K;
pub use q6_k::BlockQ6K;
pub use q8_0::BlockQ8_0;
pub use q8_act::{QK8, QuantizedActs};

use orcd_device::EngineError;

/// The ggml tensor types this engine understands (values are ggml's `enum ggml_type`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum GgmlType {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q4K = 12,
    Q5K = 13,
    Q6K = 14,
    BF16 = 30,
    Mxfp4 = 39,
}

impl GgmlType {
    pub const ALL: [GgmlType; 12] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
        GgmlType::Mxfp4,
    ];

    /// The type with ggml id `id`, or `None` for types this engine does not support.
    pub fn from_u32(id: u32) -> Option<GgmlType> {
        GgmlType::ALL.into_iter().find(|t| *t as u32 == id)
    }

    /// Weights per block.
    pub fn block_size(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q4_0
            | GgmlType::Q4_1
            | GgmlType::Q5_0
            | GgmlType::Q5_1
            | GgmlType::Q8_0
            | GgmlType::Mxfp4 => 32,
            GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K => 256,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            GgmlType::Q4_0 => 18,
            GgmlType::Q4_1 => 20,
            GgmlType::Q5_0 => 22,
            GgmlType::Q5_1 => 24,
            GgmlType::Q8_0 => 34,
            GgmlType::Q4K => 144,
            GgmlType::Q5K => 176,
            GgmlType::Q6K => 210,
            GgmlType::Mxfp4 => 17,
        }
    }

    /// Bytes of a row of `n` elements, or an error when `n` is not a whole number of blocks.
    pub fn row_bytes(self, n: usize) -> Result<usize, EngineError> {
        if !n.is_multiple_of(self.block_size()) {
            return Err(EngineError::InvalidInput(format!(
                "{} row of {n} elements is not a multiple of the block size {}",
                self.name(),
                self.block_size()
            )));
        }
        Ok(n / self.block_size() * self.block_bytes())
    }

    /// ggml's name for the type ("q4_0", "q4_K", ...).
    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "f32",
            GgmlType::F16 => "f16",
            GgmlType::BF16 => "bf16",
            GgmlType::Q4_0 => "q4_0",
            GgmlType::Q4_1 => "q4_1",
            GgmlType::Q5_0 => "q5_0",
            GgmlType::Q5_1 => "q5_1",
            GgmlType::Q8_0 => "q8_0",
            GgmlType::Q4K => "q4_K",
            GgmlType::Q5K => "q5_K",
            GgmlType::Q6K => "q6_K",
            GgmlType::Mxfp4 => "mxfp4",
        }
    }

    /// Parse a name as written on the command line ("q4_0", "Q4_K", "q4k", "f16", ...).
    pub fn parse(name: &str) -> Option<GgmlType> {
        let norm = name.to_ascii_lowercase().replace('_', "");
        GgmlType::ALL
            .into_iter()
            .find(|t| t.name().to_ascii_lowercase().replace('_', "") == norm)
    }
}

/// The largest magnitude [`quantize_row`] accepts for the quantized types: the largest f16,
/// so that no block scale (at most the block's largest magnitude) overflows its f16.
pub const MAX_QUANT_ABS: f32 = 65504.0;

/// Dequantize one row: `dst.len()` elements (a whole number of blocks) from `src`, which must
/// be exactly `ty.row_bytes(dst.len())` bytes.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), EngineError> {
    check_row_bytes(ty, src.len(), dst.len())?;
    match ty {
        GgmlType::F32 => float::dequantize_f32(src, dst),
        GgmlType::F16 => float::dequantize_f16(src, dst),
        GgmlType::BF16 => float::dequantize_bf16(src, dst),
        GgmlType::Q4_0 => q4_0::dequantize(src, dst),
        GgmlType::Q4_1 => q4_1::dequantize(src, dst),
        GgmlType::Q5_0 => q5_0::dequantize(src, dst),
        GgmlType::Q5_1 => q5_1::dequantize(src, dst),
        GgmlType::Q8_0 => q8_0::dequantize(src, dst),
        GgmlType::Q4K => q4_k::dequantize(src, dst),
        GgmlType::Q5K => q5_k::dequantize(src, dst),
        GgmlType::Q6K => q6_k::dequantize(src, dst),
        GgmlType::Mxfp4 => mxfp4::dequantize(src, dst),
    }
    Ok(())
}

/// `sum_i w_i * x_i` for one quantized row and f32 activations: the exact reference path
/// (f32 arithmetic on the dequantized values, block scales factored out per (sub-)block).
///
/// `row` must be `ty.row_bytes(x.len())` bytes; callers check shapes when they load a model.
/// On a mismatch only the whole blocks both sides have are summed (and debug builds assert).
pub fn dot_row(ty: GgmlType, row: &[u8], x: &[f32]) -> f32 {
    debug_assert_eq!(ty.row_bytes(x.len()).ok(), Some(row.len()));
    match ty {
        GgmlType::F32 => float::dot_f32(row, x),
        GgmlType::F16 => float::dot_f16(row, x),
        GgmlType::BF16 => float::dot_bf16(row, x),
        GgmlType::Q4_0 => q4_0::dot(row, x),
        GgmlType::Q4_1 => q4_1::dot(row, x),
        GgmlType::Q5_0 => q5_0::dot(row, x),
        GgmlType::Q5_1 => q5_1::dot(row, x),
        GgmlType::Q8_0 => q8_0::dot(row, x),
        GgmlType::Q4K => q4_k::dot(row, x),
        GgmlType::Q5K => q5_k::dot(row, x),
        GgmlType::Q6K => q6_k::dot(row, x),
        GgmlType::Mxfp4 => mxfp4::dot(row, x),
    }
}

/// Quantize one row of `src` (a whole number of blocks) to `ty`. The legacy types and MXFP4
/// use ggml's `quantize_row_*_ref` (byte-identical to gguf-py); the K-quants a simpler
/// quantizer without ggml's scale search, documented in their modules. The quantized types reject non-finite
/// values and magnitudes above [`MAX_QUANT_ABS`] (their f16 scales would overflow); the float
/// types store every value as it is.
pub fn quantize_row(ty: GgmlType, src: &[f32]) -> Result<Vec<u8>, EngineError> {
    ty.row_bytes(src.len())?;
    if ty.block_size() > 1
        && let Some(v) = src.iter().find(|v| v.is_nan() || v.abs() > MAX_QUANT_ABS)
    {
        return Err(EngineError::InvalidInput(format!(
            "cannot quantize {v} to {}: values must be finite and within +-{MAX_QUANT_ABS}",
            ty.name()
        )));
    }
    Ok(match ty {
        GgmlType::F32 => float::quantize_f32(src),
        GgmlType::F16 => float::quantize_f16(src),
        GgmlType::BF16 => float::quantize_bf16(src),
        GgmlType::Q4_0 => q4_0::quantize(src),
        GgmlType::Q4_1 => q4_1::quantize(src),
        GgmlType::Q5_0 => q5_0::quantize(src),
        GgmlType::Q5_1 => q5_1::quantize(src),
        GgmlType::Q8_0 => q8_0::quantize(src),
        GgmlType::Q4K => q4_k::quantize(src),
        GgmlType::Q5K => q5_k::quantize(src),
        GgmlType::Q6K => q6_k::quantize(src),
        GgmlType::Mxfp4 => mxfp4::quantize(src),
    })
}

/// The fast dot product: `sum_i w_i * x_i` with `x` quantized to 8 bits per 32-block
/// ([`QuantizedActs`]), integer sums per block, one f32 multiply-add per (sub-)block. The
/// float types use the f32 path on the activations as given. Uses AVX2 when the CPU has it.
///
/// `row` must be `ty.row_bytes(x.len())` bytes (as for [`dot_row`]).
pub fn dot_row_q8(ty: GgmlType, row: &[u8], x: &QuantizedActs) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if let Some(avx2) = simd::Avx2::detect() {
        return dot_row_q8_avx2(avx2, ty, row, x);
    }
    dot_row_q8_portable(ty, row, x)
}

/// [`dot_row_q8`] without AVX2: SSE2 kernels on x86-64 (its baseline), plain Rust elsewhere.
pub fn dot_row_q8_portable(ty: GgmlType, row: &[u8], x: &QuantizedActs) -> f32 {
    #[cfg(target_arch = "x86_64")]
    return dot_row_q8_with(simd::Sse2, ty, row, x);
    #[cfg(not(target_arch = "x86_64"))]
    return dot_row_q8_with(simd::Scalar, ty, row, x);
}

/// [`dot_row_q8`] with the plain-Rust kernel: the reference the SIMD kernels are tested against.
pub fn dot_row_q8_scalar(ty: GgmlType, row: &[u8], x: &QuantizedActs) -> f32 {
    dot_row_q8_with(simd::Scalar, ty, row, x)
}

/// [`dot_row_q8_with`] compiled with AVX2 enabled (everything it calls is inlined into it).
#[cfg(target_arch = "x86_64")]
fn dot_row_q8_avx2(k: simd::Avx2, ty: GgmlType, row: &[u8], x: &QuantizedActs) -> f32 {
    #[target_feature(enable = "avx2")]
    fn with_avx2(k: simd::Avx2, ty: GgmlType, row: &[u8], x: &QuantizedActs) -> f32 {
        dot_row_q8_with(k, ty, row, x)
    }
    // SAFETY: an `Avx2` kernel exists only when the CPU has AVX2.
    unsafe { with_avx2(k, ty, row, x) }
}

#[inline(always)]
fn dot_row_q8_with<K: simd::Kernel>(k: K, ty: GgmlType, row: &[u8], x: &QuantizedActs) -> f32 {
    debug_assert_eq!(ty.row_bytes(x.len()).ok(), Some(row.len()));
    match ty {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => dot_row(ty, row, x.values()),
        GgmlType::Q4_0 => q4_0::dot_q8(k, row, x),
        GgmlType::Q4_1 => q4_1::dot_q8(k, row, x),
        GgmlType::Q5_0 => q5_0::dot_q8(k, row, x),
        GgmlType::Q5_1 => q5_1::dot_q8(k, row, x),
        GgmlType::Q8_0 => q8_0::dot_q8(k, row, x),
        GgmlType::Q4K => q4_k::dot_q8(k, row, x),
        GgmlType::Q5K => q5_k::dot_q8(k, row, x),
        GgmlType::Q6K => q6_k::dot_q8(k, row, x),
        GgmlType::Mxfp4 => mxfp4::dot_q8(k, row, x),
    }
}

/// [`dot_row_q8`] of one weight row with a tile of up to [`DOT_TILE`] activation rows:
/// `out[t]` is the dot with the tile's row `t`, equal bit for bit to `dot_row_q8`. Each weight
/// block is unpacked once for the whole tile (`multi.rs`). `out` must be `tile.len()` long.
pub fn dot_rows_q8(ty: GgmlType, row: &[u8], tile: &ActsTile<'_>, out: &mut [f32]) {
    debug_assert_eq!(tile.len(), out.len());
    #[cfg(target_arch = "x86_64")]
    if let Some(avx2) = simd::Avx2::detect() {
        #[target_feature(enable = "avx2")]
        fn with_avx2(
            k: simd::Avx2,
            ty: GgmlType,
            row: &[u8],
            tile: &ActsTile<'_>,
            out: &mut [f32],
        ) {
            multi::dot_rows_q8_with(k, ty, row, tile, out)
        }
        // SAFETY: an `Avx2` kernel exists only when the CPU has AVX2.
        return unsafe { with_avx2(avx2, ty, row, tile, out) };
    }
    #[cfg(target_arch = "x86_64")]
    multi::dot_rows_q8_with(simd::Sse2, ty, row, tile, out);
    #[cfg(not(target_arch = "x86_64"))]
    multi::dot_rows_q8_with(simd::Scalar, ty, row, tile, out);
}

/// An error unless `bytes` is exactly the size of a `ty` row of `n` elements.
fn check_row_bytes(ty: GgmlType, bytes: usize, n: usize) -> Result<(), EngineError> {
    let need = ty.row_bytes(n)?;
    if bytes != need {
        return Err(EngineError::InvalidInput(format!(
            "{} row of {n} elements needs {need} bytes, got {bytes}",
            ty.name()
        )));
    }
    Ok(())
}

/// `N` bytes of a block starting at byte `at` (the block structs' field reader). The
/// offsets are constants inside the block (the vector tests read every field); an offset past
/// the end would read zeros rather than panic.
#[inline(always)]
fn field<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    b.get(at..)
        .and_then(|rest| rest.first_chunk::<N>())
        .copied()
        .unwrap_or([0; N])
}

/// `sum_i a_i * b_i` in f32, in order.
#[inline(always)]
fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

/// [`dot_f32`] of one block of 32.
#[inline(always)]
fn dot_f32_32(a: &[f32; 32], b: &[f32; 32]) -> f32 {
    dot_f32(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_unknown_ids_are_rejected() {
        for t in GgmlType::ALL {
            assert_eq!(GgmlType::from_u32(t as u32), Some(t));
            assert_eq!(GgmlType::parse(t.name()), Some(t));
        }
        assert_eq!(GgmlType::from_u32(4), None); // Q4_2, removed from ggml
        assert_eq!(GgmlType::from_u32(9), None); // Q8_1: activations only
        assert_eq!(GgmlType::parse("Q4K"), Some(GgmlType::Q4K));
    }

    #[test]
    fn row_bytes_needs_whole_blocks() {
        assert_eq!(GgmlType::Q4_0.row_bytes(64).unwrap(), 36);
        assert_eq!(GgmlType::Q6K.row_bytes(512).unwrap(), 420);
        assert!(GgmlType::Q4K.row_bytes(100).is_err());
    }
}
