//! The integer kernels of the fast dot product ([`super::dot_row_q8`]): sums of products of
//! signed bytes, 16 or 32 at a time.
//!
//! Weights arrive as 16-byte lanes in `u128`s: each type unpacks its bits with a few
//! whole-register operations (SWAR: `(v >> 4) & 0x0F0F..`) rather than byte by byte, which the
//! compiler does not vectorize. Three implementations of [`Kernel`] give identical results:
//! [`Scalar`] (plain Rust, the reference, any target), [`Sse2`] (x86-64 baseline) and [`Avx2`]
//! (only constructible once the CPU is known to have AVX2).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Each byte `0x0F`: the low nibble of every byte of a lane.
pub(super) const LOW_NIBBLES: u128 = u128::from_ne_bytes([0x0F; 16]);
/// Each byte `0x01`.
pub(super) const LOW_BITS: u128 = u128::from_ne_bytes([0x01; 16]);
/// Each byte `0x03`.
pub(super) const LOW_2_BITS: u128 = u128::from_ne_bytes([0x03; 16]);

/// 16 bytes as one little-endian lane (byte `i` in bits `8i..8i+8`).
#[inline(always)]
pub(super) fn lane(b: &[u8; 16]) -> u128 {
    u128::from_le_bytes(*b)
}

/// The two lanes of a block of 32 quantized activations.
#[inline(always)]
pub(super) fn act_lanes(x: &[i8; 32]) -> [u128; 2] {
    let (lo, hi) = x.as_chunks::<16>().0.split_at(1);
    [lane(&lo[0].map(|v| v as u8)), lane(&hi[0].map(|v| v as u8))]
}

/// Byte `i` of the result is `0x10` where bit `i` of `bits` is set: the fifth bit of 16
/// 5-bit weights (Q5_0/Q5_1's `qh`), spread into the weights' bytes.
#[inline(always)]
pub(super) fn spread_bit4(bits: u16) -> u128 {
    u128::from(SPREAD[usize::from(bits & 0xFF)])
        | (u128::from(SPREAD[usize::from(bits >> 8)]) << 64)
}

/// `SPREAD[b]` has `0x10` in byte `i` where bit `i` of `b` is set.
static SPREAD: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut b = 0;
    while b < 256 {
        let mut i = 0;
        while i < 8 {
            if b & (1 << i) != 0 {
                t[b] |= 0x10 << (8 * i);
            }
            i += 1;
        }
        b += 1;
    }
    t
};

/// Signed-byte dot products on lanes (bytes of `w` and `x` read as `i8`).
pub(super) trait Kernel: Copy {
    /// `sum_i w_i * x_i` over the 16 bytes of one lane.
    fn dot16(self, w: u128, x: u128) -> i32;
    /// `sum_i w_i * x_i` over two lanes (32 bytes).
    fn dot32(self, w: [u128; 2], x: [u128; 2]) -> i32;
}

/// Plain Rust: the reference the SIMD kernels are tested against.
#[derive(Clone, Copy, Debug)]
pub struct Scalar;

impl Kernel for Scalar {
    #[inline(always)]
    fn dot16(self, w: u128, x: u128) -> i32 {
        w.to_le_bytes()
            .iter()
            .zip(x.to_le_bytes())
            .map(|(&a, b)| i32::from(a as i8) * i32::from(b as i8))
            .sum()
    }

    #[inline(always)]
    fn dot32(self, w: [u128; 2], x: [u128; 2]) -> i32 {
        self.dot16(w[0], x[0]) + self.dot16(w[1], x[1])
    }
}

/// SSE2, part of every x86-64 CPU: bytes sign-extended to `i16`, `pmaddwd`.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug)]
pub struct Sse2;

#[cfg(target_arch = "x86_64")]
impl Kernel for Sse2 {
    #[inline(always)]
    fn dot16(self, w: u128, x: u128) -> i32 {
        // SAFETY: SSE2 is part of the x86-64 baseline: every x86_64 CPU has it.
        unsafe { hsum_sse2(madd16_sse2(w, x)) }
    }

    #[inline(always)]
    fn dot32(self, w: [u128; 2], x: [u128; 2]) -> i32 {
        // SAFETY: SSE2 is part of the x86-64 baseline: every x86_64 CPU has it.
        unsafe {
            hsum_sse2(_mm_add_epi32(
                madd16_sse2(w[0], x[0]),
                madd16_sse2(w[1], x[1]),
            ))
        }
    }
}

/// AVX2: 16 bytes sign-extended to 16 `i16` in one register, `vpmaddwd`.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug)]
pub struct Avx2(());

