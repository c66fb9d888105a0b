//! The KV cache's storage types (`--kv-type`): how one row of keys or values (one layer, one
//! position, `kv_dim` values) is kept, on both backends.
//!
//! - `f32`: the values as computed (4 bytes each).
//! - `f16` (the default, as llama.cpp): rounded to the nearest half, ties to even (2 bytes).
//! - `q8_0`: ggml's Q8_0 rule on blocks of 32 values (`d = amax / 127`, `q = round(x / d)`),
//!   laid out for the GPU's aligned loads: the row's `kv_dim` int8 quants, then its
//!   `kv_dim / 32` f16 scales, the row padded to a multiple of 16 bytes
//!   (`kv_dim + kv_dim / 16` rounded up: 1,088 bytes for Llama 3 8B's 1,024).
//!
//! Reading a row back is exact in f32 (a half is an f32; a scale times an int8 fits f32's
//! mantissa), so a stored row has one f32 value whichever backend or kernel reads it, and the
//! attention's canonical reduction runs over those values unchanged. The CUDA kernels
//! (`cuda/kernels/attention.cu`, `rope.cu`) store and load the same bytes; their tests compare
//! against [`KvType::store_row`] and [`KvType::load_row`].

use std::fmt;
use std::str::FromStr;

use crate::quant::f16_to_f32;
use orcd_device::EngineError;

/// Values per Q8_0 block.
pub const KV_Q8_BLOCK: usize = 32;

/// How the KV cache keeps its rows.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum KvType {
    F32,
    #[default]
    F16,
    Q8_0,
}

impl KvType {
    /// Every type, in the order the CLI lists them.
    pub const ALL: [KvType; 3] = [KvType::F16, KvType::Q8_0, KvType::F32];

    /// The name the CLI and `/health` use.
    pub fn name(self) -> &'static str {
        match self {
            KvType::F32 => "f32",
            KvType::F16 => "f16",
            KvType::Q8_0 => "q8_0",
        }
    }

    /// Bytes of one row of `kv_dim` values (one layer's keys, or values, at one position).
    pub fn row_bytes(self, kv_dim: usize) -> usize {
        match self {
            KvType::F32 => 4 * kv_dim,
            KvType::F16 => 2 * kv_dim,
            KvType::Q8_0 => (kv_dim + 2 * kv_dim / KV_Q8_BLOCK).next_multiple_of(16),
        }
    }

    /// Bytes one cached position takes over `n_layers` layers (keys and values).
    pub fn bytes_per_token(self, n_layers: usize, kv_dim: usize) -> usize {
        2 * n_layers * self.row_bytes(kv_dim)
    }

    /// Whether rows of `kv_dim` values can be kept in this type: Q8_0 needs whole blocks.
    pub fn check(self, kv_dim: usize) -> Result<(), EngineError> {
        if self == KvType::Q8_0 && !kv_dim.is_multiple_of(KV_Q8_BLOCK) {
            return Err(EngineError::InvalidInput(format!(
                "--kv-type q8_0 needs a KV row of whole 32-value blocks; this model's is {kv_dim}"
            )));
        }
        Ok(())
    }

    /// Store `src (kv_dim)` into `dst (row_bytes(kv_dim))`.
    pub fn store_row(self, src: &[f32], dst: &mut [u8]) {
        debug_assert_eq!(dst.len(), self.row_bytes(src.len()));
        match self {
            KvType::F32 => {
                for (d, &v) in dst.as_chunks_mut::<4>().0.iter_mut().zip(src) {
                    *d = v.to_le_bytes();
                }
            }
            KvType::F16 => {
                for (d, &v) in dst.as_chunks_mut::<2>().0.iter_mut().zip(src) {
                    *d = half::f16::from_f32(v).to_le_bytes();
                }
            }
            KvType::Q8_0 => {
                let n = src.len();
                let (qs, rest) = dst.split_at_mut(n);
                let scales = rest.as_chunks_mut::<2>().0;
                for ((x, q), d) in src
                    .chunks(KV_Q8_BLOCK)
                    .zip(qs.chunks_mut(KV_Q8_BLOCK))
                    .zip(scales.iter_mut())
                {
                    let (scale, quants) = q8_block(x);
                    *d = half::f16::from_f32(scale).to_le_bytes();
                    for (o, v) in q.iter_mut().zip(quants) {
                        *o = v as u8;
                    }
                }
            }
        }
    }

    /// Read `src (row_bytes(kv_dim))` back into `dst (kv_dim)`, exactly.
    pub fn load_row(self, src: &[u8], dst: &mut [f32]) {
        debug_assert_eq!(src.len(), self.row_bytes(dst.len()));
        match self {
            KvType::F32 => {
                for (d, b) in dst.iter_mut().zip(src.as_chunks::<4>().0) {
                    *d = f32::from_le_bytes(*b);
                }
            }
            KvType::F16 => {
                for (d, b) in dst.iter_mut().zip(src.as_chunks::<2>().0) {
                    *d = f16_to_f32(*b);
                }
            }
            KvType::Q8_0 => {
                let n = dst.len();
                let (qs, rest) = src.split_at(n);
                let scales = rest.as_chunks::<2>().0;
                for ((d, q), s) in dst
                    .chunks_mut(KV_Q8_BLOCK)
                    .zip(qs.chunks(KV_Q8_BLOCK))
                    .zip(scales)
                {
                    let scale = f16_to_f32(*s);
                    for (o, &v) in d.iter_mut().zip(q) {
                        *o = scale * f32::from(v as i8);
                    }
                }
            }
        }
    }

    /// `row` as it reads back after a store: what attention sees of a value in this type.
    pub fn round_trip(self, row: &mut [f32], scratch: &mut Vec<u8>) {
        if self == KvType::F32 {
            return;
        }
        scratch.resize(self.row_bytes(row.len()), 0);
        self.store_row(row, scratch);
        self.load_row(scratch, row);
    }
}

