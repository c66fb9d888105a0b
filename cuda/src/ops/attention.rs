//! The paged KV cache's write and the attention over it (`attention.cu`).

use std::sync::OnceLock;

use cudarc::driver::sys;
use orcd_model::KvType;

use super::{Ops, int};
use crate::driver::GpuContext;
use crate::error::{CudaError, CudaResult};
use crate::kernels::{Arg, launch, shape};
use crate::operand::{KvLayer, Tokens};

/// Where the KV cache's rows are: the page table, the heads' geometry and the rows' type.
#[derive(Copy, Clone, Debug)]
pub struct KvGeometry {
    /// How a row is kept; the kernels are instantiated per type (`kv_write_f16`, ...).
    pub kv_type: KvType,
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

    /// The kernel `<family>_<kv type>`, e.g. `attention_decode_q8_0`.
    pub fn kernel(&self, family: &str) -> String {
        format!("{family}_{}", self.kv_type.name())
    }
}

impl Ops<'_> {
    /// Append the step's keys and values to one layer's cache.
    /// k, v: (ntok, kv_dim) f32;  kc, vc: (n_pages, page_tokens) rows of kv_dim values in
    /// `geo.kv_type` (`KvType::row_bytes` each);
    /// slot, pos: (ntok) i32, each position inside its slot's pages (the caller checks).
    pub fn kv_write(
        &self,
        geo: &KvGeometry,
        k: u64,
        v: u64,
        cache: KvLayer,
        tokens: &Tokens,
    ) -> CudaResult<()> {
        let (kc, vc, slot, pos) = (cache.k, cache.v, tokens.slot, tokens.pos);
        let name = geo.kernel("kv_write");
        let f = self.k.get(&name)?;
        launch(
            self.gpu,
            f,
            (int(tokens.n, "tokens")? as u32, 1, 1),
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
            &name,
        )
    }

    /// Copy positions `0..n_tokens` of slot `from` into slot `to` on every layer's keys and
    /// values (prefix caching), the rows as stored whatever `geo.kv_type`. kv: `regions`
    /// regions back to back (K of layer 0, V of layer 0, K of layer 1, ...), each
    /// `region_bytes` = (n_pages, page_tokens) rows of `KvType::row_bytes(kv_dim)`; both slots'
    /// page-table rows cover `n_tokens` positions and the slots differ (the caller checks).
    pub fn kv_copy_prefix(
        &self,
        geo: &KvGeometry,
        kv: u64,
        regions: usize,
        region_bytes: u64,
        (from, to): (u32, u32),
        n_tokens: usize,
    ) -> CudaResult<()> {
        let row_bytes = geo.kv_type.row_bytes(geo.kv_dim());
        if !row_bytes.is_multiple_of(4) {
            return Err(CudaError::shape(format!(
                "a KV row of {row_bytes} bytes is not whole 32-bit words"
            )));
        }
        let f = self.k.get("kv_copy_prefix")?;
        launch(
            self.gpu,
            f,
            (
                int(n_tokens, "prefix tokens")? as u32,
                int(regions, "KV regions")? as u32,
                1,
            ),
            (shape::KV_THREADS, 1, 1),
            &[
                Arg::Ptr(kv),
                Arg::Ptr(geo.page_table),
                Arg::I32(int(from as usize, "slot")?),
                Arg::I32(int(to as usize, "slot")?),
                Arg::I32(int(geo.pages_per_slot, "pages per slot")?),
                Arg::I32(int(geo.page_tokens, "page tokens")?),
                Arg::I32(int(row_bytes / 4, "KV row words")?),
                Arg::U64(region_bytes),
            ],
            "kv_copy_prefix",
        )
    }

    /// Causal attention of each new token over its slot's cached positions 0..=pos (or the
    /// last `p.window` of them when it is > 0), through the kernel `p.kernel` names
    /// ([`AttnKernel::Auto`]: the shape picks), each head's sink logit in its softmax when
    /// `p.sinks` is set. Every kernel but the reference gives the same bits for a token
    /// whatever the step holds (see `attention.cu`).
    /// q, out: (ntok, n_heads, head_dim) f32; p.sinks: (n_heads) f32 or 0.
    pub fn attention(
        &self,
        geo: &KvGeometry,
        cache: KvLayer,
        q: u64,
        out: u64,
        tokens: &Tokens,
        p: AttnParams,
    ) -> CudaResult<()> {
        let (kc, vc, slot, pos, ntok) = (cache.k, cache.v, tokens.slot, tokens.pos, tokens.n);
        let AttnParams {
            kernel,
            window,
            scale,
            sinks,
        } = p;
        if !geo.head_dim.is_multiple_of(32)
            || geo.head_dim == 0
            || geo.head_dim > shape::ATT_MAX_HEAD_DIM
            || geo.n_kv_heads == 0
            || !geo.n_heads.is_multiple_of(geo.n_kv_heads)
        {
            return Err(CudaError::Shape(format!(
                "attention with head_dim {} and {} / {} heads",
                geo.head_dim, geo.n_heads, geo.n_kv_heads
            )));
        }
        if ntok == 0 {
            return Ok(());
        }
        let kernel = match kernel {
            AttnKernel::Auto if reference_selected() => AttnKernel::Reference,
            AttnKernel::Auto if ntok <= ATT_DECODE_MAX_TOKENS => AttnKernel::Decode(None),
            AttnKernel::Auto => AttnKernel::Prefill,
            k => k,
        };
        let common = [
            Arg::Ptr(q),
            Arg::Ptr(kc),
            Arg::Ptr(vc),
            Arg::Ptr(geo.page_table),
            Arg::Ptr(slot),
            Arg::Ptr(pos),
            Arg::Ptr(out),
        ];
        let heads = [
            Arg::I32(int(geo.n_heads, "heads")?),
            Arg::I32(int(geo.n_kv_heads, "kv heads")?),
            Arg::I32(int(geo.head_dim, "head_dim")?),
            Arg::I32(int(geo.pages_per_slot, "pages per slot")?),
            Arg::I32(int(geo.page_tokens, "page tokens")?),
            Arg::I32(int(window, "window")?),
            Arg::F32(scale),
        ];
        let ntok32 = int(ntok, "tokens")? as u32;
        let group = geo.n_heads / geo.n_kv_heads;
        match kernel {
            AttnKernel::Auto => unreachable!("resolved above"),
            AttnKernel::Reference => {
                let name = geo.kernel("attention_ref");
                let f = self.k.get(&name)?;
                launch(
                    self.gpu,
                    f,
                    (ntok32, int(geo.n_heads, "heads")? as u32, 1),
                    (shape::ATT_WARPS * 32, 1, 1),
                    &[&common[..], &heads[..], &[Arg::Ptr(sinks)][..]].concat(),
                    &name,
                )
            }
            AttnKernel::Decode(force_split) => {
                let groups = geo.n_kv_heads * group.div_ceil(ATT_DEC_ROWS);
                let n_chunks = (geo.pages_per_slot * geo.page_tokens).div_ceil(ATT_CHUNK);
                // Chunks per row the split buffer holds; a longer token goes unsplit.
                let chunk_cap = ATT_PART_FLOATS / (ntok * geo.n_heads * geo.head_dim);
                let fits = chunk_cap > 0 && ntok * groups <= ATT_COUNTERS;
                let split = match force_split {
                    _ if !fits => 1,
                    Some(n) => n.clamp(1, n_chunks.max(1)),
                    None => ATT_SPLIT_BLOCKS
                        .div_ceil(ntok * groups)
                        .clamp(1, n_chunks.max(1)),
                };
                let name = geo.kernel("attention_decode");
                let f = self.k.get(&name)?;
                let smem = 4
                    * (2 * ATT_DEC_ROWS * geo.head_dim
                        + ATT_CHUNK * (2 * geo.head_dim + 4)
                        + ATT_DEC_ROWS * ATT_CHUNK);
                let mut args = [&common[..], &heads[..]].concat();
                args.push(Arg::I32(int(chunk_cap.min(n_chunks), "chunks per row")?));
                args.push(Arg::Ptr(sinks));
                launch_smem(
                    self.gpu,
                    f,
                    (ntok32, int(groups, "head groups")? as u32, split as u32),
                    smem,
                    &args,
                    &name,
                )
            }
            AttnKernel::Prefill => {
                let gb = group.min(ATT_PRE_ROWS);
                let tq = ATT_PRE_ROWS / gb;
                let groups = geo.n_kv_heads * group.div_ceil(gb);
                let kp = geo.head_dim.div_ceil(64);
                let name = geo.kernel(&format!("attention_prefill{kp}"));
                let f = self.k.get(&name)?;
                let smem = 4
                    * (ATT_PRE_ROWS * (geo.head_dim + 4)
                        + ATT_CHUNK * (2 * geo.head_dim + 4)
                        + ATT_PRE_ROWS * (ATT_CHUNK + 4));
                let mut args = common.to_vec();
                args.push(Arg::I32(ntok32 as i32));
                args.extend_from_slice(&heads);
                args.push(Arg::Ptr(sinks));
                launch_smem(
                    self.gpu,
                    f,
                    (
                        ntok.div_ceil(tq) as u32,
                        int(groups, "head groups")? as u32,
                        1,
                    ),
                    smem,
                    &args,
                    &name,
                )
            }
        }
    }
}

