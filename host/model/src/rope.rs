//! RoPE scaling: how a model stretches its rotary frequencies past the context it was first
//! trained for, read from the GGUF metadata exactly as llama.cpp reads it
//! (`llama_model::load_hparams` and `llama_context`'s constructor), and the per-position angle
//! math of ggml's `rope_yarn` / `ggml_rope_cache_init`.
//!
//! Kinds: none; linear (positions times `1 / factor`); YaRN (`rope.scaling.type` "yarn":
//! interpolation blended with extrapolation per frequency, magnitude scaled); per-frequency
//! factor tensors (`rope_freqs.weight`, Llama 3.1+; `rope_factors_long/short.weight`, Phi-3
//! LongRoPE) which divide each pair's base frequency. Anything else is a typed error that names
//! the key, never a silently different rotation.

use crate::config::{bad_meta, positive_f32};
use crate::gguf::GgufFile;
use orcd_device::EngineError;

/// llama.cpp's YaRN defaults (`llama_hparams::yarn_beta_fast`, `yarn_beta_slow`).
pub const YARN_BETA_FAST: f32 = 32.0;
pub const YARN_BETA_SLOW: f32 = 1.0;

/// Everything that turns a position into rotation angles besides the base frequency.
#[derive(Clone, Debug, PartialEq)]
pub struct RopeScaling {
    /// Multiplier of positions (`1 / rope.scaling.factor` for linear and YaRN, else 1):
    /// llama.cpp's `freq_scale`.
    pub freq_scale: f32,
    /// YaRN's extrapolation mix: 1 for YaRN, 0 otherwise (llama.cpp's `yarn_ext_factor`).
    pub ext_factor: f32,
    /// Magnitude multiplier of every cos/sin (llama.cpp's `yarn_attn_factor` after its
    /// context-time adjustments, times `rope.scaling.attn_factor`); 1 without scaling.
    pub attn_factor: f32,
    /// YaRN's correction range (llama.cpp's `yarn_beta_fast`, `yarn_beta_slow`).
    pub beta_fast: f32,
    pub beta_slow: f32,
    /// The context the frequencies were trained for (`rope.scaling.original_context_length`,
    /// default the model's context): YaRN's correction dims and the long/short choice of Phi-3's
    /// factors use it.
    pub n_ctx_orig: usize,
}

impl RopeScaling {
    /// No scaling at all.
    pub fn none(n_ctx_orig: usize) -> RopeScaling {
        RopeScaling {
            freq_scale: 1.0,
            ext_factor: 0.0,
            attn_factor: 1.0,
            beta_fast: YARN_BETA_FAST,
            beta_slow: YARN_BETA_SLOW,
            n_ctx_orig,
        }
    }

    /// The same scaling without position scaling (Gemma 3's sliding layers:
    /// llama.cpp's `rope_freq_scale_train_swa` is 1).
    pub fn unscaled(&self) -> RopeScaling {
        RopeScaling {
            freq_scale: 1.0,
            ..self.clone()
        }
    }

    /// ggml's `ggml_rope_yarn_corr_dims`: the pair range over which YaRN blends from
    /// extrapolation to interpolation, for `n_rot` rotated dimensions and base `base`.
    pub fn corr_dims(&self, n_rot: usize, base: f32) -> [f32; 2] {
        let corr_dim = |beta: f32| {
            n_rot as f32 * (self.n_ctx_orig as f32 / (beta * 2.0 * std::f32::consts::PI)).ln()
                / (2.0 * base.ln())
        };
        let start = corr_dim(self.beta_fast).floor();
        let end = corr_dim(self.beta_slow).ceil();
        [start.max(0.0), end.min(n_rot as f32 - 1.0)]
    }
}

/// Which per-frequency factor tensor a model divides its RoPE frequencies by.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum RopeFactors {
    /// `rope_freqs.weight` (Llama 3.1+ "llama3" scaling, written by the converter).
    Freqs,
    /// `rope_factors_long.weight` (LongRoPE, when the served context exceeds the original one).
    Long,
    /// `rope_factors_short.weight` (LongRoPE, within the original context).
    Short,
}

impl RopeFactors {
    /// The tensor's name.
    pub fn tensor_name(self) -> &'static str {
        match self {
            RopeFactors::Freqs => "rope_freqs.weight",
            RopeFactors::Long => "rope_factors_long.weight",
            RopeFactors::Short => "rope_factors_short.weight",
        }
    }
}

