//! The activation buffers of a step, carved out of one scratch allocation made at startup
//! (no allocation inside a step). Shapes are for `T` = tokens per chunk and `R` = logits rows
//! per forward, `k` = experts per token of a mixture of experts (the expert buffers are empty
//! without one); every buffer starts 256-byte aligned.

use std::sync::Arc;

use crate::error::CudaResult;
use orcd_model::ModelConfig;

use crate::operand::Q8Acts;
use crate::vram::{DeviceBuffer, Purpose, VramLedger};

const ALIGN: u64 = 256;

/// Device addresses of the step's buffers.
#[derive(Debug)]
pub struct Scratch {
    _buffer: DeviceBuffer,
    /// Per-chunk metadata, uploaded in one copy: tokens (T) u32, pos (T) i32, slot (T) i32,
    /// out_rows (T) i32, laid out back to back at these addresses.
    pub meta: u64,
    pub tokens: u64,
    pub pos: u64,
    pub slot: u64,
    pub out_rows: u64,
    /// (T, dim) the residual stream.
    pub x: u64,
    /// (T, dim) a sublayer's normed input.
    pub xb: u64,
    /// (T, dim) a sublayer's output.
    pub xb2: u64,
    /// (T, q_dim) queries.
    pub q: u64,
    /// (T, kv_dim) new keys / values.
    pub k: u64,
    pub v: u64,
    /// (T, q_dim) attention output.
    pub att: u64,
    /// (T, ffn_dim) gate (then the gated activation) and up projections.
    pub hb: u64,
    pub hb2: u64,
    /// (T, dim) final hidden states of the rows that want logits.
    pub out_x: u64,
    /// (R, vocab) the forward's logits.
    pub logits: u64,
    /// argmax: 8 u32: the result (id, logit bits), then the kernel's accumulator and counter.
    pub argmax: u64,
    /// top-k results: (vocab) u32 ids, (vocab) f32 values, 1 u32 count.
    pub topk_ids: u64,
    pub topk_vals: u64,
    pub topk_count: u64,
    /// penalty inputs: (vocab) u32 distinct ids, (vocab) u32 counts.
    pub pen_ids: u64,
    pub pen_counts: u64,
    /// constrained decoding: (ceil(vocab / 32)) u32, the allowed-token bitset of one row.
    pub mask: u64,
    /// log-probabilities: 1 f32, a row's log(sum(exp)).
    pub lse: u64,
    /// gathered logits: (vocab) u32 ids in, (vocab) f32 values out.
    pub gather_ids: u64,
    pub gather_vals: u64,
    /// Mixture of experts: (T, n_expert) f32 router logits; (T, k) i32 each token's chosen
    /// experts and (T, k) f32 their weights; (T k, ffn_dim) f32 the gate (then the activation)
    /// and up projections of every (token, expert) pair; (T k, dim) f32 each pair's down
    /// projection.
    pub moe_logits: u64,
    pub moe_ids: u64,
    pub moe_w: u64,
    pub moe_gate: u64,
    pub moe_up: u64,
    pub moe_y: u64,
    /// Q8 activations of one matrix input of the packed path, for T columns of the widest
    /// input (kmax = max(dim, q_dim, ffn_dim)): q (T, kmax) i8, d (T, kmax / 32) f32,
    /// sum (T, kmax / 32) i32 (`crate::packed`).
    pub acts: Q8Acts,
    /// Bytes of the metadata block (4 arrays of T 4-byte values).
    pub meta_bytes: usize,
}

impl Scratch {
    /// Bytes needed for `t` tokens per chunk and `r` logits rows.
    pub fn bytes(c: &ModelConfig, t: usize, r: usize) -> u64 {
        Self::layout(c, t, r)
            .iter()
            .map(|&b| b.next_multiple_of(ALIGN))
            .sum()
    }

    /// Buffer sizes in the order of the fields.
    fn layout(c: &ModelConfig, t: usize, r: usize) -> [u64; 31] {
        let f = |n: usize| (n * 4) as u64;
        let kmax = c.dim.max(c.q_dim()).max(c.ffn_dim);
        let (n_expert, k) = c.moe.map_or((0, 0), |m| (m.n_expert, m.n_expert_used));
        [
            f(4 * t),                     // meta
            f(t * c.dim),                 // x
            f(t * c.dim),                 // xb
            f(t * c.dim),                 // xb2
            f(t * c.q_dim()),             // q
            f(t * c.kv_dim()),            // k
            f(t * c.kv_dim()),            // v
            f(t * c.q_dim()),             // att
            f(t * c.ffn_dim),             // hb
            f(t * c.ffn_dim),             // hb2
            f(t * c.dim),                 // out_x
            f(r * c.vocab_size),          // logits
            f(8),                         // argmax: result, key accumulator, block counter
            f(c.vocab_size),              // topk ids
            f(c.vocab_size),              // topk vals
            f(1),                         // topk count
            f(c.vocab_size),              // penalty ids
            f(c.vocab_size),              // penalty counts
            f(c.vocab_size.div_ceil(32)), // allowed-token mask
            f(1),                         // logsumexp
            f(c.vocab_size),              // gather ids
            f(c.vocab_size),              // gather values
            (t * kmax) as u64,            // Q8 activations: q
            f(t * kmax / 32),             // d
            f(t * kmax / 32),             // sum
            f(t * n_expert),              // router logits
            f(t * k),                     // chosen experts
            f(t * k),                     // their weights
            f(t * k * c.ffn_dim),         // experts' gate
            f(t * k * c.ffn_dim),         // experts' up
            f(t * k * c.dim),             // experts' down
        ]
    }

    /// Allocate the scratch for `t` tokens per chunk and `r` logits rows, poisoned with NaN.
    pub fn new(
        c: &ModelConfig,
        t: usize,
        r: usize,
        ledger: &Arc<VramLedger>,
    ) -> CudaResult<Scratch> {
        let sizes = Self::layout(c, t, r);
        let buffer = ledger.alloc(Self::bytes(c, t, r), Purpose::Scratch)?;
        buffer.fill_sync(0xFF)?;
        let mut at = [0u64; 31];
        let mut off = buffer.ptr();
        for (a, s) in at.iter_mut().zip(sizes) {
            *a = off;
            off += s.next_multiple_of(ALIGN);
        }
        let meta = at[0];
        let t4 = (t * 4) as u64;
        Ok(Scratch {
            meta,
            tokens: meta,
            pos: meta + t4,
            slot: meta + 2 * t4,
            out_rows: meta + 3 * t4,
            x: at[1],
            xb: at[2],
            xb2: at[3],
            q: at[4],
            k: at[5],
            v: at[6],
            att: at[7],
            hb: at[8],
            hb2: at[9],
            out_x: at[10],
            logits: at[11],
            argmax: at[12],
            topk_ids: at[13],
            topk_vals: at[14],
            topk_count: at[15],
            pen_ids: at[16],
            pen_counts: at[17],
            mask: at[18],
            lse: at[19],
            gather_ids: at[20],
            gather_vals: at[21],
            acts: Q8Acts {
                q: at[22],
                d: at[23],
                sum: at[24],
            },
            moe_logits: at[25],
            moe_ids: at[26],
            moe_w: at[27],
            moe_gate: at[28],
            moe_up: at[29],
            moe_y: at[30],
            meta_bytes: 4 * t * 4,
            _buffer: buffer,
        })
    }
}
