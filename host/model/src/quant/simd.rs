//! The integer kernels of the fast dot product ([`super::dot_row_q8`]): sums of products of
//! signed bytes, 16 or 32 at a time.
//!
//! Weights arrive as 16-byte lanes in `u128`s: each type unpacks its bits with a few
//! whole-register operations (SWAR: `(v >> 4) & 0x0F0F..`) rather than byte by byte, which the
//! compiler does not vectorize; a kernel may hold them in registers of its own
//! ([`Kernel::W`]) and unpack the common layouts there (`q5_0_weights`, `nibbles16`, ...). Three
//! implementations of [`Kernel`] give identical results: [`Scalar`] (plain Rust, the
//! reference, any target), [`Sse2`] (x86-64 baseline) and [`Avx2`] (`avx2.rs`: `__m256i`
//! weights, only constructible once the CPU is known to have AVX2).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

#[cfg(target_arch = "x86_64")]
pub use super::avx2::Avx2;

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
    /// 32 weight bytes as the multi-token dots hold them (two lanes, or one AVX2 register).
    type W: Copy;

    /// `sum_i w_i * x_i` over the 16 bytes of one lane.
    fn dot16(self, w: u128, x: u128) -> i32;
    /// `sum_i w_i * x_i` over two lanes (32 bytes).
    fn dot32(self, w: [u128; 2], x: [u128; 2]) -> i32;

    /// Two lanes as a weight register.
    fn weights(self, w: [u128; 2]) -> Self::W;

    /// Q5_0's 32 weights in 0..=31 from its 16 nibble bytes and 32 high bits: weight `j < 16`
    /// is `(qs[j] & 15) | bit j of qh << 4`, weight `16 + j` takes the high nibble and bit
    /// `16 + j`.
    #[inline(always)]
    fn q5_0_weights(self, qs: &[u8; 16], qh: u32) -> Self::W {
        let v = lane(qs);
        self.weights([
            (v & LOW_NIBBLES) | spread_bit4(qh as u16),
            ((v >> 4) & LOW_NIBBLES) | spread_bit4((qh >> 16) as u16),
        ])
    }

    /// 16 bytes' low nibbles (weights 0..16), then their high nibbles (16..32), as one weight
    /// register (Q4_0's and Q4_1's blocks), values in 0..=15.
    #[inline(always)]
    fn nibbles16(self, b: &[u8; 16]) -> Self::W {
        let v = lane(b);
        self.weights([v & LOW_NIBBLES, (v >> 4) & LOW_NIBBLES])
    }

    /// The low and the high nibbles of 32 bytes as two weight registers (Q4_K's pairs of
    /// sub-blocks), values in 0..=15.
    #[inline(always)]
    fn nibbles32(self, b: &[u8; 32]) -> [Self::W; 2] {
        let v = lanes32(b);
        [
            self.weights(v.map(|v| v & LOW_NIBBLES)),
            self.weights(v.map(|v| (v >> 4) & LOW_NIBBLES)),
        ]
    }

    /// 32 of Q6_K's weights made signed: byte `i` is
    /// `((ql[i] >> LO) & 15 | ((qh[i] >> HI) & 3) << 4) - 32` as an `i8` in -32..=31.
    #[inline(always)]
    fn q6_k_weights<const LO: i32, const HI: i32>(self, ql: &[u8; 32], qh: &[u8; 32]) -> Self::W {
        self.weights(q6_k_lanes::<LO, HI>(ql, qh))
    }

    /// [`Kernel::dot32`] of one 32-byte weight block with each of `N` activation blocks
    /// (the multi-token path, `multi.rs`): the same integers, the weights prepared once.
    /// Activations must be in `-127..=127`.
    fn dot32_multi<const N: usize>(self, w: Self::W, x: &[[i8; 32]; N]) -> [i32; N];

    /// [`Kernel::dot32_multi_unsigned`] of one activation block (the one-token dots of the
    /// types whose weights a kernel unpacks in registers of its own). Any activations: the
    /// one-token path takes -128 too (from subnormal inputs), which the unsigned weights'
    /// pair sums (at most `2 * 127 * 128`) hold.
    #[inline(always)]
    fn dot32_w_unsigned(self, w: Self::W, x: &[i8; 32]) -> i32 {
        self.dot32_multi_unsigned(w, std::array::from_ref(x))[0]
    }

    /// [`Kernel::dot16x2_scaled_multi`] of one activation block, any activations (-128
    /// included, as the one-token path may have them).
    #[inline(always)]
    fn dot16x2_scaled_w(self, w: Self::W, sc: [i32; 2], x: &[i8; 32]) -> i32 {
        self.dot16x2_scaled_multi(w, sc, std::array::from_ref(x))[0]
    }

    /// [`Kernel::dot32_multi`] for weights known to be in `0..=127` (the unsigned 4- and
    /// 5-bit values), which need no sign handling: the same integers.
    #[inline(always)]
    fn dot32_multi_unsigned<const N: usize>(self, w: Self::W, x: &[[i8; 32]; N]) -> [i32; N] {
        self.dot32_multi(w, x)
    }

    /// `sc[0] * dot16(w_lo, x_lo) + sc[1] * dot16(w_hi, x_hi)` for each of `N` activation
    /// blocks (Q6_K's two scaled sub-blocks of 16). `|w| <= 32`, `sc` in `i8` range and
    /// activations in `-127..=127`.
    fn dot16x2_scaled_multi<const N: usize>(
        self,
        w: Self::W,
        sc: [i32; 2],
        x: &[[i8; 32]; N],
    ) -> [i32; N];
}