/// The attention's parameters: the kernel, the window (0: none), the score scale and the
/// heads' sink logits.
#[derive(Copy, Clone, Debug)]
pub struct AttnParams {
    pub kernel: AttnKernel,
    pub window: usize,
    pub scale: f32,
    /// (n_heads) f32: each query head's learned logit that joins its softmax denominator and
    /// goes to no value (GPT-OSS's attention sinks); 0: none.
    pub sinks: u64,
}

/// Which attention kernel a launch takes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum AttnKernel {
    /// By shape: [`AttnKernel::Decode`] up to [`ATT_DECODE_MAX_TOKENS`] tokens,
    /// [`AttnKernel::Prefill`] beyond; the reference everywhere when `ORCD_ATTN=ref`.
    Auto,
    /// `attention_ref_<kv>`: one block per (token, head), each warp walks every 8th key.
    Reference,
    /// `attention_decode_<kv>` (flash-decoding). `Some(n)` forces n splits of a token's chunks
    /// (1: no split; clamped to the chunks of a slot); `None` sizes the split from the shape.
    Decode(Option<usize>),
    /// `attention_prefill<KP>_<kv>`: tiles of consecutive tokens share each staged K/V chunk.
    Prefill,
}

/// Steps of up to this many tokens take the decode kernel under [`AttnKernel::Auto`].
pub const ATT_DECODE_MAX_TOKENS: usize = 64;

