//! Rotary position embedding (`rope.cu`).

use orcd_engine::EngineError;

use super::{KvGeometry, Ops, int};
use crate::kernels::{Arg, launch, shape};

/// Which elements form a rotated pair.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// (2i, 2i+1): llama in GGUF.
    Norm,
    /// (i, i + n_rot/2): qwen2, gemma3.
    Neox,
}

impl Ops<'_> {
    /// Rotate x in place.  x: (ntok, heads, head_dim) f32;  pos: (ntok) i32.
    pub fn rope(
        &self,
        x: u64,
        pos: u64,
        ntok: usize,
        heads: usize,
        head_dim: usize,
        n_rot: usize,
        base: f32,
        freq_scale: f32,
        style: RopeStyle,
    ) -> Result<(), EngineError> {
        if n_rot > head_dim || !n_rot.is_multiple_of(2) {
            return Err(EngineError::InvalidInput(format!(
                "rope over {n_rot} of {head_dim} dims"
            )));
        }
        let f = self.k.get("rope_f32")?;
        launch(
            self.gpu,
            f,
            (int(ntok, "tokens")? as u32, int(heads, "heads")? as u32, 1),
            (shape::ROPE_THREADS, 1, 1),
            &[
                Arg::Ptr(x),
                Arg::Ptr(pos),
                Arg::I32(int(heads, "heads")?),
                Arg::I32(int(head_dim, "head_dim")?),
                Arg::I32(int(n_rot, "n_rot")?),
                // s = base^(-2 / n_rot), in f32 as the CPU computes it.
                Arg::F32(base.powf(-2.0 / n_rot as f32)),
                Arg::F32(freq_scale),
                Arg::I32(i32::from(style == RopeStyle::Neox)),
            ],
            "rope_f32",
        )
    }

    /// One layer's attention prologue in one launch: optional per-head RMS norms of q and k
    /// (weights (head_dim) f32, or 0 for none), RoPE on both, and the store of the rotated keys
    /// and the values into the KV cache.  q: (ntok, n_heads, head_dim), k, v: (ntok, n_kv_heads,
    /// head_dim) f32;  kc, vc: the layer's cache (see [`KvGeometry`]);  slot, pos: (ntok) i32.
    pub fn rope_qk_store(
        &self,
        geo: &KvGeometry,
        q: u64,
        k: u64,
        v: u64,
        kc: u64,
        vc: u64,
        slot: u64,
        pos: u64,
        norms: (u64, u64),
        eps: f32,
        ntok: usize,
        n_rot: usize,
        base: f32,
        freq_scale: f32,
        style: RopeStyle,
    ) -> Result<(), EngineError> {
        if n_rot > geo.head_dim || !n_rot.is_multiple_of(2) {
            return Err(EngineError::InvalidInput(format!(
                "rope over {n_rot} of {} dims",
                geo.head_dim
            )));
        }
        let f = self.k.get("rope_qk_store_f32")?;
        launch(
            self.gpu,
            f,
            (
                int(ntok, "tokens")? as u32,
                int(geo.n_heads + geo.n_kv_heads, "heads")? as u32,
                1,
            ),
            (shape::ROPE_THREADS, 1, 1),
            &[
                Arg::Ptr(q),
                Arg::Ptr(k),
                Arg::Ptr(v),
                Arg::Ptr(kc),
                Arg::Ptr(vc),
                Arg::Ptr(geo.page_table),
                Arg::Ptr(slot),
                Arg::Ptr(pos),
                Arg::Ptr(norms.0),
                Arg::Ptr(norms.1),
                Arg::F32(eps),
                Arg::I32(int(geo.n_heads, "heads")?),
                Arg::I32(int(geo.n_kv_heads, "kv heads")?),
                Arg::I32(int(geo.head_dim, "head_dim")?),
                Arg::I32(int(n_rot, "n_rot")?),
                Arg::F32(base.powf(-2.0 / n_rot as f32)),
                Arg::F32(freq_scale),
                Arg::I32(i32::from(style == RopeStyle::Neox)),
                Arg::I32(int(geo.pages_per_slot, "pages per slot")?),
                Arg::I32(int(geo.page_tokens, "page tokens")?),
            ],
            "rope_qk_store_f32",
        )
    }
}