/// The two lanes of 32 bytes.
#[inline(always)]
fn lanes32(b: &[u8; 32]) -> [u128; 2] {
    let (lo, hi) = b.as_chunks::<16>().0.split_at(1);
    [lane(&lo[0]), lane(&hi[0])]
}

/// [`Kernel::q6_k_weights`] as two lanes.
#[inline(always)]
pub(super) fn q6_k_lanes<const LO: i32, const HI: i32>(ql: &[u8; 32], qh: &[u8; 32]) -> [u128; 2] {
    let (l, h) = (lanes32(ql), lanes32(qh));
    std::array::from_fn(|i| {
        let lo = (l[i] >> LO) & LOW_NIBBLES;
        minus_32(lo | (((h[i] >> HI) & LOW_2_BITS) << 4))
    })
}

/// Each byte `q` (6 bits, 0..=63) of a lane replaced by the `i8` `q - 32`: flip bit 5, and
/// where bit 5 was clear (the result is negative) set bits 6 and 7.
#[inline(always)]
fn minus_32(q: u128) -> u128 {
    let clear5 = ((q >> 5) & LOW_BITS) ^ LOW_BITS;
    q ^ (LOW_BITS << 5) ^ (clear5 << 7) ^ (clear5 << 6)
}

/// [`Kernel::dot32_multi`] from a lane kernel's `dot32`.
#[inline(always)]
fn dot32_multi_lanes<K: Kernel, const N: usize>(k: K, w: [u128; 2], x: &[[i8; 32]; N]) -> [i32; N] {
    std::array::from_fn(|t| k.dot32(w, act_lanes(&x[t])))
}

/// [`Kernel::dot16x2_scaled_multi`] from a lane kernel's `dot16`.
#[inline(always)]
fn dot16x2_scaled_multi_lanes<K: Kernel, const N: usize>(
    k: K,
    w: [u128; 2],
    sc: [i32; 2],
    x: &[[i8; 32]; N],
) -> [i32; N] {
    std::array::from_fn(|t| {
        let x = act_lanes(&x[t]);
        sc[0] * k.dot16(w[0], x[0]) + sc[1] * k.dot16(w[1], x[1])
    })
}

/// Plain Rust: the reference the SIMD kernels are tested against.
#[derive(Clone, Copy, Debug)]
pub struct Scalar;

impl Kernel for Scalar {
    type W = [u128; 2];

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

    #[inline(always)]
    fn weights(self, w: [u128; 2]) -> [u128; 2] {
        w
    }

    #[inline(always)]
    fn dot32_multi<const N: usize>(self, w: [u128; 2], x: &[[i8; 32]; N]) -> [i32; N] {
        dot32_multi_lanes(self, w, x)
    }

    #[inline(always)]
    fn dot16x2_scaled_multi<const N: usize>(
        self,
        w: [u128; 2],
        sc: [i32; 2],
        x: &[[i8; 32]; N],
    ) -> [i32; N] {
        dot16x2_scaled_multi_lanes(self, w, sc, x)
    }
}

/// SSE2, part of every x86-64 CPU: bytes sign-extended to `i16`, `pmaddwd`.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug)]
pub struct Sse2;

#[cfg(target_arch = "x86_64")]
impl Kernel for Sse2 {
    type W = [u128; 2];

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

    #[inline(always)]
    fn weights(self, w: [u128; 2]) -> [u128; 2] {
        w
    }

    #[inline(always)]
    fn dot32_multi<const N: usize>(self, w: [u128; 2], x: &[[i8; 32]; N]) -> [i32; N] {
        dot32_multi_lanes(self, w, x)
    }

    #[inline(always)]
    fn dot16x2_scaled_multi<const N: usize>(
        self,
        w: [u128; 2],
        sc: [i32; 2],
        x: &[[i8; 32]; N],
    ) -> [i32; N] {
        dot16x2_scaled_multi_lanes(self, w, sc, x)
    }
}

