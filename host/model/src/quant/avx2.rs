//! The AVX2 kernel of [`super::simd`]: weights held in `__m256i` registers (each type's
//! unpacking done with SIMD operations rather than `u128` lanes), `vpmaddubsw`/`vpmaddwd` dot
//! products. Only constructible once the CPU is known to have AVX2; equal to the scalar
//! kernel bit for bit (the tests in `simd.rs`).

use std::arch::x86_64::*;

use super::simd::{Kernel, hsum_sse2, reg};

/// AVX2: 16 bytes sign-extended to 16 `i16` in one register, `vpmaddwd`.
#[derive(Clone, Copy, Debug)]
pub struct Avx2(());

impl Avx2 {
    /// The AVX2 kernel, if this CPU has AVX2.
    #[inline]
    pub fn detect() -> Option<Avx2> {
        std::arch::is_x86_feature_detected!("avx2").then_some(Avx2(()))
    }
}

impl Kernel for Avx2 {
    type W = __m256i;

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

    #[inline(always)]
    fn weights(self, w: [u128; 2]) -> __m256i {
        // SAFETY: an `Avx2` exists only when `detect` found AVX2 on this CPU.
        unsafe { _mm256_set_m128i(reg(w[1]), reg(w[0])) }
    }

    #[inline(always)]
    fn q5_0_weights(self, qs: &[u8; 16], qh: u32) -> __m256i {
        // SAFETY: an `Avx2` exists only when `detect` found AVX2 on this CPU; `qs` is 16
        // readable bytes, loaded unaligned.
        unsafe {
            let v = _mm_loadu_si128(qs.as_ptr().cast::<__m128i>());
            let nib = _mm_set1_epi8(0x0F);
            let lo = _mm_and_si128(v, nib);
            let hi = _mm_and_si128(_mm_srli_epi16::<4>(v), nib);
            _mm256_or_si256(_mm256_set_m128i(hi, lo), bits_to_0x10(qh))
        }
    }

    #[inline(always)]
    fn nibbles16(self, b: &[u8; 16]) -> __m256i {
        // SAFETY: an `Avx2` exists only when `detect` found AVX2 on this CPU; `b` is 16
        // readable bytes, loaded unaligned.
        unsafe {
            let v = _mm_loadu_si128(b.as_ptr().cast::<__m128i>());
            let nib = _mm_set1_epi8(0x0F);
            let (lo, hi) = (
                _mm_and_si128(v, nib),
                _mm_and_si128(_mm_srli_epi16::<4>(v), nib),
            );
            _mm256_set_m128i(hi, lo)
        }
    }

    #[inline(always)]
    fn nibbles32(self, b: &[u8; 32]) -> [__m256i; 2] {
        // SAFETY: an `Avx2` exists only when `detect` found AVX2 on this CPU; `b` is 32
        // readable bytes, loaded unaligned.
        unsafe {
            let v = _mm256_loadu_si256(b.as_ptr().cast::<__m256i>());
            let nib = _mm256_set1_epi8(0x0F);
            [
                _mm256_and_si256(v, nib),
                _mm256_and_si256(_mm256_srli_epi16::<4>(v), nib),
            ]
        }
    }

    #[inline(always)]
    fn q6_k_weights<const LO: i32, const HI: i32>(self, ql: &[u8; 32], qh: &[u8; 32]) -> __m256i {
        // SAFETY: an `Avx2` exists only when `detect` found AVX2 on this CPU; `ql` and `qh`
        // are 32 readable bytes each, loaded unaligned. The 16-bit shifts move bits across
        // byte boundaries only into bits the masks then clear.
        unsafe {
            let l = _mm256_loadu_si256(ql.as_ptr().cast::<__m256i>());
            let h = _mm256_loadu_si256(qh.as_ptr().cast::<__m256i>());
            let lo = _mm256_and_si256(_mm256_srli_epi16::<LO>(l), _mm256_set1_epi8(0x0F));
            let hi = _mm256_and_si256(_mm256_srli_epi16::<HI>(h), _mm256_set1_epi8(0x03));
            let q = _mm256_or_si256(lo, _mm256_slli_epi16::<4>(hi));
            _mm256_sub_epi8(q, _mm256_set1_epi8(32))
        }
    }

    #[inline(always)]
    fn dot32_multi<const N: usize>(self, w: __m256i, x: &[[i8; 32]; N]) -> [i32; N] {
        // SAFETY: an `Avx2` exists only when `detect` found AVX2 on this CPU.
        unsafe { dot32_multi_avx2::<N, true>(w, [1, 1], x) }
    }

    #[inline(always)]
    fn dot32_multi_unsigned<const N: usize>(self, w: __m256i, x: &[[i8; 32]; N]) -> [i32; N] {
        // SAFETY: an `Avx2` exists only when `detect` found AVX2 on this CPU.
        unsafe { dot32_multi_avx2::<N, false>(w, [1, 1], x) }
    }

    #[inline(always)]
    fn dot16x2_scaled_multi<const N: usize>(
        self,
        w: __m256i,
        sc: [i32; 2],
        x: &[[i8; 32]; N],
    ) -> [i32; N] {
        // SAFETY: an `Avx2` exists only when `detect` found AVX2 on this CPU.
        unsafe { dot32_multi_avx2::<N, true>(w, sc.map(|s| s as i16), x) }
    }

