//! The paged KV cache's write and the attention over it (`attention.cu`).

use orcd_engine::EngineError;

use super::{Ops, int};
use crate::kernels::{Arg, launch, shape};

/// Where the KV cache's rows are: the page table and the heads' geometry.
#[derive(Copy, Clone, Debug)]
pub struct KvGeometry {
    /// (n_slots, pages_per_slot) i32 page ids.
    pub page_table: u64,
    pub pages_per_slot: usize,
    pub page_tokens: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

impl KvGeometry {
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
}

impl Ops<'_> {
    /// Append the step's keys and values to one layer's cache.
    /// k, v: (ntok, kv_dim) f32;  kc, vc: (n_pages, page_tokens, kv_dim) f32;
    /// slot, pos: (ntok) i32, each position inside its slot's pages (the caller checks).
    pub fn kv_write(
        &self,
        geo: &KvGeometry,
        k: u64,
        v: u64,
        kc: u64,
        vc: u64,
        slot: u64,
        pos: u64,
        ntok: usize,
    ) -> Result<(), EngineError> {
        let f = self.k.get("kv_write_f32")?;
        launch(
            self.gpu,
            f,
            (int(ntok, "tokens")? as u32, 1, 1),
            (shape::KV_THREADS, 1, 1),
            &[
                Arg::Ptr(k),
                Arg::Ptr(v),
                Arg::Ptr(kc),
                Arg::Ptr(vc),
                Arg::Ptr(geo.page_table),
                Arg::Ptr(slot),
                Arg::Ptr(pos),
                Arg::I32(int(geo.pages_per_slot, "pages per slot")?),
                Arg::I32(int(geo.page_tokens, "page tokens")?),
                Arg::I32(int(geo.kv_dim(), "kv_dim")?),
            ],
            "kv_write_f32",
        )
    }

    /// Causal attention of each new token over its slot's cached positions 0..=pos (or the
    /// last `window` of them when window > 0).
    /// q, out: (ntok, n_heads, head_dim) f32;  slot, pos: (ntok) i32.
    pub fn attention(
        &self,
        geo: &KvGeometry,
        q: u64,
        kc: u64,
        vc: u64,
        slot: u64,
        pos: u64,
        out: u64,
        ntok: usize,
        window: usize,
        scale: f32,
    ) -> Result<(), EngineError> {
        if !geo.head_dim.is_multiple_of(32)
            || geo.head_dim > shape::ATT_MAX_HEAD_DIM
            || geo.n_kv_heads == 0
            || !geo.n_heads.is_multiple_of(geo.n_kv_heads)
        {
            return Err(EngineError::InvalidInput(format!(
                "attention with head_dim {} and {} / {} heads",
                geo.head_dim, geo.n_heads, geo.n_kv_heads
            )));
        }
        let f = self.k.get("attention_f32")?;
        launch(
            self.gpu,
            f,
            (
                int(ntok, "tokens")? as u32,
                int(geo.n_heads, "heads")? as u32,
                1,
            ),
            (shape::ATT_WARPS * 32, 1, 1),
            &[
                Arg::Ptr(q),
                Arg::Ptr(kc),
                Arg::Ptr(vc),
                Arg::Ptr(geo.page_table),
                Arg::Ptr(slot),
                Arg::Ptr(pos),
                Arg::Ptr(out),
                Arg::I32(int(geo.n_heads, "heads")?),
                Arg::I32(int(geo.n_kv_heads, "kv heads")?),
                Arg::I32(int(geo.head_dim, "head_dim")?),
                Arg::I32(int(geo.pages_per_slot, "pages per slot")?),
                Arg::I32(int(geo.page_tokens, "page tokens")?),
                Arg::I32(int(window, "window")?),
                Arg::F32(scale),
            ],
            "attention_f32",
        )
    }
}
