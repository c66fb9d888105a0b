//! The multi-token fast dot product ([`super::dot_rows_q8`]): one weight row against a tile of
//! quantized activation rows. Each weight block is read and unpacked (nibbles to bytes, block
//! scales f16 to f32) once per tile instead of once per token, so a prefill or a batched decode
//! step does that work `n_tok / TILE` times rather than `n_tok` times.
//!
//! Per token the integer sums and the f32 operations (and their order) are exactly those of
//! each type's single-token `dot_q8`, so every result equals [`super::dot_row_q8`] bit for bit;
//! the test below checks it for every type on random data. Types without a multi-token kernel
//! (the float types, Q5_1, Q5_K) fall back to the single-token dot.

use super::float::f16_to_f32;
use super::mxfp4::{self, BlockMxfp4, e8m0_to_f32_half};
use super::q4_k::{QK_K, scale_min};
use super::q8_act::QuantizedActs;
use super::simd::{Kernel, lane};
use super::{BlockQ4_0, BlockQ4_1, BlockQ4K, BlockQ5_0, BlockQ6K, BlockQ8_0, GgmlType};

/// Tokens whose activations one pass over a weight row serves.
pub const TILE: usize = 8;

/// The quantized activations of up to [`TILE`] tokens, interleaved per block so that a weight
/// block meets all of them at once: block `i` of token `t` is `qs[i][t]`, its scale `d[i][t]`.
/// A tile of fewer tokens is padded with zero blocks, whose results are dropped.
#[derive(Debug)]
pub struct ActsTile<'a> {
    /// (n) the tokens' rows as given, for the types without a multi-token kernel.
    acts: &'a [QuantizedActs],
    /// (blocks, TILE) per block `d = max|x| / 127`.
    d: Vec<[f32; TILE]>,
    /// (blocks, TILE) per block `d * sum(qs)`.
    s: Vec<[f32; TILE]>,
    /// (blocks, TILE) per block `sum(qs)`.
    sum: Vec<[i32; TILE]>,
    /// (blocks, TILE, 32) the quantized values.
    qs: Vec<[[i8; 32]; TILE]>,
    /// Whether a value is -128 (only from subnormal inputs, whose scale rounds): the AVX2
    /// kernel's `i16` pair sums hold `2 * 128 * 127` but not `2 * 128 * 128`, so such a tile
    /// takes the single-token dots.
    has_min: bool,
}

