//! Activation quantization for the integer dot products: a row of f32 activations becomes
//! Q8_0-style blocks of 32 signed bytes with an f32 scale, plus each block's scaled sum (the
//! `s` of ggml's Q8_1, which the types with a minimum — Q4_1, Q5_1, Q4_K, Q5_K — need).
//!
//! Every weight type's sub-blocks (32 weights for the legacy types and Q4_K/Q5_K, two halves of
//! 16 for Q6_K) line up with these 32-wide blocks, so one quantization serves all types. The
//! activations are quantized once per row of `x` and reused for every weight row.

use orcd_device::EngineError;

/// Activations per block.
pub const QK8: usize = 32;

/// One row of activations, quantized for [`super::dot_row_q8`].
#[derive(Clone, Debug, Default)]
pub struct QuantizedActs {
    /// (n / 32) block scales `d = max|x| / 127`; `x_i ≈ d * qs_i`.
    pub(crate) d: Vec<f32>,
    /// (n / 32) per block `d * sum(qs)`.
    pub(crate) s: Vec<f32>,
    /// (n / 32) per block `sum(qs)`.
    pub(crate) sum: Vec<i32>,
    /// (n / 32, 32) the quantized values, `round(x_i / d)` in -127..=127.
    pub(crate) qs: Vec<[i8; QK8]>,
    /// (n) the activations as given, for the float weight types.
    pub(crate) x: Vec<f32>,
}

impl QuantizedActs {
    /// Quantize `x`, whose length must be a multiple of 32.
    pub fn new(x: &[f32]) -> Result<Self, EngineError> {
        let mut acts = QuantizedActs::default();
        acts.quantize(x)?;
        Ok(acts)
    }

    /// Re-quantize in place from a new row `x` (a multiple of 32 long), reusing the buffers.
    pub fn quantize(&mut self, x: &[f32]) -> Result<(), EngineError> {
        if !x.len().is_multiple_of(QK8) {
            return Err(EngineError::InvalidInput(format!(
                "activation row of {} elements is not a multiple of {QK8}",
                x.len()
            )));
        }
        let blocks = x.len() / QK8;
        self.d.clear();
        self.s.clear();
        self.sum.clear();
        self.qs.clear();
        self.x.clear();
        self.d.reserve(blocks);
        self.s.reserve(blocks);
        self.sum.reserve(blocks);
        self.qs.reserve(blocks);
        self.x.extend_from_slice(x);
        for chunk in x.as_chunks::<QK8>().0 {
            let (d, qs) = quantize_block(chunk);
            let sum: i32 = qs.iter().map(|&q| i32::from(q)).sum();
            self.d.push(d);
            self.s.push(d * sum as f32);
            self.sum.push(sum);
            self.qs.push(qs);
        }
        Ok(())
    }

    /// Number of activations.
    pub fn len(&self) -> usize {
        self.x.len()
    }

    /// Whether the row is empty.
    pub fn is_empty(&self) -> bool {
        self.x.is_empty()
    }

    /// The activations as given.
    pub fn values(&self) -> &[f32] {
        &self.x
    }

    /// Block `i`'s scale (the bound on its rounding error is half of it).
    pub fn scale(&self, i: usize) -> f32 {
        self.d[i]
    }
}

/// ggml's `quantize_row_q8_0_ref` for one block, keeping the scale in f32:
/// `d = amax / 127`, `q = round(x / d)` (half away from zero). A zero block gets `d = 0`.
#[inline]
fn quantize_block(x: &[f32; QK8]) -> (f32, [i8; QK8]) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    // `as i8` saturates, and NaN becomes 0: no overflow whatever the input.
    let qs = std::array::from_fn(|i| round_half_away(x[i] * id) as i8);
    (d, qs)
}

/// `v.round()` (half away from zero) for `|v| < 2^31`, without the libm call `round` is on
/// x86-64's baseline and without branches (the data decides them at random): truncate, then
/// step away from zero where the dropped fraction (exact in f32 below 2^24; zero above) is at
/// least a half. NaN gives NaN or 0 and the infinities 2^31 in magnitude: the same byte as
/// `round` once cast to `i8`.
#[inline(always)]
fn round_half_away(v: f32) -> f32 {
    let t = v as i32 as f32;
    let frac = v - t;
    t + if frac.abs() >= 0.5 {
        frac.signum()
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_reconstruct_within_half_a_step() {
        let x: Vec<f32> = (0..96)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013)
            .collect();
        let acts = QuantizedActs::new(&x).unwrap();
        for (b, chunk) in x.chunks(QK8).enumerate() {
            let d = acts.d[b];
            let mut sum = 0i32;
            for (i, &v) in chunk.iter().enumerate() {
                let q = acts.qs[b][i];
                sum += i32::from(q);
                assert!(
                    (v - d * f32::from(q)).abs() <= d * 0.5 * 1.0001,
                    "{v} vs {q}*{d}"
                );
            }
            assert_eq!(acts.s[b], d * sum as f32);
            assert_eq!(acts.sum[b], sum);
        }
        assert!(QuantizedActs::new(&x[..40]).is_err());
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        let mut cases = vec![
            0.5f32,
            -0.5,
            1.5,
            -2.5,
            0.49999997,
            -0.49999997,
            126.5,
            127.00001,
        ];
        cases.extend((0..100_000).map(|i| (i as f32 - 50_000.0) * 0.00254));
        cases.extend([0.0, -0.0, 1e9, -1e9]);
        for v in cases {
            assert_eq!(round_half_away(v), v.round(), "{v}");
        }
        // what the quantizer keeps of the rest: the saturated byte
        for v in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e30, -1e30] {
            assert_eq!(round_half_away(v) as i8, v.round() as i8, "{v}");
        }
    }

    #[test]
    fn zero_block_has_zero_scale() {
        let acts = QuantizedActs::new(&[0.0; 32]).unwrap();
        assert_eq!(acts.d[0], 0.0);
        assert!(acts.qs[0].iter().all(|&q| q == 0));
    }
}