/// Read `{arch}.rope.scaling.*` as llama.cpp does. `n_ctx_train` is `{arch}.context_length`.
pub fn read_scaling(
    gguf: &GgufFile,
    arch: &str,
    n_ctx_train: usize,
) -> Result<RopeScaling, EngineError> {
    let key = |k: &str| format!("{arch}.rope.scaling.{k}");
    let n_ctx_orig = match gguf.get_u32_opt(&key("original_context_length"))? {
        Some(0) => {
            return Err(bad_meta(
                &key("original_context_length"),
                "must be positive",
            ));
        }
        Some(n) => n as usize,
        None => n_ctx_train,
    };
    let mut s = RopeScaling::none(n_ctx_orig);
    // `rope.scaling.factor`, or the older `rope.scale_linear`; 0 or absent: unscaled.
    let factor = match gguf.get_f32_opt(&key("factor"))? {
        Some(f) => Some((key("factor"), f)),
        None => gguf
            .get_f32_opt(&format!("{arch}.rope.scale_linear"))?
            .map(|f| (format!("{arch}.rope.scale_linear"), f)),
    };
    let freq_scale = match factor {
        None => 1.0,
        Some((_, 0.0)) => 1.0,
        Some((k, f)) if !(f.is_finite() && f > 0.0) => {
            return Err(bad_meta(&k, format!("{f} is not a positive finite number")));
        }
        Some((_, f)) => 1.0 / f,
    };
    // llama.cpp's default type is "linear": a factor without a type still scales positions.
    let ty_key = key("type");
    match gguf.get_str_opt(&ty_key)?.unwrap_or("linear") {
        "none" => {}
        "linear" | "longrope" => s.freq_scale = freq_scale,
        "yarn" => {
            s.freq_scale = freq_scale;
            s.ext_factor = 1.0;
        }
        other => {
            return Err(bad_meta(
                &ty_key,
                format!(
                    "RoPE scaling `{other}` is not supported (known: none, linear, yarn, longrope)"
                ),
            ));
        }
    }
    // YaRN's fine-tuning keys: llama.cpp reads none of them for the architectures here (it
    // keeps its defaults), so a file that sets one to another value cannot be run as written.
    for (k, default) in [
        ("yarn_ext_factor", None),
        ("yarn_attn_factor", Some(1.0)),
        ("yarn_beta_fast", Some(YARN_BETA_FAST)),
        ("yarn_beta_slow", Some(YARN_BETA_SLOW)),
        ("yarn_log_multiplier", Some(0.0)),
    ] {
        if let Some(v) = gguf.get_f32_opt(&key(k))? {
            let want = default.unwrap_or(s.ext_factor);
            if v != want {
                return Err(bad_meta(
                    &key(k),
                    format!("{v} is not supported (llama.cpp runs these models with {want})"),
                ));
            }
        }
    }
    if s.ext_factor != 0.0 {
        // llama_context: the YaRN magnitude, cancelled here because ggml's rope_yarn applies
        // it again (llama.cpp PR 17945).
        let factor = 1.0 / s.freq_scale;
        let mscale = if factor <= 1.0 {
            1.0
        } else {
            0.1 * factor.ln() + 1.0
        };
        s.attn_factor = mscale * (1.0 / (1.0 + 0.1 * factor.ln()));
    }
    s.attn_factor *= positive_f32(gguf, &key("attn_factor"), 1.0)?;
    Ok(s)
}

/// The factor tensor a model of this file uses, if any: `rope_freqs.weight` wins (llama.cpp's
/// `get_rope_factors`), else LongRoPE's long factors when the served context `n_ctx` exceeds
/// the original one, else its short factors.
pub fn factors_in(gguf: &GgufFile, n_ctx: usize, n_ctx_orig: usize) -> Option<RopeFactors> {
    if gguf.tensor(RopeFactors::Freqs.tensor_name()).is_some() {
        return Some(RopeFactors::Freqs);
    }
    let long = gguf.tensor(RopeFactors::Long.tensor_name()).is_some();
    let short = gguf.tensor(RopeFactors::Short.tensor_name()).is_some();
    match (long, short) {
        (false, false) => None,
        _ if n_ctx > n_ctx_orig => Some(RopeFactors::Long),
        _ => Some(RopeFactors::Short),
    }
}