/// ggml's Q8_0 rule for one block: the scale `amax / 127` (before its rounding to f16) and the
/// quants `round(x / scale)` (half away from zero, saturated).
fn q8_block(x: &[f32]) -> (f32, [i8; KV_Q8_BLOCK]) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut q = [0i8; KV_Q8_BLOCK];
    for (o, &v) in q.iter_mut().zip(x) {
        *o = (v * id).round() as i8;
    }
    (d, q)
}

impl fmt::Display for KvType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KvType {
    type Err = String;

    fn from_str(s: &str) -> Result<KvType, String> {
        KvType::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| format!("unknown KV type `{s}` (f16, q8_0 or f32)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32 - 0.5) * 8.0
            })
            .collect()
    }

    #[test]
    fn bytes_per_token_of_the_8b_shape() {
        // Llama 3 8B: 32 layers, 8 KV heads of 128.
        let per = |t: KvType| t.bytes_per_token(32, 8 * 128);
        assert_eq!(per(KvType::F32), 256 << 10);
        assert_eq!(per(KvType::F16), 128 << 10);
        assert_eq!(per(KvType::Q8_0), 68 << 10);
        // SmolLM2-135M: 30 layers, 3 KV heads of 64; q8_0 rows padded to 208 bytes.
        assert_eq!(KvType::Q8_0.row_bytes(192), 208);
    }

    #[test]
    fn rows_read_back_within_the_types_precision() {
        let x = row(192, 7);
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (t, bound) in [
            (KvType::F32, 0.0),
            (KvType::F16, amax / 1024.0),
            // half a step, plus the scale's rounding to f16 times up to 127 steps
            (KvType::Q8_0, amax / 127.0 * 0.57),
        ] {
            let mut bytes = vec![0u8; t.row_bytes(x.len())];
            t.store_row(&x, &mut bytes);
            let mut back = vec![0.0; x.len()];
            t.load_row(&bytes, &mut back);
            let worst = x
                .iter()
                .zip(&back)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(worst <= bound, "{t}: {worst} > {bound}");
            // Storing what was read back changes nothing (what the attention sees is stable).
            let mut again = back.clone();
            t.round_trip(&mut again, &mut Vec::new());
            assert_eq!(again, back, "{t}");
        }
    }

    #[test]
    fn q8_0_matches_the_weight_quantizer() {
        // The same rule as the GGUF Q8_0 blocks (quant/q8_0.rs), only laid out differently.
        let x = row(64, 3);
        let mut bytes = vec![0u8; KvType::Q8_0.row_bytes(64)];
        KvType::Q8_0.store_row(&x, &mut bytes);
        let blocks = crate::quant::quantize_row(crate::quant::GgmlType::Q8_0, &x).unwrap();
        for b in 0..2 {
            let blk = &blocks[b * 34..(b + 1) * 34];
            assert_eq!(
                blk[..2],
                bytes[64 + 2 * b..64 + 2 * b + 2],
                "scale of block {b}"
            );
            assert_eq!(blk[2..], bytes[32 * b..32 * (b + 1)], "quants of block {b}");
        }
        let zero = [0.0f32; 32];
        let mut zb = vec![0u8; KvType::Q8_0.row_bytes(32)];
        KvType::Q8_0.store_row(&zero, &mut zb);
        let mut back = [1.0f32; 32];
        KvType::Q8_0.load_row(&zb, &mut back);
        assert_eq!(back, zero);
    }

    #[test]
    fn names_parse_and_q8_0_needs_whole_blocks() {
        for t in KvType::ALL {
            assert_eq!(t.name().parse::<KvType>(), Ok(t));
        }
        assert!("q4_0".parse::<KvType>().is_err());
        assert_eq!(KvType::default(), KvType::F16);
        assert!(KvType::Q8_0.check(192).is_ok());
        assert!(KvType::Q8_0.check(200).is_err());
        assert!(KvType::F16.check(200).is_ok());
    }
}