impl<'a> ActsTile<'a> {
    /// The tile of `acts` (at most [`TILE`] rows; rows of unequal length are cut to the
    /// shortest, as the single-token dots sum only the blocks both sides have).
    pub fn new(acts: &'a [QuantizedActs]) -> ActsTile<'a> {
        assert!(acts.len() <= TILE, "a tile holds at most {TILE} tokens");
        let blocks = acts.iter().map(|a| a.qs.len()).min().unwrap_or(0);
        let mut tile = ActsTile {
            acts,
            d: vec![[0.0; TILE]; blocks],
            s: vec![[0.0; TILE]; blocks],
            sum: vec![[0; TILE]; blocks],
            qs: vec![[[0; 32]; TILE]; blocks],
            has_min: false,
        };
        for (t, a) in acts.iter().enumerate() {
            for i in 0..blocks {
                tile.d[i][t] = a.d[i];
                tile.s[i][t] = a.s[i];
                tile.sum[i][t] = a.sum[i];
                tile.qs[i][t] = a.qs[i];
            }
            tile.has_min |= a.qs.iter().flatten().any(|&q| q == i8::MIN);
        }
        tile
    }

    /// Tokens in the tile.
    pub fn len(&self) -> usize {
        self.acts.len()
    }

    /// Whether the tile holds no token.
    pub fn is_empty(&self) -> bool {
        self.acts.is_empty()
    }
}

/// [`super::dot_rows_q8`] with kernel `k`: `out[t]` for the tile's token `t`.
#[inline(always)]
pub(super) fn dot_rows_q8_with<K: Kernel>(
    k: K,
    ty: GgmlType,
    row: &[u8],
    tile: &ActsTile<'_>,
    out: &mut [f32],
) {
    if tile.has_min {
        for (o, a) in out.iter_mut().zip(tile.acts) {
            *o = super::dot_row_q8_with(k, ty, row, a);
        }
        return;
    }
    let all = match ty {
        GgmlType::Q4_0 => q4_0(k, row, tile),
        GgmlType::Q4_1 => q4_1(k, row, tile),
        GgmlType::Q5_0 => q5_0(k, row, tile),
        GgmlType::Q8_0 => q8_0(k, row, tile),
        GgmlType::Q4K => q4_k(k, row, tile),
        GgmlType::Q6K => q6_k(k, row, tile),
        GgmlType::Mxfp4 => mxfp4_blocks(k, row, tile),
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 | GgmlType::Q5_1 | GgmlType::Q5K => {
            for (o, a) in out.iter_mut().zip(tile.acts) {
                *o = super::dot_row_q8_with(k, ty, row, a);
            }
            return;
        }
    };
    for (o, v) in out.iter_mut().zip(&all[..tile.len()]) {
        *o = *v;
    }
}

/// The blocks of `row` (of `BYTES` each, `per_block` activation blocks each) that the tile's
/// activations cover.
#[inline(always)]
fn blocks<'r, const BYTES: usize>(
    row: &'r [u8],
    tile: &ActsTile<'_>,
    per_block: usize,
) -> &'r [[u8; BYTES]] {
    let b = row.as_chunks::<BYTES>().0;
    &b[..b.len().min(tile.qs.len() / per_block)]
}

/// Q4_0 ([`super::q4_0`]'s `dot_q8`): per block `d * dx * (sum(q * qx) - 8 * sum(qx))`.
#[inline(always)]
fn q4_0<K: Kernel>(k: K, row: &[u8], x: &ActsTile<'_>) -> [f32; TILE] {
    let mut acc = [0.0f32; TILE];
    for (i, b) in blocks::<{ BlockQ4_0::BYTES }>(row, x, 1).iter().enumerate() {
        let b = BlockQ4_0::from_bytes(b);
        let w = k.nibbles16(&b.qs);
        let d = f16_to_f32(b.d);
        let dots = k.dot32_multi_unsigned(w, &x.qs[i]);
        let (dx, sum) = (&x.d[i], &x.sum[i]);
        for t in 0..TILE {
            let isum = dots[t] - 8 * sum[t];
            acc[t] += d * dx[t] * isum as f32;
        }
    }
    acc
}

/// Q4_1 ([`super::q4_1`]'s `dot_q8`): per block `d * dx * sum(q * qx) + m * dx * sum(qx)`.
#[inline(always)]
fn q4_1<K: Kernel>(k: K, row: &[u8], x: &ActsTile<'_>) -> [f32; TILE] {
    let mut acc = [0.0f32; TILE];
    for (i, b) in blocks::<{ BlockQ4_1::BYTES }>(row, x, 1).iter().enumerate() {
        let b = BlockQ4_1::from_bytes(b);
        let w = k.nibbles16(&b.qs);
        let (d, m) = (f16_to_f32(b.d), f16_to_f32(b.m));
        let dots = k.dot32_multi_unsigned(w, &x.qs[i]);
        let (dx, sx) = (&x.d[i], &x.s[i]);
        for t in 0..TILE {
            acc[t] += d * dx[t] * dots[t] as f32 + m * sx[t];
        }
    }
    acc
}