// attention.cu's shapes (checked against the source in the tests below).
/// Keys per canonical chunk.
const ATT_CHUNK: usize = 64;
/// Threads per block of the decode and prefill kernels.
const ATT_THREADS: u32 = 256;
/// Query heads per decode block.
const ATT_DEC_ROWS: usize = 8;
/// Query rows (tokens x heads) per prefill block.
const ATT_PRE_ROWS: usize = 64;
/// Floats of the split results' buffer.
const ATT_PART_FLOATS: usize = 4_194_304;
/// Arrival counters of split decoding.
const ATT_COUNTERS: usize = 16_384;
/// Blocks the split decoding aims for (the H100/H200 have 132 SMs).
const ATT_SPLIT_BLOCKS: usize = 512;

/// `ORCD_ATTN=ref` selects the reference attention kernel everywhere (read once).
fn reference_selected() -> bool {
    static REF: OnceLock<bool> = OnceLock::new();
    *REF.get_or_init(|| std::env::var("ORCD_ATTN").is_ok_and(|v| v == "ref"))
}

/// [`launch`] with ATT_THREADS threads and `smem` bytes of dynamic shared memory (the
/// function's limit raised to it first; programmatic dependent launch as for every kernel of
/// a marked module).
fn launch_smem(
    gpu: &GpuContext,
    f: sys::CUfunction,
    grid: (u32, u32, u32),
    smem: usize,
    args: &[Arg],
    what: &str,
) -> CudaResult<()> {
    let bytes = int(smem, "shared memory")? as u32;
    crate::kernels::allow_dynamic_smem(f, bytes, what)?;
    crate::kernels::launch_smem(gpu, f, grid, (ATT_THREADS, 1, 1), bytes, args, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_match_the_source() {
        let src = include_str!("../../kernels/attention.cu");
        for (name, value) in [
            ("ATT_CHUNK", ATT_CHUNK),
            ("ATT_THREADS", ATT_THREADS as usize),
            ("ATT_DEC_ROWS", ATT_DEC_ROWS),
            ("ATT_PRE_ROWS", ATT_PRE_ROWS),
            ("ATT_PRE_SP", ATT_CHUNK + 4),
            ("ATT_PART_FLOATS", ATT_PART_FLOATS),
            ("ATT_COUNTERS", ATT_COUNTERS),
        ] {
            assert!(
                src.contains(&format!("#define {name} {value}\n")),
                "{name} is not {value} in attention.cu"
            );
        }
    }
}