/// ggml's `rope_yarn_ramp`: 1 below pair `low`, 0 above `high`, linear between.
fn yarn_ramp(low: f32, high: f32, pair: usize) -> f32 {
    let y = (pair as f32 - low) / (high - low).max(0.001);
    1.0 - y.clamp(0.0, 1.0)
}

/// The cosines and sines of one position's rotation, `n_rot / 2` of each, as ggml's
/// `ggml_rope_cache_init`: `theta_i = pos * base^(-2i/n_rot)`, divided by the pair's factor,
/// scaled (linear / YaRN blend), magnitudes times the attention factor.
pub fn angles(
    cos: &mut [f32],
    sin: &mut [f32],
    pos: usize,
    base: f32,
    scaling: &RopeScaling,
    factors: Option<&[f32]>,
    n_rot: usize,
) {
    debug_assert!(cos.len() == n_rot / 2 && sin.len() == n_rot / 2);
    let theta_scale = base.powf(-2.0 / n_rot as f32);
    let corr = if scaling.ext_factor != 0.0 {
        scaling.corr_dims(n_rot, base)
    } else {
        [0.0, 0.0]
    };
    let fs = scaling.freq_scale;
    let mut theta_base = pos as f32;
    for i in 0..n_rot / 2 {
        let ff = factors.map_or(1.0, |f| f[i]);
        let theta_extrap = theta_base / ff;
        let theta_interp = fs * theta_extrap;
        let mut theta = theta_interp;
        let mut mscale = scaling.attn_factor;
        if scaling.ext_factor != 0.0 {
            let mix = yarn_ramp(corr[0], corr[1], i) * scaling.ext_factor;
            theta = theta_interp * (1.0 - mix) + theta_extrap * mix;
            mscale *= 1.0 + 0.1 * (1.0 / fs).ln();
        }
        cos[i] = theta.cos() * mscale;
        sin[i] = theta.sin() * mscale;
        theta_base *= theta_scale;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unscaled_angles_are_plain_rope() {
        let s = RopeScaling::none(4096);
        let (mut c, mut sn) = ([0.0; 4], [0.0; 4]);
        angles(&mut c, &mut sn, 3, 10_000.0, &s, None, 8);
        let ts = 10_000f32.powf(-2.0 / 8.0);
        let mut theta = 3.0f32;
        for i in 0..4 {
            assert_eq!((c[i], sn[i]), (theta.cos(), theta.sin()));
            theta *= ts;
        }
    }

    #[test]
    fn factors_divide_frequencies() {
        let s = RopeScaling::none(4096);
        let (mut a, mut b) = ([0.0; 2], [0.0; 2]);
        let (mut c, mut d) = ([0.0; 2], [0.0; 2]);
        angles(&mut a, &mut b, 8, 10_000.0, &s, Some(&[1.0, 4.0]), 4);
        angles(&mut c, &mut d, 2, 10_000.0, &s, None, 4);
        // pair 1 at position 8 with factor 4 == pair 1 at position 2.
        assert!((a[1] - c[1]).abs() < 1e-6 && (b[1] - d[1]).abs() < 1e-6);
        assert_ne!(a[0], c[0]);
    }

    #[test]
    fn yarn_blends_extrapolation_and_interpolation() {
        let mut s = RopeScaling::none(32);
        s.freq_scale = 0.25;
        s.ext_factor = 1.0;
        let [lo, hi] = s.corr_dims(64, 10_000.0);
        assert!(lo < hi && lo >= 0.0 && hi <= 63.0);
        let (mut c, mut sn) = ([0.0; 32], [0.0; 32]);
        angles(&mut c, &mut sn, 5, 10_000.0, &s, None, 64);
        let m = 1.0 + 0.1 * 4f32.ln();
        // The fastest pair extrapolates (angle = pos), the slowest interpolates (pos / 4).
        assert!((c[0] - 5f32.cos() * m).abs() < 1e-5);
        let theta31 = 5.0 * 10_000f32.powf(-62.0 / 64.0) * 0.25;
        assert!((sn[31] - theta31.sin() * m).abs() < 1e-6);
    }
}
