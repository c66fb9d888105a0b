//! The small f32 operations of the forward pass, each on one row (or head) at a time:
//! RMSNorm, RoPE, softmax, the GLU activations, residual adds. Their numerics follow ggml's
//! CPU kernels (f64 accumulation in RMSNorm and softmax sums).

use orcd_model::{RopeScaling, RopeStyle};

/// `out = x / rms(x) * w` for one row: `rms(x) = sqrt(mean(x^2) + eps)`.
pub fn rmsnorm(out: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    debug_assert!(out.len() == x.len() && x.len() == w.len());
    let sum: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = v * scale * g;
    }
}

/// [`rmsnorm`] in place.
pub fn rmsnorm_inplace(x: &mut [f32], w: &[f32], eps: f32) {
    debug_assert_eq!(x.len(), w.len());
    let sum: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for (v, &g) in x.iter_mut().zip(w) {
        *v = *v * scale * g;
    }
}

/// LayerNorm of one row, as ggml's `ggml_norm` then `* w + b`: `out = (x - mean) /
/// sqrt(var + eps) * w (+ b)`, the mean and variance summed in f64 like ggml's `ggml_float`.
pub fn layernorm(out: &mut [f32], x: &[f32], w: &[f32], b: Option<&[f32]>, eps: f32) {
    debug_assert!(out.len() == x.len() && x.len() == w.len());
    let n = x.len();
    let sum: f64 = x.iter().map(|&v| f64::from(v)).sum();
    let mean = (sum / n as f64) as f32;
    let mut sum2 = 0.0f64;
    for (o, &v) in out.iter_mut().zip(x) {
        let d = v - mean;
        *o = d;
        sum2 += f64::from(d * d);
    }
    let var = (sum2 / n as f64) as f32;
    let scale = 1.0 / (var + eps).sqrt();
    for (o, &g) in out.iter_mut().zip(w) {
        *o = *o * scale * g;
    }
    if let Some(b) = b {
        add_inplace(out, b);
    }
}

/// The rotation angles' cosines and sines for one position with linear scaling only:
/// `theta_i = pos * base^(-2i/n_rot) * freq_scale` for `i < n_rot / 2`, written to `cos`/`sin`
/// (each `n_rot / 2` long). [`orcd_model::rope::angles`] with a plain [`RopeScaling`].
pub fn rope_angles(
    cos: &mut [f32],
    sin: &mut [f32],
    pos: usize,
    base: f32,
    freq_scale: f32,
    n_rot: usize,
) {
    let scaling = RopeScaling {
        freq_scale,
        ..RopeScaling::none(0)
    };
    orcd_model::rope::angles(cos, sin, pos, base, &scaling, None, n_rot);
}

/// Rotate one head `x` (head_dim long) by the angles of [`rope_angles`]; the dimensions past
/// `2 * cos.len()` are left alone.
pub fn rope(x: &mut [f32], cos: &[f32], sin: &[f32], style: RopeStyle) {
    let half = cos.len();
    for i in 0..half {
        let (a, b) = match style {
            RopeStyle::Normal => (2 * i, 2 * i + 1),
            RopeStyle::Neox => (i, i + half),
        };
        let (x0, x1) = (x[a], x[b]);
        x[a] = x0 * cos[i] - x1 * sin[i];
        x[b] = x0 * sin[i] + x1 * cos[i];
    }
}

/// Softmax in place (max subtracted first; an all `-inf` row stays finite: zeros).
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        x.fill(0.0);
        return;
    }
    let mut sum = 0.0f64;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += f64::from(*v);
    }
    let inv = (1.0 / sum) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// [`softmax`] with one more logit, `sink`, in the denominator, whose share goes nowhere
/// (GPT-OSS's attention sinks; ggml's `soft_max` with sinks): `x_i <- exp(x_i - m) /
/// (sum_j exp(x_j - m) + exp(sink - m))`, `m` the largest of the `x_j` and `sink`.
pub fn softmax_with_sink(x: &mut [f32], sink: f32) {
    let max = x.iter().copied().fold(sink, f32::max);
    let mut sum = f64::from((sink - max).exp());
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += f64::from(*v);
    }
    let inv = (1.0 / sum) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// The top `k` experts of one token's router `logits` (highest first, the lower index on a
/// tie), each with its weight: the softmax over the chosen logits (llama.cpp's
/// `SOFTMAX_WEIGHT` gating, GPT-OSS).
pub fn route(logits: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut experts: Vec<usize> = (0..logits.len()).collect();
    experts.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    experts.truncate(k);
    let mut weights: Vec<f32> = experts.iter().map(|&e| logits[e]).collect();
    softmax(&mut weights);
    experts.into_iter().zip(weights).collect()
}