/// A lane as an SSE register.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "sse2")]
pub(super) fn reg(v: u128) -> __m128i {
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
pub(super) fn hsum_sse2(v: __m128i) -> i32 {
    let v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0b01_00_11_10));
    let v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0b10_11_00_01));
    _mm_cvtsi128_si32(v)
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
    fn multi_kernels_equal_the_scalar_one_at_the_extremes() {
        let mut r = lanes(7);
        let mut next = || r.next().unwrap_or(0);
        // activations in -127..=127 (as `QuantizedActs` makes them), with the extremes
        let act = |v: u128| v.to_le_bytes().map(|b| (b as i8).max(-127));
        for case in 0..300 {
            let mut x = [[0i8; 32]; 13];
            for (t, x) in x.iter_mut().enumerate() {
                let (lo, hi) = (act(next()), act(next()));
                x[..16].copy_from_slice(&lo);
                x[16..].copy_from_slice(&hi);
                if case % 3 == 0 {
                    *x = [if t % 2 == 0 { 127 } else { -127 }; 32];
                }
            }
            // any weight bytes, -128 included; Q6_K's are -32..=31 with i8 scales
            let mut w = [next(), next()];
            if case % 3 == 0 {
                w = [u128::from_ne_bytes([0x80; 16]); 2];
            }
            let w6 = w.map(|v| {
                u128::from_le_bytes(v.to_le_bytes().map(|b| ((b & 0x3F) as i8 - 32) as u8))
            });
            let sc = [(next() as i8).into(), -128];
            let want = Scalar.dot32_multi(w, &x);
            let wu = w.map(|v| v & u128::from_ne_bytes([0x7F; 16]));
            let want_u = Scalar.dot32_multi(wu, &x);
            let want6 = Scalar.dot16x2_scaled_multi(w6, sc, &x);
            #[cfg(target_arch = "x86_64")]
            if let Some(avx2) = Avx2::detect() {
                assert_eq!(avx2.dot32_multi(avx2.weights(w), &x), want);
                assert_eq!(avx2.dot32_multi_unsigned(avx2.weights(wu), &x), want_u);
                let w6_lanes = w6;
                let w6 = avx2.weights(w6);
                assert_eq!(avx2.dot16x2_scaled_multi(w6, sc, &x), want6);
                // one block at a time, -128 included (the one-token path may have it)
                let mut raw = [0i8; 32];
                raw[..16].copy_from_slice(&next().to_le_bytes().map(|b| b as i8));
                raw[16..].copy_from_slice(&next().to_le_bytes().map(|b| b as i8));
                raw[case % 32] = i8::MIN;
                let one = std::array::from_ref(&raw);
                let want_w = Scalar.dot16x2_scaled_multi(w6_lanes, sc, one)[0];
                assert_eq!(avx2.dot16x2_scaled_w(w6, sc, &raw), want_w);
                let want_wu = Scalar.dot32_multi(wu, one)[0];
                assert_eq!(avx2.dot32_w_unsigned(avx2.weights(wu), &raw), want_wu);
            }
            let _ = (want, want6, want_u);
        }
    }

    #[test]
    fn avx2_weight_unpacking_equals_the_lane_one() {
        let mut r = lanes(11);
        let mut next = || r.next().unwrap_or(0);
        for case in 0..300 {
            let bytes32 = |a: u128, b: u128| {
                let mut v = [0u8; 32];
                v[..16].copy_from_slice(&a.to_le_bytes());
                v[16..].copy_from_slice(&b.to_le_bytes());
                v
            };
            let (qs, qh) = (next().to_le_bytes(), next() as u32);
            let qh = [qh, 0, u32::MAX, 0x8000_0001][case % 4];
            let (ql, h) = (bytes32(next(), next()), bytes32(next(), next()));
            let want5 = Scalar.q5_0_weights(&qs, qh);
            let want6 = [
                Scalar.q6_k_weights::<0, 0>(&ql, &h),
                Scalar.q6_k_weights::<0, 2>(&ql, &h),
                Scalar.q6_k_weights::<4, 4>(&ql, &h),
                Scalar.q6_k_weights::<4, 6>(&ql, &h),
            ];
            // the lane forms: Q5_0 values in 0..=31, Q6_K's in -32..=31
            assert!(
                want5
                    .iter()
                    .all(|l| l.to_le_bytes().iter().all(|&b| b < 32))
            );
            for w in want6.iter().flatten() {
                assert!(
                    w.to_le_bytes()
                        .iter()
                        .all(|&b| (-32..32).contains(&(b as i8)))
                );
            }
            #[cfg(target_arch = "x86_64")]
            if let Some(avx2) = Avx2::detect() {
                let bytes = |v: __m256i| {
                    let mut out = [0u8; 32];
                    // SAFETY: `out` is 32 writable bytes.
                    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast::<__m256i>(), v) };
                    out
                };
                assert_eq!(
                    bytes(avx2.q5_0_weights(&qs, qh)),
                    bytes32(want5[0], want5[1])
                );
                let w4 = Scalar.nibbles16(&qs);
                assert_eq!(bytes(avx2.nibbles16(&qs)), bytes32(w4[0], w4[1]));
                let (got4, want4) = (avx2.nibbles32(&ql), Scalar.nibbles32(&ql));
                for (g, w) in got4.into_iter().zip(want4) {
                    assert_eq!(bytes(g), bytes32(w[0], w[1]));
                }
                let got6 = [
                    avx2.q6_k_weights::<0, 0>(&ql, &h),
                    avx2.q6_k_weights::<0, 2>(&ql, &h),
                    avx2.q6_k_weights::<4, 4>(&ql, &h),
                    avx2.q6_k_weights::<4, 6>(&ql, &h),
                ];
                for (g, w) in got6.into_iter().zip(want6) {
                    assert_eq!(bytes(g), bytes32(w[0], w[1]));
                }
            }
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
