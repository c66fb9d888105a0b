//! Rotary position embedding (`rope.cu`).

use super::{KvGeometry, Ops, int};
use crate::error::{CudaError, CudaResult};
use crate::kernels::{Arg, launch, shape};
use crate::operand::{KvLayer, Tokens};

/// Which elements form a rotated pair.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// (2i, 2i+1): llama in GGUF.
    Norm,
    /// (i, i + n_rot/2): qwen2, gemma3.
    Neox,
}

/// One layer's rotary embedding: the leading `n_rot` dims of each head, pairs chosen by
/// `style`, frequencies `base^(-2i / n_rot)` times `freq_scale` (linear scaling), and the
/// scaling beyond that in `scale`.
#[derive(Copy, Clone, Debug)]
pub struct Rope {
    pub n_rot: usize,
    pub base: f32,
    pub freq_scale: f32,
    pub style: RopeStyle,
    pub scale: RopeScale,
}

/// RoPE scaling beyond the linear factor (`rope.cu`'s `RopeScale`, ggml's `rope_yarn`):
/// per-pair frequency factors (Llama 3.1+ `rope_freqs`, Phi-3's long/short factors), YaRN's
/// extrapolation mix over the correction range `corr`, and the magnitude of cos and sin.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct RopeScale {
    /// (n_rot / 2) f32 frequency divisors, or 0 for none.
    pub factors: u64,
    /// YaRN's mix: 0 without YaRN.
    pub ext_factor: f32,
    /// Multiplier of cos and sin: 1 without scaling.
    pub attn_factor: f32,
    /// YaRN's correction range of pairs (ggml's `corr_dims`).
    pub corr: [f32; 2],
}

impl RopeScale {
    /// No scaling beyond the linear factor.
    pub const NONE: RopeScale = RopeScale {
        factors: 0,
        ext_factor: 0.0,
        attn_factor: 1.0,
        corr: [0.0, 0.0],
    };

    fn args(&self) -> [Arg; 5] {
        [
            Arg::Ptr(self.factors),
            Arg::F32(self.ext_factor),
            Arg::F32(self.attn_factor),
            Arg::F32(self.corr[0]),
            Arg::F32(self.corr[1]),
        ]
    }
}

impl Rope {
    /// s = base^(-2 / n_rot), in f32 as the CPU computes it.
    fn theta_scale(&self) -> f32 {
        self.base.powf(-2.0 / self.n_rot as f32)
    }

    fn check(&self, head_dim: usize) -> CudaResult<()> {
        if self.n_rot > head_dim || !self.n_rot.is_multiple_of(2) {
            return Err(CudaError::Shape(format!(
                "rope over {} of {head_dim} dims",
                self.n_rot
            )));
        }
        Ok(())
    }
}

/// The per-head RMS norms of queries and keys before RoPE (Gemma 3, Qwen3):
/// q, k: (head_dim) f32 weights, or 0 for none.
#[derive(Copy, Clone, Debug)]
pub struct QkNorm {
    pub q: u64,
    pub k: u64,
    pub eps: f32,
}

/// The step's new queries, keys and values: q: (ntok, n_heads, head_dim), k, v: (ntok,
/// n_kv_heads, head_dim) f32.
#[derive(Copy, Clone, Debug)]
pub struct Qkv {
    pub q: u64,
    pub k: u64,
    pub v: u64,
}

impl Ops<'_> {
    /// Rotate x in place.  x: (ntok, heads, head_dim) f32.
    pub fn rope(
        &self,
        x: u64,
        tokens: &Tokens,
        heads: usize,
        head_dim: usize,
        rope: &Rope,
    ) -> CudaResult<()> {
        rope.check(head_dim)?;
        let (pos, ntok) = (tokens.pos, tokens.n);
        let Rope {
            n_rot,
            freq_scale,
            style,
            ..
        } = *rope;
        let f = self.k.get("rope_f32")?;
        let args = [
            Arg::Ptr(x),
            Arg::Ptr(pos),
            Arg::I32(int(heads, "heads")?),
            Arg::I32(int(head_dim, "head_dim")?),
            Arg::I32(int(n_rot, "n_rot")?),
            Arg::F32(rope.theta_scale()),
            Arg::F32(freq_scale),
            Arg::I32(i32::from(style == RopeStyle::Neox)),
        ];
        launch(
            self.gpu,
            f,
            (int(ntok, "tokens")? as u32, int(heads, "heads")? as u32, 1),
            (shape::ROPE_THREADS, 1, 1),
            &[&args[..], &rope.scale.args()[..]].concat(),
            "rope_f32",
        )
    }

    /// One layer's attention prologue in one launch: the optional per-head RMS norms of q and
    /// k, RoPE on both, and the store of the rotated keys and the values into the layer's KV
    /// cache (see [`KvGeometry`]).
    pub fn rope_qk_store(
        &self,
        geo: &KvGeometry,
        qkv: Qkv,
        cache: KvLayer,
        tokens: &Tokens,
        norms: QkNorm,
        rope: &Rope,
    ) -> CudaResult<()> {
        rope.check(geo.head_dim)?;
        let Qkv { q, k, v } = qkv;
        let (kc, vc, slot, pos, ntok) = (cache.k, cache.v, tokens.slot, tokens.pos, tokens.n);
        let Rope {
            n_rot,
            freq_scale,
            style,
            ..
        } = *rope;
        let name = geo.kernel("rope_qk_store");
        let f = self.k.get(&name)?;
        let args = [
            Arg::Ptr(q),
            Arg::Ptr(k),
            Arg::Ptr(v),
            Arg::Ptr(kc),
            Arg::Ptr(vc),
            Arg::Ptr(geo.page_table),
            Arg::Ptr(slot),
            Arg::Ptr(pos),
            Arg::Ptr(norms.q),
            Arg::Ptr(norms.k),
            Arg::F32(norms.eps),
            Arg::I32(int(geo.n_heads, "heads")?),
            Arg::I32(int(geo.n_kv_heads, "kv heads")?),
            Arg::I32(int(geo.head_dim, "head_dim")?),
            Arg::I32(int(n_rot, "n_rot")?),
            Arg::F32(rope.theta_scale()),
            Arg::F32(freq_scale),
            Arg::I32(i32::from(style == RopeStyle::Neox)),
            Arg::I32(int(geo.pages_per_slot, "pages per slot")?),
            Arg::I32(int(geo.page_tokens, "page tokens")?),
        ];
        launch(
            self.gpu,
            f,
            (
                int(ntok, "tokens")? as u32,
                int(geo.n_heads + geo.n_kv_heads, "heads")? as u32,
                1,
            ),
            (shape::ROPE_THREADS, 1, 1),
            &[&args[..], &rope.scale.args()[..]].concat(),
            &name,
        )
    }
}