/// GPT-OSS's clamped SwiGLU of one gate value `g` and up value `u` (ggml's `swiglu_oai`):
/// `x * sigmoid(alpha * x) * (y + 1)` with `x = min(g, limit)`, `y = clamp(u, -limit, limit)`.
#[inline]
pub fn swiglu_oai(g: f32, u: f32) -> f32 {
    use orcd_model::config::{SWIGLU_OAI_ALPHA as ALPHA, SWIGLU_OAI_LIMIT as LIMIT};
    let x = g.min(LIMIT);
    let y = u.clamp(-LIMIT, LIMIT);
    x / (1.0 + (ALPHA * -x).exp()) * (y + 1.0)
}

/// SiLU, `x * sigmoid(x)`.
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// GELU with the tanh approximation, as ggml's `ggml_gelu_f32`.
#[inline]
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const GELU_COEF_A: f32 = 0.044715;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + GELU_COEF_A * x * x)).tanh())
}

/// `x += y`, elementwise (a residual add).
pub fn add_inplace(x: &mut [f32], y: &[f32]) {
    debug_assert_eq!(x.len(), y.len());
    for (a, &b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// `x *= s`, elementwise.
pub fn scale_inplace(x: &mut [f32], s: f32) {
    for a in x.iter_mut() {
        *a *= s;
    }
}

/// `sum_i a_i * b_i` in f32 (attention scores and value mixing).
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    // Eight independent accumulators, so the compiler can vectorise the loop.
    let mut acc = [0.0f32; 8];
    let (ac, ar) = a.as_chunks::<8>();
    let (bc, br) = b.as_chunks::<8>();
    for (x, y) in ac.iter().zip(bc) {
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ar.iter().zip(br) {
        s += x * y;
    }
    s
}

/// `y += a * x`, elementwise.
#[inline]
pub fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    debug_assert_eq!(x.len(), y.len());
    for (d, &s) in y.iter_mut().zip(x) {
        *d += a * s;
    }
}

/// Copy little-endian f32 bytes (a norm weight or bias from the file) into a vector.
pub fn f32_vec(bytes: &[u8]) -> Vec<f32> {
    bytes
        .as_chunks::<4>()
        .0
        .iter()
        .map(|b| f32::from_le_bytes(*b))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sink_takes_its_share_of_the_softmax() {
        // softmax over [x.., sink] with the sink's entry dropped
        let x = [0.5f32, -1.0, 2.0];
        let sink = 1.25f32;
        let mut got = x;
        softmax_with_sink(&mut got, sink);
        let mut all = [x[0], x[1], x[2], sink];
        softmax(&mut all);
        for (g, w) in got.iter().zip(&all) {
            assert!((g - w).abs() < 1e-6, "{g} vs {w}");
        }
        assert!(got.iter().sum::<f32>() < 1.0);
        // a very low sink changes nothing
        let mut plain = x;
        softmax(&mut plain);
        let mut low = x;
        softmax_with_sink(&mut low, -1e30);
        assert_eq!(plain, low);
    }

    #[test]
    fn route_picks_the_top_k_and_softmaxes_only_them() {
        let logits = [0.5f32, 3.0, -1.0, 3.0, 2.0];
        let r = route(&logits, 3);
        // highest first, the lower index on the tie
        assert_eq!(r.iter().map(|p| p.0).collect::<Vec<_>>(), [1, 3, 4]);
        let z = 2.0 * 3f32.exp() + 2f32.exp();
        assert!((r[0].1 - 3f32.exp() / z).abs() < 1e-6);
        assert!((r[2].1 - 2f32.exp() / z).abs() < 1e-6);
        assert!((r.iter().map(|p| p.1).sum::<f32>() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn swiglu_oai_clamps_gate_above_and_up_both_ways() {
        let sig = |v: f32| 1.0 / (1.0 + (-1.702 * v).exp());
        assert!((swiglu_oai(1.0, 2.0) - sig(1.0) * 3.0).abs() < 1e-6);
        // the gate is capped at 7, the up projection clamped to [-7, 7], then offset by 1
        assert_eq!(swiglu_oai(30.0, 100.0), swiglu_oai(7.0, 7.0));
        assert_eq!(swiglu_oai(-30.0, -100.0), swiglu_oai(-30.0, -7.0));
        assert!((swiglu_oai(7.0, 7.0) - 7.0 * sig(7.0) * 8.0).abs() < 1e-5);
        assert_eq!(swiglu_oai(0.0, 5.0), 0.0);
    }

    #[test]
    fn rmsnorm_gives_unit_rms() {
        let x = [3.0, -4.0, 0.0, 5.0];
        let mut out = [0.0; 4];
        rmsnorm(&mut out, &x, &[1.0; 4], 0.0);
        let ms: f32 = out.iter().map(|v| v * v).sum::<f32>() / 4.0;
        assert!((ms - 1.0).abs() < 1e-6);
        let mut y = x;
        rmsnorm_inplace(&mut y, &[2.0; 4], 0.0);
        for (a, b) in y.iter().zip(out) {
            assert!((a - 2.0 * b).abs() < 1e-6);
        }
    }

    #[test]
    fn rope_styles_pair_different_dimensions() {
        let (mut cos, mut sin) = ([0.0; 2], [0.0; 2]);
        rope_angles(&mut cos, &mut sin, 1, 10_000.0, 1.0, 4);
        // theta_0 = 1 rad, theta_1 = 1/100 rad.
        assert!((cos[0] - 1f32.cos()).abs() < 1e-6 && (sin[1] - 0.01f32.sin()).abs() < 1e-6);
        let mut normal = [1.0, 0.0, 1.0, 0.0, 7.0];
        rope(&mut normal, &cos, &sin, RopeStyle::Normal);
        assert!((normal[0] - 1f32.cos()).abs() < 1e-6 && (normal[1] - 1f32.sin()).abs() < 1e-6);
        assert_eq!(normal[4], 7.0, "dimensions past n_rot are untouched");
        let mut neox = [1.0, 0.0, 0.0, 0.0];
        rope(&mut neox, &cos, &sin, RopeStyle::Neox);
        // x[0] pairs with x[2] under NEOX.
        assert!((neox[0] - 1f32.cos()).abs() < 1e-6 && (neox[2] - 1f32.sin()).abs() < 1e-6);
        assert_eq!(neox[1], 0.0);
        // Position 0 is the identity.
        rope_angles(&mut cos, &mut sin, 0, 10_000.0, 1.0, 4);
        let mut id = [0.3, -0.2, 0.9, 0.1];
        rope(&mut id, &cos, &sin, RopeStyle::Neox);
        assert_eq!(id, [0.3, -0.2, 0.9, 0.1]);
        // Linear scaling by 1/4 turns position 4 into position 1.
        let (mut c4, mut s4) = ([0.0; 2], [0.0; 2]);
        rope_angles(&mut c4, &mut s4, 4, 10_000.0, 0.25, 4);
        rope_angles(&mut cos, &mut sin, 1, 10_000.0, 1.0, 4);
        assert_eq!((c4, s4), (cos, sin));
    }

    #[test]
    fn layernorm_centres_and_scales() {
        let x = [1.0, 2.0, 3.0, 6.0];
        let mut out = [0.0; 4];
        layernorm(&mut out, &x, &[2.0; 4], Some(&[0.5; 4]), 0.0);
        let mean: f32 = out.iter().sum::<f32>() / 4.0;
        assert!((mean - 0.5).abs() < 1e-6);
        let var: f32 = out.iter().map(|v| (v - 0.5) * (v - 0.5)).sum::<f32>() / 4.0;
        assert!((var - 4.0).abs() < 1e-5);
    }

    #[test]
    fn softmax_sums_to_one_and_handles_masked_rows() {
        let mut x = [1.0, 2.0, 3.0, f32::NEG_INFINITY];
        softmax(&mut x);
        assert!((x.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(x[3], 0.0);
        assert!(x[2] > x[1] && x[1] > x[0]);
        let mut masked = [f32::NEG_INFINITY; 3];
        softmax(&mut masked);
        assert_eq!(masked, [0.0; 3]);
    }

    #[test]
    fn activations_match_their_definitions() {
        assert_eq!(silu(0.0), 0.0);
        assert!((silu(2.0) - 2.0 / (1.0 + (-2.0f32).exp())).abs() < 1e-6);
        assert_eq!(gelu_tanh(0.0), 0.0);
        assert!((gelu_tanh(1.0) - 0.841_192).abs() < 1e-5);
        assert!(gelu_tanh(-10.0).abs() < 1e-6);
    }

    #[test]
    fn dot_handles_tails() {
        let a: Vec<f32> = (0..19).map(|i| i as f32).collect();
        let b = vec![2.0; 19];
        assert_eq!(dot_f32(&a, &b), 2.0 * (0..19).sum::<i32>() as f32);
    }
}