    /// The sign moved onto the weights (`vpmaddubsw(|x|, sign(w, x))`), so that an activation
    /// of -128 (|x| = 128 is a valid unsigned byte) is exact too; `|w| <= 32` keeps
    /// `sign(w, x)` in range and a pair at most `2 * 128 * 32`.
    #[inline(always)]
    fn dot16x2_scaled_w(self, w: __m256i, sc: [i32; 2], x: &[i8; 32]) -> i32 {
        // SAFETY: an `Avx2` exists only when `detect` found AVX2 on this CPU; `x` is 32
        // readable bytes, loaded unaligned.
        unsafe {
            let x = _mm256_loadu_si256(x.as_ptr().cast::<__m256i>());
            let pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(x), _mm256_sign_epi8(w, x));
            let scales =
                _mm256_set_m128i(_mm_set1_epi16(sc[1] as i16), _mm_set1_epi16(sc[0] as i16));
            hsum_avx2(_mm256_madd_epi16(pairs, scales))
        }
    }
}

/// Byte `j` of the result is `0x10` where bit `j` of `bits` is set (Q5_0's fifth bits,
/// [`spread_bit4`] for all 32 at once): each byte gets the `bits` byte holding its bit, then a
/// compare against that bit's mask.
///
/// # Safety
/// The CPU must have AVX2 (only called from an [`Avx2`] kernel).
#[inline(always)]
unsafe fn bits_to_0x10(bits: u32) -> __m256i {
    // SAFETY: the caller's promise: AVX2 is present.
    unsafe {
        let v = _mm256_set1_epi32(bits as i32);
        // byte j takes byte j / 8 of `bits` (the shuffle stays within each 16-byte half, and
        // both halves hold all four bytes)
        let which = _mm256_setr_epi64x(
            0,
            0x0101_0101_0101_0101,
            0x0202_0202_0202_0202,
            0x0303_0303_0303_0303,
        );
        let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201_u64 as i64);
        let b = _mm256_and_si256(_mm256_shuffle_epi8(v, which), bit);
        _mm256_and_si256(_mm256_cmpeq_epi8(b, bit), _mm256_set1_epi8(0x10))
    }
}

/// For each activation block `x[t]`: `sc[0] * sum(w_lo * x_lo) + sc[1] * sum(w_hi * x_hi)`
/// (signed bytes; `w_lo` the low 16 bytes of `w`), as `vpmaddubsw(|w|, sign(x, w))` then
/// `vpmaddwd` by the scales. The `i16` pair sums cannot saturate: activations are in
/// `-127..=127` (the caller's promise), so a pair is at most `2 * 128 * 127`; with a scale
/// other than 1, `|w| <= 32` and `|sc| <= 128` keep each `i32` within range. Sums are exact,
/// so the result equals the scalar kernel's. Without `SIGNED` the weights must be in
/// `0..=127` and go to `vpmaddubsw` as they are.
///
/// # Safety
/// The CPU must have AVX2 (only called from an [`Avx2`] kernel).
#[inline(always)]
unsafe fn dot32_multi_avx2<const N: usize, const SIGNED: bool>(
    w: __m256i,
    sc: [i16; 2],
    x: &[[i8; 32]; N],
) -> [i32; N] {
    // SAFETY: the caller's promise: AVX2 is present. Each `x[t]` is 32 readable bytes and
    // `out[t..t + 8]` 32 writable bytes, accessed unaligned.
    unsafe {
        let abs_w = if SIGNED { _mm256_abs_epi8(w) } else { w };
        let scales = _mm256_set_m128i(_mm_set1_epi16(sc[1]), _mm_set1_epi16(sc[0]));
        let mut sums = [_mm256_setzero_si256(); N];
        for (s, x) in sums.iter_mut().zip(x) {
            let mut x = _mm256_loadu_si256(x.as_ptr().cast::<__m256i>());
            if SIGNED {
                x = _mm256_sign_epi8(x, w);
            }
            *s = _mm256_madd_epi16(_mm256_maddubs_epi16(abs_w, x), scales);
        }
        let mut out = [0i32; N];
        let mut t = 0;
        // eight blocks reduced together: three rounds of pairwise hadds leave each block's
        // two half sums in the two 128-bit halves, which one cross-half add joins in order
        while t + 8 <= N {
            let a = _mm256_hadd_epi32(sums[t], sums[t + 1]);
            let b = _mm256_hadd_epi32(sums[t + 2], sums[t + 3]);
            let c = _mm256_hadd_epi32(sums[t + 4], sums[t + 5]);
            let d = _mm256_hadd_epi32(sums[t + 6], sums[t + 7]);
            let (ab, cd) = (_mm256_hadd_epi32(a, b), _mm256_hadd_epi32(c, d));
            let r = _mm256_add_epi32(
                _mm256_permute2x128_si256::<0x20>(ab, cd),
                _mm256_permute2x128_si256::<0x31>(ab, cd),
            );
            _mm256_storeu_si256(out[t..t + 8].as_mut_ptr().cast::<__m256i>(), r);
            t += 8;
        }
        while t < N {
            out[t] = hsum_avx2(sums[t]);
            t += 1;
        }
        out
    }
}

/// Eight `i32` partial sums of the 16 byte products of `w` and `x`.
///
/// # Safety
/// The CPU must have AVX2 (only called from an [`Avx2`] kernel).
#[inline(always)]
unsafe fn madd16_avx2(w: u128, x: u128) -> __m256i {
    // SAFETY: the caller's promise: AVX2 is present.
    unsafe { _mm256_madd_epi16(_mm256_cvtepi8_epi16(reg(w)), _mm256_cvtepi8_epi16(reg(x))) }
}

/// The sum of eight `i32`s.
///
/// # Safety
/// The CPU must have AVX2 (only called from an [`Avx2`] kernel).
#[inline(always)]
unsafe fn hsum_avx2(v: __m256i) -> i32 {
    // SAFETY: the caller's promise: AVX2 is present.
    unsafe {
        hsum_sse2(_mm_add_epi32(
            _mm256_castsi256_si128(v),
            _mm256_extracti128_si256(v, 1),
        ))
    }
}