/// Q5_0 ([`super::q5_0`]'s `dot_q8`): per block `d * dx * (sum(q * qx) - 16 * sum(qx))`.
#[inline(always)]
fn q5_0<K: Kernel>(k: K, row: &[u8], x: &ActsTile<'_>) -> [f32; TILE] {
    let mut acc = [0.0f32; TILE];
    for (i, b) in blocks::<{ BlockQ5_0::BYTES }>(row, x, 1).iter().enumerate() {
        let b = BlockQ5_0::from_bytes(b);
        let w = k.q5_0_weights(&b.qs, u32::from_le_bytes(b.qh));
        let d = f16_to_f32(b.d);
        let dots = k.dot32_multi_unsigned(w, &x.qs[i]);
        let (dx, sum) = (&x.d[i], &x.sum[i]);
        for t in 0..TILE {
            let isum = dots[t] - 16 * sum[t];
            acc[t] += d * dx[t] * isum as f32;
        }
    }
    acc
}

/// Q8_0 ([`super::q8_0`]'s `dot_q8`): per block `d * dx * sum(q * qx)`.
#[inline(always)]
fn q8_0<K: Kernel>(k: K, row: &[u8], x: &ActsTile<'_>) -> [f32; TILE] {
    let mut acc = [0.0f32; TILE];
    for (i, b) in blocks::<{ BlockQ8_0::BYTES }>(row, x, 1).iter().enumerate() {
        let b = BlockQ8_0::from_bytes(b);
        let (lo, hi) = b.qs.as_chunks::<16>().0.split_at(1);
        let w = k.weights([lane(&lo[0]), lane(&hi[0])]);
        let d = f16_to_f32(b.d);
        let dots = k.dot32_multi(w, &x.qs[i]);
        let dx = &x.d[i];
        for t in 0..TILE {
            acc[t] += d * dx[t] * dots[t] as f32;
        }
    }
    acc
}

/// MXFP4 ([`super::mxfp4`]'s `dot_q8`): per block `d * dx * sum(kvalues[q] * qx)`.
#[inline(always)]
fn mxfp4_blocks<K: Kernel>(k: K, row: &[u8], x: &ActsTile<'_>) -> [f32; TILE] {
    let mut acc = [0.0f32; TILE];
    for (i, b) in blocks::<{ BlockMxfp4::BYTES }>(row, x, 1)
        .iter()
        .enumerate()
    {
        let b = BlockMxfp4::from_bytes(b);
        let d = e8m0_to_f32_half(b.e);
        let dots = k.dot32_multi(k.weights(mxfp4::lanes(&b)), &x.qs[i]);
        let dx = &x.d[i];
        for t in 0..TILE {
            acc[t] += d * dx[t] * dots[t] as f32;
        }
    }
    acc
}

/// Q4_K ([`super::q4_k`]'s `dot_q8`): per sub-block of 32
/// `d * sc * dx * sum(q * qx) - dmin * m * dx * sum(qx)`.
#[inline(always)]
fn q4_k<K: Kernel>(k: K, row: &[u8], x: &ActsTile<'_>) -> [f32; TILE] {
    const SUBS: usize = QK_K / 32;
    let mut acc = [0.0f32; TILE];
    for (i, b) in blocks::<{ BlockQ4K::BYTES }>(row, x, SUBS)
        .iter()
        .enumerate()
    {
        let b = BlockQ4K::from_bytes(b);
        let (d, dmin) = (f16_to_f32(b.d), f16_to_f32(b.dmin));
        let scales: [(u8, u8); SUBS] = std::array::from_fn(|j| scale_min(j, &b.scales));
        let chunks: &[[u8; 32]] = b.qs.as_chunks().0;
        for (c, chunk) in chunks.iter().enumerate() {
            for (h, w) in k.nibbles32(chunk).into_iter().enumerate() {
                let j = 2 * c + h;
                let (sc, m) = (d * f32::from(scales[j].0), dmin * f32::from(scales[j].1));
                let xj = SUBS * i + j;
                let dots = k.dot32_multi_unsigned(w, &x.qs[xj]);
                let (dx, sx) = (&x.d[xj], &x.s[xj]);
                for t in 0..TILE {
                    acc[t] += sc * dx[t] * dots[t] as f32 - m * sx[t];
                }
            }
        }
    }
    acc
}