#[cfg(target_arch = "x86_64")]
impl Avx2 {
    /// The AVX2 kernel, if this CPU has AVX2.
    #[inline]
    pub fn detect() -> Option<Avx2> {
        std::arch::is_x86_feature_detected!("avx2").then_some(Avx2(()))
    }
}

#[cfg(target_arch = "x86_64")]
impl Kernel for Avx2 {
    #[inline(always)]
    fn dot16(self, w: u128, x: u128) -> i32 {
        // SAFETY: an `Avx2` exists only when `detect` found AVX2 on this CPU.
        unsafe { hsum_avx2(madd16_avx2(w, x)) }
    }

    #[inline(always)]
    fn dot32(self, w: [u128; 2], x: [u128; 2]) -> i32 {
        // SAFETY: an `Avx2` exists only when `detect` found AVX2 on this CPU.
        unsafe {
            hsum_avx2(_mm256_add_epi32(
                madd16_avx2(w[0], x[0]),
                madd16_avx2(w[1], x[1]),
            ))
        }
    }
}

/// A lane as an SSE register.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "sse2")]
fn reg(v: u128) -> __m128i {
    _mm_set_epi64x((v >> 64) as i64, v as i64)
}

/// Four `i32` partial sums of the 16 byte products of `w` and `x`.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "sse2")]
fn madd16_sse2(w: u128, x: u128) -> __m128i {
    let (w, x) = (reg(w), reg(x));
    let zero = _mm_setzero_si128();
    // sign bytes: interleaving a byte with its sign byte sign-extends it to i16
    let (sw, sx) = (_mm_cmpgt_epi8(zero, w), _mm_cmpgt_epi8(zero, x));
    let lo = _mm_madd_epi16(_mm_unpacklo_epi8(w, sw), _mm_unpacklo_epi8(x, sx));
    let hi = _mm_madd_epi16(_mm_unpackhi_epi8(w, sw), _mm_unpackhi_epi8(x, sx));
    _mm_add_epi32(lo, hi)
}

/// The sum of four `i32`s.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "sse2")]
fn hsum_sse2(v: __m128i) -> i32 {
    let v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0b01_00_11_10));
    let v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0b10_11_00_01));
    _mm_cvtsi128_si32(v)
}

/// Eight `i32` partial sums of the 16 byte products of `w` and `x`.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
fn madd16_avx2(w: u128, x: u128) -> __m256i {
    _mm256_madd_epi16(_mm256_cvtepi8_epi16(reg(w)), _mm256_cvtepi8_epi16(reg(x)))
}

/// The sum of eight `i32`s.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
fn hsum_avx2(v: __m256i) -> i32 {
    hsum_sse2(_mm_add_epi32(
        _mm256_castsi256_si128(v),
        _mm256_extracti128_si256(v, 1),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lanes(seed: u64) -> impl Iterator<Item = u128> {
        let mut s = seed | 1;
        std::iter::repeat_with(move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let a = s;
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (u128::from(a) << 64) | u128::from(s)
        })
    }

    #[test]
    fn scalar_kernel_is_a_signed_byte_dot() {
        let w = u128::from_le_bytes([0x80, 0x7F, 0xFF, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        let x = u128::from_le_bytes([0x80, 0x7F, 3, 5, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 0x81]);
        assert_eq!(Scalar.dot16(w, x), 128 * 128 + 127 * 127 - 3 + 5 - 2 * 127);
    }

    #[test]
    fn simd_kernels_equal_the_scalar_one() {
        let mut r = lanes(42);
        let mut next = || r.next().unwrap_or(0);
        let extremes = [
            0u128,
            u128::MAX,
            u128::from_ne_bytes([0x80; 16]),
            u128::from_ne_bytes([0x7F; 16]),
        ];
        let mut cases: Vec<(u128, u128)> = (0..1000).map(|_| (next(), next())).collect();
        for a in extremes {
            for b in extremes {
                cases.push((a, b));
            }
        }
        for (w, x) in cases {
            let want = Scalar.dot16(w, x);
            #[cfg(target_arch = "x86_64")]
            {
                assert_eq!(Sse2.dot16(w, x), want);
                assert_eq!(Sse2.dot32([w, x], [x, w]), Scalar.dot32([w, x], [x, w]));
                if let Some(avx2) = Avx2::detect() {
                    assert_eq!(avx2.dot16(w, x), want);
                    assert_eq!(avx2.dot32([w, x], [x, w]), Scalar.dot32([w, x], [x, w]));
                }
            }
            let _ = want;
        }
    }

    #[test]
    fn spread_puts_bit_i_into_byte_i() {
        for i in 0..16 {
            let v = spread_bit4(1 << i).to_le_bytes();
            for (j, b) in v.iter().enumerate() {
                assert_eq!(*b, if i == j { 0x10 } else { 0 });
            }
        }
    }
}