/// Q6_K ([`super::q6_k`]'s `dot_q8`): per group of 32
/// `d * dx * (sc_lo * sum_lo(q * qx) + sc_hi * sum_hi(q * qx))`.
#[inline(always)]
fn q6_k<K: Kernel>(k: K, row: &[u8], x: &ActsTile<'_>) -> [f32; TILE] {
    const GROUPS: usize = QK_K / 32;
    let mut acc = [0.0f32; TILE];
    for (i, b) in blocks::<{ BlockQ6K::BYTES }>(row, x, GROUPS)
        .iter()
        .enumerate()
    {
        let b = BlockQ6K::from_bytes(b);
        let d = f16_to_f32(b.d);
        let ql: &[[u8; 32]] = b.ql.as_chunks().0;
        let qh: &[[u8; 32]] = b.qh.as_chunks().0;
        for n in 0..2 {
            // group 4n + k4: the low nibbles of ql[2n + k4 % 2] (shifted by 4 for k4 >= 2) and
            // bits 2 k4.. of qh[n]
            let (l, h) = ((&ql[2 * n], &ql[2 * n + 1]), &qh[n]);
            let w = [
                k.q6_k_weights::<0, 0>(l.0, h),
                k.q6_k_weights::<0, 2>(l.1, h),
                k.q6_k_weights::<4, 4>(l.0, h),
                k.q6_k_weights::<4, 6>(l.1, h),
            ];
            for (k4, w) in w.into_iter().enumerate() {
                let g = 4 * n + k4;
                let sc_lo = i32::from(b.scales[2 * g] as i8);
                let sc_hi = i32::from(b.scales[2 * g + 1] as i8);
                let xg = GROUPS * i + g;
                let dots = k.dot16x2_scaled_multi(w, [sc_lo, sc_hi], &x.qs[xg]);
                let dx = &x.d[xg];
                for t in 0..TILE {
                    acc[t] += d * dx[t] * dots[t] as f32;
                }
            }
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::super::{dot_row_q8, dot_rows_q8, quantize_row};
    use super::*;

    /// Uniform values in -1..1 from a xorshift seed.
    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    #[test]
    fn multi_token_dots_equal_single_token_dots_bit_for_bit() {
        let cols = 512;
        for ty in GgmlType::ALL {
            let row = quantize_row(ty, &random(cols, ty as u64 + 7)).unwrap();
            // 19 tokens: two full tiles, then a ragged tail; every shorter count gives the
            // other tails; an all-zero row checks zero scales.
            let mut acts: Vec<QuantizedActs> = (0..18)
                .map(|t| QuantizedActs::new(&random(cols, 100 + t)).unwrap())
                .collect();
            acts.push(QuantizedActs::new(&vec![0.0; cols]).unwrap());
            // a -128 (which only subnormal inputs give) sends its tile to the one-token dots
            acts[17].qs[3][5] = i8::MIN;
            for n in 1..=acts.len() {
                let want: Vec<u32> = acts[..n]
                    .iter()
                    .map(|a| dot_row_q8(ty, &row, a).to_bits())
                    .collect();
                let mut out = vec![f32::NAN; n];
                for (a, o) in acts[..n].chunks(TILE).zip(out.chunks_mut(TILE)) {
                    let tile = ActsTile::new(a);
                    dot_rows_q8(ty, &row, &tile, o);
                    let mut scalar = vec![f32::NAN; a.len()];
                    dot_rows_q8_with(super::super::simd::Scalar, ty, &row, &tile, &mut scalar);
                    assert_eq!(scalar, o, "{ty:?} n={n} scalar");
                    #[cfg(target_arch = "x86_64")]
                    {
                        let mut sse2 = vec![f32::NAN; a.len()];
                        dot_rows_q8_with(super::super::simd::Sse2, ty, &row, &tile, &mut sse2);
                        assert_eq!(sse2, o, "{ty:?} n={n} sse2");
                    }
                }
                let got: Vec<u32> = out.iter().map(|o| o.to_bits()).collect();
                assert_eq!(got, want, "{ty:?} n={n}");
            }
        }
    }
}
