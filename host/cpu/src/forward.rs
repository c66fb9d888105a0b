//! Longer than 600 lines on purpose: like llama2.c's `run.c`, the whole step (weights, run
//! state, the layer loop and each small op, GPT-OSS's experts and the KV views included) reads
//! top to bottom in one file; the reference for every CUDA kernel is here.
//!
//! The forward pass of one batched step on the CPU, written after llama2.c's `run.c`: the
//! weights ([`CpuWeights`] plus the mapped matrices), the run state ([`RunState`], one buffer per
//! activation with its shape) and [`forward`], a list of small ops.
//!
//! All new tokens of all sequences of the batch travel together through every matrix product
//! (rows `0..n_tok` of the activation buffers, in batch order); attention is per sequence, over
//! its own KV slot.

use rayon::prelude::*;

use crate::kv_cache::{KvCache, SlotCache};
use crate::matmul::{DotPath, Prepared, QMatrix, matmul, matmul_prepared};
use crate::ops;
use orcd_device::EngineError;
use orcd_device::{LogitsWanted, SeqInput};
use orcd_model::gguf::{GgufFile, TensorInfo};
use orcd_model::{
    Activation, FfnKind, LayerWeights, Model, ModelConfig, NormKind, Positions, RopeStyle, rope,
};

/// One layer's vectors (norm weights and biases), copied out of the file as f32. The matrices
/// stay in the mapped file and are read through [`QMatrix`].
#[derive(Debug)]
pub struct LayerVectors {
    /// (dim), (dim): the attention norm's weight and LayerNorm bias.
    pub attn_norm: Vec<f32>,
    pub attn_norm_bias: Option<Vec<f32>>,
    /// (q_dim + 2 kv_dim): the fused QKV bias (GPT-2).
    pub qkv_bias: Option<Vec<f32>>,
    /// (q_dim), (kv_dim), (kv_dim): Qwen2's projection biases.
    pub q_bias: Option<Vec<f32>>,
    pub k_bias: Option<Vec<f32>>,
    pub v_bias: Option<Vec<f32>>,
    /// (head_dim), (head_dim): per-head query/key norms (Gemma 3, Qwen3).
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    /// (dim): the attention output projection's bias (GPT-2, GPT-OSS).
    pub output_bias: Option<Vec<f32>>,
    /// (n_heads): each query head's attention sink logit (GPT-OSS).
    pub attn_sinks: Option<Vec<f32>>,
    /// (dim): Gemma 3's norm of the attention output.
    pub post_attention_norm: Option<Vec<f32>>,
    /// (dim), (dim): the FFN norm's weight and LayerNorm bias.
    pub ffn_norm: Vec<f32>,
    pub ffn_norm_bias: Option<Vec<f32>>,
    /// (n_expert): the router's bias (GPT-OSS).
    pub router_bias: Option<Vec<f32>>,
    /// (ffn_dim), (up rows), (dim): FFN projection biases (GPT-2); with a mixture of experts
    /// (n_expert, ffn_dim), (n_expert, ffn_dim), (n_expert, dim).
    pub gate_bias: Option<Vec<f32>>,
    pub up_bias: Option<Vec<f32>>,
    pub down_bias: Option<Vec<f32>>,
    /// (dim): Gemma 3's norm of the FFN output.
    pub post_ffw_norm: Option<Vec<f32>>,
}

/// The f32 vectors of the whole model (a few KB per layer).
#[derive(Debug)]
pub struct CpuWeights {
    pub layers: Vec<LayerVectors>,
    /// (dim), (dim): the final norm's weight and LayerNorm bias.
    pub output_norm: Vec<f32>,
    pub output_norm_bias: Option<Vec<f32>>,
    /// (rope_dims / 2): RoPE frequency factors (Llama 3.1+, Phi-3).
    pub rope_factors: Option<Vec<f32>>,
}

impl CpuWeights {
    pub fn new(model: &Model) -> CpuWeights {
        let g = &*model.gguf;
        let vec = |t: &TensorInfo| ops::f32_vec(g.tensor_data(t));
        let opt = |t: &Option<TensorInfo>| t.as_ref().map(vec);
        let mw = &model.weights;
        CpuWeights {
            layers: mw
                .layers
                .iter()
                .map(|l| LayerVectors {
                    attn_norm: vec(&l.attn_norm),
                    attn_norm_bias: opt(&l.attn_norm_bias),
                    qkv_bias: opt(&l.attn_qkv_bias),
                    q_bias: opt(&l.attn_q_bias),
                    k_bias: opt(&l.attn_k_bias),
                    v_bias: opt(&l.attn_v_bias),
                    q_norm: opt(&l.attn_q_norm),
                    k_norm: opt(&l.attn_k_norm),
                    output_bias: opt(&l.attn_output_bias),
                    attn_sinks: opt(&l.attn_sinks),
                    post_attention_norm: opt(&l.post_attention_norm),
                    ffn_norm: vec(&l.ffn_norm),
                    ffn_norm_bias: opt(&l.ffn_norm_bias),
                    router_bias: opt(&l.ffn_gate_inp_bias),
                    gate_bias: opt(&l.ffn_gate_bias),
                    up_bias: opt(&l.ffn_up_bias),
                    down_bias: opt(&l.ffn_down_bias),
                    post_ffw_norm: opt(&l.post_ffw_norm),
                })
                .collect(),
            output_norm: vec(&mw.output_norm),
            output_norm_bias: opt(&mw.output_norm_bias),
            rope_factors: opt(&mw.rope_factors),
        }
    }
}

/// The activations of one step. Buffers keep their capacity between steps.
#[derive(Debug, Default)]
pub struct RunState {
    /// (n_tok) the batch's tokens, batch order.
    tokens: Vec<u32>,
    /// (n_tok) index into the batch of each token's sequence.
    token_seq: Vec<usize>,
    /// (n_tok) each token's position in its sequence.
    token_pos: Vec<usize>,
    /// (2, n_tok, rope_dims / 2) RoPE cosines: global table, then local (sliding) table.
    rope_cos: Vec<f32>,
    /// (2, n_tok, rope_dims / 2) RoPE sines, same layout.
    rope_sin: Vec<f32>,
    /// (n_tok, dim) the residual stream.
    x: Vec<f32>,
    /// (n_tok, dim) a sublayer's normed input.
    xb: Vec<f32>,
    /// (n_tok, dim) a sublayer's output.
    xb2: Vec<f32>,
    /// (n_tok, q_dim + 2 kv_dim) fused QKV projection (Phi-3, GPT-2).
    qkv: Vec<f32>,
    /// (n_tok, q_dim) queries.
    q: Vec<f32>,
    /// (n_tok, kv_dim) keys of the new tokens.
    k: Vec<f32>,
    /// (n_tok, kv_dim) values of the new tokens.
    v: Vec<f32>,
    /// (n_tok, q_dim) attention output, heads side by side.
    att: Vec<f32>,
    /// (n_tok, ffn_dim) FFN gate, then the (gated) hidden activation.
    hb: Vec<f32>,
    /// (n_tok, up rows) FFN up projection (gate and up side by side when fused: 2 ffn_dim).
    hb2: Vec<f32>,
    /// (n_tok, n_expert) router logits (mixture of experts).
    router: Vec<f32>,
    /// (m, dim) the normed inputs of the m tokens routed to one expert.
    moe_x: Vec<f32>,
    /// (m, dim) that expert's outputs.
    moe_y: Vec<f32>,
    /// (n_out) which token rows produce logits.
    out_rows: Vec<usize>,
    /// (n_out, dim) final hidden states of those rows, normed.
    out_x: Vec<f32>,
    /// (n_out, vocab) the logits of this step.
    pub logits: Vec<f32>,
    /// (n_tok) per token of this step, the smallest routing margin over the layers: how far
    /// the last chosen expert's router logit lies above the best unchosen one (infinite
    /// without experts). A near tie means another engine may well route differently.
    pub route_margin: Vec<f32>,
    /// Matmul scratch: (rows, n_tok) transposed products.
    scratch: Vec<f32>,
    /// (rows, kv_dim) keys and values attention reads when the cache is not read in place:
    /// per sequence, the positions its new tokens see, as the cache keeps them.
    view_k: Vec<f32>,
    view_v: Vec<f32>,
    /// (batch) each sequence's first row in `view_k`, its rows, and the position of its first.
    view_at: Vec<(usize, usize, usize)>,
}

/// Run one step: append every sequence's new tokens to its KV slot and compute the requested
/// logits into `s.logits`. Returns the number of logits rows. The batch must have been
/// validated (tokens in vocabulary, slots present and distinct, positions contiguous, room left).
pub fn forward(
    model: &Model,
    w: &CpuWeights,
    kv: &mut KvCache,
    s: &mut RunState,
    batch: &[SeqInput<'_>],
    path: DotPath,
) -> Result<usize, EngineError> {
    let c = &model.config;
    let g = &*model.gguf;
    let mw = &model.weights;
    let mat = |t: &TensorInfo| QMatrix::new(g, t);
    let (dim, q_dim, kv_dim, hd, ffn) = (c.dim, c.q_dim(), c.kv_dim(), c.head_dim, c.ffn_dim);
    let eps = c.rms_eps;

    // The batch, flattened to token rows.
    s.tokens.clear();
    s.token_seq.clear();
    s.token_pos.clear();
    s.out_rows.clear();
    for (i, seq) in batch.iter().enumerate() {
        for (j, &tok) in seq.tokens.iter().enumerate() {
            s.tokens.push(tok);
            s.token_seq.push(i);
            s.token_pos.push(seq.start_pos + j);
        }
        let last = s.tokens.len();
        match seq.logits {
            LogitsWanted::None => {}
            LogitsWanted::Last => s.out_rows.push(last - 1),
            LogitsWanted::All => s.out_rows.extend(last - seq.tokens.len()..last),
        }
    }
    let n = s.tokens.len();
    resize_state(s, c, n);
    s.route_margin.clear();
    s.route_margin.resize(n, f32::INFINITY);

    // token embedding: dequantize each token's row, scaled (Gemma)
    embed(g, &mw.token_embd, &s.tokens, c.embed_scale, &mut s.x)?;
    // learned position embedding (GPT-2)
    if let Some(pe) = &mw.position_embd {
        add_positions(g, pe, &s.token_pos, &mut s.x)?;
    }
    // RoPE angles of every token, for both tables
    if c.positions == Positions::Rope {
        rope_tables(s, c, w.rope_factors.as_deref());
    }

    for (l, (lw, lv)) in mw.layers.iter().zip(&w.layers).enumerate() {
        let p = c.layer_plan(l);
        // attention norm
        let nb = lv.attn_norm_bias.as_deref();
        norm_rows(&mut s.xb, &s.x, &lv.attn_norm, nb, p.norm, eps);
        // q, k, v projections: one fused matrix split into Q | K | V, or three
        if let Some(wqkv) = &lw.attn_qkv {
            matmul(&mut s.qkv, &s.xb, &mat(wqkv)?, path, &mut s.scratch)?;
            add_bias_rows(&mut s.qkv, lv.qkv_bias.as_deref());
            split_qkv(s, q_dim, kv_dim);
        } else {
            let wq = required(&lw.attn_q)?;
            let wk = required(&lw.attn_k)?;
            let wv = required(&lw.attn_v)?;
            // the normed rows quantized once for all three
            let xb = Prepared::new(&s.xb, dim, path)?;
            matmul_prepared(&mut s.q, &xb, &mat(wq)?, &mut s.scratch)?;
            matmul_prepared(&mut s.k, &xb, &mat(wk)?, &mut s.scratch)?;
            matmul_prepared(&mut s.v, &xb, &mat(wv)?, &mut s.scratch)?;
        }
        // projection biases (Qwen2)
        add_bias_rows(&mut s.q, lv.q_bias.as_deref());
        add_bias_rows(&mut s.k, lv.k_bias.as_deref());
        add_bias_rows(&mut s.v, lv.v_bias.as_deref());
        // per-head query/key norms (Gemma 3, Qwen3)
        if p.qk_norm {
            norm_heads(&mut s.q, lv.q_norm.as_deref(), hd, eps);
            norm_heads(&mut s.k, lv.k_norm.as_deref(), hd, eps);
        }
        // RoPE on queries and keys
        if let Some(rope) = &p.rope {
            rope_rows(s, c, rope.table, rope.style);
        }
        let sinks = lv.attn_sinks.as_deref().filter(|_| p.sinks);
        // attention of every new token over its sequence's keys and values, and their store
        // into each sequence's cache
        if kv.direct_layer(l) {
            // f32, every position kept: store, then read the cache in place
            store_kv(kv, batch, s, l, kv_dim)?;
            let views = direct_views(kv, batch, l)?;
            attention(&views, s, c, p.window, p.attn_scale, sinks);
        } else {
            // the cached rows read back, and the new rows as the cache will keep them
            gather_views(kv, batch, s, l, p.window)?;
            // (the views are moved out of the run state while attention writes into it)
            let (view_k, view_v) = (std::mem::take(&mut s.view_k), std::mem::take(&mut s.view_v));
            let view_at = std::mem::take(&mut s.view_at);
            let views: Vec<SeqKv<'_>> = view_at
                .iter()
                .map(|&(r0, rows, base)| SeqKv {
                    k: &view_k[r0 * kv_dim..(r0 + rows) * kv_dim],
                    v: &view_v[r0 * kv_dim..(r0 + rows) * kv_dim],
                    base,
                })
                .collect();
            attention(&views, s, c, p.window, p.attn_scale, sinks);
            drop(views);
            (s.view_k, s.view_v, s.view_at) = (view_k, view_v, view_at);
            store_kv(kv, batch, s, l, kv_dim)?;
        }
        // output projection (+ bias)
        matmul(
            &mut s.xb2,
            &s.att,
            &mat(&lw.attn_output)?,
            path,
            &mut s.scratch,
        )?;
        add_bias_rows(&mut s.xb2, lv.output_bias.as_deref());
        // post-attention norm (Gemma 3)
        norm_rows_inplace(&mut s.xb2, lv.post_attention_norm.as_deref(), dim, eps);
        // residual
        ops::add_inplace(&mut s.x, &s.xb2);

        // FFN norm
        let nb = lv.ffn_norm_bias.as_deref();
        norm_rows(&mut s.xb, &s.x, &lv.ffn_norm, nb, p.norm, eps);
        // the feed-forward network's hidden activation into `hb` (n, ffn)
        match p.ffn {
            FfnKind::Gated => {
                // gate and up projections, then act(gate) * up
                let wg = required(&lw.ffn_gate)?;
                let xb = Prepared::new(&s.xb, dim, path)?;
                matmul_prepared(&mut s.hb, &xb, &mat(wg)?, &mut s.scratch)?;
                add_bias_rows(&mut s.hb, lv.gate_bias.as_deref());
                matmul_prepared(&mut s.hb2, &xb, &mat(&lw.ffn_up)?, &mut s.scratch)?;
                add_bias_rows(&mut s.hb2, lv.up_bias.as_deref());
                glu(&mut s.hb, &s.hb2, p.activation);
            }
            FfnKind::FusedGateUp => {
                // one projection to [gate | up], then act(gate) * up
                matmul(&mut s.hb2, &s.xb, &mat(&lw.ffn_up)?, path, &mut s.scratch)?;
                add_bias_rows(&mut s.hb2, lv.up_bias.as_deref());
                for (h, gu) in s.hb.chunks_mut(ffn).zip(s.hb2.chunks(2 * ffn)) {
                    let (gate, up) = gu.split_at(ffn);
                    h.copy_from_slice(gate);
                    glu(h, up, p.activation);
                }
            }
            FfnKind::Plain => {
                // up projection, then act(up)
                matmul(&mut s.hb, &s.xb, &mat(&lw.ffn_up)?, path, &mut s.scratch)?;
                add_bias_rows(&mut s.hb, lv.up_bias.as_deref());
                activate(&mut s.hb, p.activation)?;
            }
            // each token's chosen experts, weighted, straight into `xb2` (every expert has its
            // own down projection)
            FfnKind::Moe => moe_ffn(g, lw, lv, s, c, path)?,
        }
        if p.ffn != FfnKind::Moe {
            // down projection (+ bias)
            matmul(&mut s.xb2, &s.hb, &mat(&lw.ffn_down)?, path, &mut s.scratch)?;
            add_bias_rows(&mut s.xb2, lv.down_bias.as_deref());
        }
        // post-FFN norm (Gemma 3)
        norm_rows_inplace(&mut s.xb2, lv.post_ffw_norm.as_deref(), dim, eps);
        // residual
        ops::add_inplace(&mut s.x, &s.xb2);
    }
    debug_assert_eq!((s.q.len(), s.hb.len()), (n * q_dim, n * ffn));

    // final norm of the rows that want logits
    let n_out = s.out_rows.len();
    s.out_x.resize(n_out * dim, 0.0);
    for (o, &r) in s.out_rows.iter().enumerate() {
        norm_rows(
            &mut s.out_x[o * dim..(o + 1) * dim],
            &s.x[r * dim..(r + 1) * dim],
            &w.output_norm,
            w.output_norm_bias.as_deref(),
            c.norm,
            eps,
        );
    }
    // classifier into logits
    s.logits.resize(n_out * c.vocab_size, 0.0);
    matmul(
        &mut s.logits,
        &s.out_x,
        &mat(&mw.output)?,
        path,
        &mut s.scratch,
    )?;
    Ok(n_out)
}

/// A tensor the layer's plan requires (the loader checked that it is present).
fn required(t: &Option<TensorInfo>) -> Result<&TensorInfo, EngineError> {
    t.as_ref()
        .ok_or_else(|| EngineError::InvalidInput("model tensor missing for its plan".into()))
}

/// Copy the fused `s.qkv (n, q_dim + 2 kv_dim)` rows into `s.q`, `s.k`, `s.v`.
fn split_qkv(s: &mut RunState, q_dim: usize, kv_dim: usize) {
    let row = q_dim + 2 * kv_dim;
    for (t, r) in s.qkv.chunks(row).enumerate() {
        s.q[t * q_dim..(t + 1) * q_dim].copy_from_slice(&r[..q_dim]);
        s.k[t * kv_dim..(t + 1) * kv_dim].copy_from_slice(&r[q_dim..q_dim + kv_dim]);
        s.v[t * kv_dim..(t + 1) * kv_dim].copy_from_slice(&r[q_dim + kv_dim..]);
    }
}

/// Size every per-token buffer for `n` tokens.
fn resize_state(s: &mut RunState, c: &ModelConfig, n: usize) {
    s.x.resize(n * c.dim, 0.0);
    s.xb.resize(n * c.dim, 0.0);
    s.xb2.resize(n * c.dim, 0.0);
    s.q.resize(n * c.q_dim(), 0.0);
    s.k.resize(n * c.kv_dim(), 0.0);
    s.v.resize(n * c.kv_dim(), 0.0);
    s.att.resize(n * c.q_dim(), 0.0);
    s.hb.resize(n * c.ffn_dim, 0.0);
    let up_rows = match c.ffn {
        FfnKind::FusedGateUp => 2 * c.ffn_dim,
        _ => c.ffn_dim,
    };
    s.hb2.resize(n * up_rows, 0.0);
    if c.fused_qkv {
        s.qkv.resize(n * (c.q_dim() + 2 * c.kv_dim()), 0.0);
    }
    s.rope_cos.resize(2 * n * c.rope_dims / 2, 0.0);
    s.rope_sin.resize(2 * n * c.rope_dims / 2, 0.0);
}

/// `x (n, dim)`: row `t` is the embedding of `tokens[t]` times `scale`.
fn embed(
    g: &GgufFile,
    table: &TensorInfo,
    tokens: &[u32],
    scale: f32,
    x: &mut [f32],
) -> Result<(), EngineError> {
    let m = QMatrix::new(g, table)?;
    for (row, &tok) in x.chunks_mut(m.cols).zip(tokens) {
        m.dequantize_row(tok as usize, row)?;
        if scale != 1.0 {
            ops::scale_inplace(row, scale);
        }
    }
    Ok(())
}

/// `x (n, dim)`: add the learned position row of each token's position.
fn add_positions(
    g: &GgufFile,
    table: &TensorInfo,
    pos: &[usize],
    x: &mut [f32],
) -> Result<(), EngineError> {
    let m = QMatrix::new(g, table)?;
    let mut row = vec![0.0; m.cols];
    for (xr, &p) in x.chunks_mut(m.cols).zip(pos) {
        m.dequantize_row(p, &mut row)?;
        ops::add_inplace(xr, &row);
    }
    Ok(())
}

/// Fill the two RoPE tables (global layers, then local sliding layers) for every token.
fn rope_tables(s: &mut RunState, c: &ModelConfig, factors: Option<&[f32]>) {
    let half = c.rope_dims / 2;
    let n = s.tokens.len();
    let tables = [
        (c.rope_base, c.rope_scaling.clone()),
        (
            c.rope_base_local.unwrap_or(c.rope_base),
            c.rope_scaling.unscaled(),
        ),
    ];
    for (b, (base, scaling)) in tables.into_iter().enumerate() {
        for (t, &pos) in s.token_pos.iter().enumerate() {
            let at = (b * n + t) * half;
            rope::angles(
                &mut s.rope_cos[at..at + half],
                &mut s.rope_sin[at..at + half],
                pos,
                base,
                &scaling,
                factors,
                c.rope_dims,
            );
        }
    }
}

/// `out (n, d) = norm(x (n, d)) * w (+ b)`, row by row, RMSNorm or LayerNorm.
fn norm_rows(out: &mut [f32], x: &[f32], w: &[f32], b: Option<&[f32]>, kind: NormKind, eps: f32) {
    let d = w.len();
    for (o, r) in out.chunks_mut(d).zip(x.chunks(d)) {
        match kind {
            NormKind::Rms => ops::rmsnorm(o, r, w, eps),
            NormKind::Layer => ops::layernorm(o, r, w, b, eps),
        }
    }
}

/// RMSNorm each `d`-wide row of `x` in place, when `w` is present.
fn norm_rows_inplace(x: &mut [f32], w: Option<&[f32]>, d: usize, eps: f32) {
    if let Some(w) = w {
        for r in x.chunks_mut(d) {
            ops::rmsnorm_inplace(r, w, eps);
        }
    }
}

/// RMSNorm each head (`hd`-wide chunk) of `x (n, heads * hd)` in place, when `w` is present.
fn norm_heads(x: &mut [f32], w: Option<&[f32]>, hd: usize, eps: f32) {
    norm_rows_inplace(x, w, hd, eps);
}

/// Add `bias` to every row of `x`, when present.
fn add_bias_rows(x: &mut [f32], bias: Option<&[f32]>) {
    if let Some(b) = bias {
        for r in x.chunks_mut(b.len()) {
            ops::add_inplace(r, b);
        }
    }
}

/// Rotate every head of `s.q` and `s.k` by its token's angles from RoPE table `table`.
fn rope_rows(s: &mut RunState, c: &ModelConfig, table: usize, style: RopeStyle) {
    let half = c.rope_dims / 2;
    let n = s.tokens.len();
    for t in 0..n {
        let at = (table * n + t) * half;
        let (cos, sin) = (&s.rope_cos[at..at + half], &s.rope_sin[at..at + half]);
        let q = &mut s.q[t * c.q_dim()..(t + 1) * c.q_dim()];
        for head in q.chunks_mut(c.head_dim) {
            ops::rope(head, cos, sin, style);
        }
        let k = &mut s.k[t * c.kv_dim()..(t + 1) * c.kv_dim()];
        for head in k.chunks_mut(c.head_dim) {
            ops::rope(head, cos, sin, style);
        }
    }
}

/// Write the new tokens' keys and values of layer `l` into their slots.
fn store_kv(
    kv: &mut KvCache,
    batch: &[SeqInput<'_>],
    s: &RunState,
    l: usize,
    kv_dim: usize,
) -> Result<(), EngineError> {
    for t in 0..s.tokens.len() {
        let id = batch[s.token_seq[t]].slot;
        let slot = kv
            .get_mut(id)
            .ok_or_else(|| EngineError::InvalidInput(format!("unknown KV slot {}", id.0)))?;
        let rows = t * kv_dim..(t + 1) * kv_dim;
        slot.store(l, s.token_pos[t], &s.k[rows.clone()], &s.v[rows]);
    }
    Ok(())
}

/// The keys and values one sequence's new tokens attend to: `k, v (rows, kv_dim)`, row `r`
/// holding position `base + r`.
struct SeqKv<'a> {
    k: &'a [f32],
    v: &'a [f32],
    base: usize,
}

fn slot_of<'a>(kv: &'a KvCache, seq: &SeqInput<'_>) -> Result<&'a SlotCache, EngineError> {
    kv.get(seq.slot)
        .ok_or_else(|| EngineError::InvalidInput(format!("unknown KV slot {}", seq.slot.0)))
}

/// Each sequence's cache of layer `l`, read in place (see [`KvCache::direct_layer`]).
fn direct_views<'a>(
    kv: &'a KvCache,
    batch: &[SeqInput<'_>],
    l: usize,
) -> Result<Vec<SeqKv<'a>>, EngineError> {
    batch
        .iter()
        .map(|seq| {
            let (k, v) = slot_of(kv, seq)?
                .direct(l)
                .ok_or_else(|| EngineError::InvalidInput("KV layer not kept in f32".into()))?;
            Ok(SeqKv { k, v, base: 0 })
        })
        .collect()
}

/// Fill `s.view_k`, `s.view_v` and `s.view_at` for layer `l`: per sequence, the positions its
/// new tokens see (from the first one's window start, or 0), the cached ones read back from
/// its slot and the new ones rounded through the cache's type, so that a token sees the same
/// values whether its neighbours came in its step or an earlier one.
fn gather_views(
    kv: &KvCache,
    batch: &[SeqInput<'_>],
    s: &mut RunState,
    l: usize,
    window: Option<usize>,
) -> Result<(), EngineError> {
    let kv_dim = kv.kv_dim();
    let ty = kv.kv_type();
    s.view_at.clear();
    let mut rows = 0;
    for seq in batch {
        let lo = window.map_or(0, |w| (seq.start_pos + 1).saturating_sub(w));
        let n = seq.start_pos + seq.tokens.len() - lo;
        s.view_at.push((rows, n, lo));
        rows += n;
    }
    s.view_k.resize(rows * kv_dim, 0.0);
    s.view_v.resize(rows * kv_dim, 0.0);
    let RunState {
        view_k,
        view_v,
        view_at,
        k: new_k,
        v: new_v,
        ..
    } = s;
    let (new_k, new_v): (&[f32], &[f32]) = (new_k, new_v);
    let mut first = 0; // the sequence's first token row in new_k
    for (seq, &(r0, n, lo)) in batch.iter().zip(view_at.iter()) {
        let slot = slot_of(kv, seq)?;
        let start = seq.start_pos;
        let vk = &mut view_k[r0 * kv_dim..(r0 + n) * kv_dim];
        let vv = &mut view_v[r0 * kv_dim..(r0 + n) * kv_dim];
        vk.par_chunks_mut(kv_dim)
            .zip(vv.par_chunks_mut(kv_dim))
            .enumerate()
            .for_each_init(Vec::new, |scratch, (r, (kr, vr))| {
                let pos = lo + r;
                if pos < start {
                    slot.load(l, pos, kr, vr);
                } else {
                    let t = first + pos - start;
                    kr.copy_from_slice(&new_k[t * kv_dim..(t + 1) * kv_dim]);
                    vr.copy_from_slice(&new_v[t * kv_dim..(t + 1) * kv_dim]);
                    ty.round_trip(kr, scratch);
                    ty.round_trip(vr, scratch);
                }
            });
        first += seq.tokens.len();
    }
    Ok(())
}

/// `s.att (n, q_dim)`: for each new token and query head, softmax(q·K / scale) · V over the
/// positions its sequence has cached (causal; the last `window` positions on sliding layers;
/// with `sinks`, the head's sink logit joins the softmax), read from its sequence's `views`
/// entry. In parallel over (token, head) pairs.
fn attention(
    views: &[SeqKv<'_>],
    s: &mut RunState,
    c: &ModelConfig,
    window: Option<usize>,
    scale: f32,
    sinks: Option<&[f32]>,
) {
    let (hd, n_heads, kv_dim) = (c.head_dim, c.n_heads, c.kv_dim());
    let group = c.n_heads / c.n_kv_heads;
    let (q, token_seq, token_pos) = (&s.q, &s.token_seq, &s.token_pos);
    s.att.par_chunks_mut(hd).enumerate().for_each_init(
        Vec::new,
        |scores: &mut Vec<f32>, (i, out)| {
            let (t, h) = (i / n_heads, i % n_heads);
            let pos = token_pos[t];
            let lo = window.map_or(0, |w| (pos + 1).saturating_sub(w));
            let view = &views[token_seq[t]];
            let rows = (lo - view.base) * kv_dim..(pos + 1 - view.base) * kv_dim;
            let keys = &view.k[rows.clone()];
            let values = &view.v[rows];
            let qh = &q[i * hd..(i + 1) * hd];
            let kvh = (h / group) * hd;
            // scores of the query against every visible key
            scores.clear();
            scores.extend(
                keys.chunks(kv_dim)
                    .map(|k| ops::dot_f32(qh, &k[kvh..kvh + hd]) * scale),
            );
            match sinks {
                Some(sk) => ops::softmax_with_sink(scores, sk[h]),
                None => ops::softmax(scores),
            }
            // weighted sum of the values
            out.fill(0.0);
            for (p, v) in scores.iter().zip(values.chunks(kv_dim)) {
                ops::axpy(out, *p, &v[kvh..kvh + hd]);
            }
        },
    );
}

/// `x = act(x)`, elementwise (an ungated FFN).
fn activate(x: &mut [f32], act: Activation) -> Result<(), EngineError> {
    match act {
        Activation::Silu => x.iter_mut().for_each(|v| *v = ops::silu(*v)),
        Activation::GeluTanh => x.iter_mut().for_each(|v| *v = ops::gelu_tanh(*v)),
        Activation::SwigluOai => {
            return Err(EngineError::InvalidInput(
                "the clamped SwiGLU needs a gate; no ungated FFN uses it".into(),
            ));
        }
    }
    Ok(())
}

/// `gate (n, ffn) = act(gate) * up`, elementwise.
fn glu(gate: &mut [f32], up: &[f32], act: Activation) {
    match act {
        Activation::Silu => {
            for (g, &u) in gate.iter_mut().zip(up) {
                *g = ops::silu(*g) * u;
            }
        }
        Activation::GeluTanh => {
            for (g, &u) in gate.iter_mut().zip(up) {
                *g = ops::gelu_tanh(*g) * u;
            }
        }
        Activation::SwigluOai => {
            for (g, &u) in gate.iter_mut().zip(up) {
                *g = ops::swiglu_oai(*g, u);
            }
        }
    }
}

/// `s.xb2 (n, dim)`: the mixture of experts (GPT-OSS) of `s.xb`. Each token's router logits
/// `W_r xb + b_r` pick its top `n_expert_used` experts, weighted by the softmax over the chosen
/// logits (llama.cpp's `SOFTMAX_WEIGHT` gating); each chosen expert then runs once over all the
/// tokens that chose it (gate and up with biases, the clamped SwiGLU, down with bias) and its
/// rows are added, weighted, to those tokens' outputs.
fn moe_ffn(
    g: &GgufFile,
    lw: &LayerWeights,
    lv: &LayerVectors,
    s: &mut RunState,
    c: &ModelConfig,
    path: DotPath,
) -> Result<(), EngineError> {
    let moe = c
        .moe
        .ok_or_else(|| EngineError::InvalidInput("mixture of experts without experts".into()))?;
    let (dim, ffn, n) = (c.dim, c.ffn_dim, s.tokens.len());
    let mat = |t: &TensorInfo| QMatrix::new(g, t);
    // router logits (n, n_expert)
    s.router.resize(n * moe.n_expert, 0.0);
    let router = mat(required(&lw.ffn_gate_inp)?)?;
    matmul(&mut s.router, &s.xb, &router, path, &mut s.scratch)?;
    add_bias_rows(&mut s.router, lv.router_bias.as_deref());
    // the tokens (and their weights) of each expert
    let mut routed: Vec<Vec<(usize, f32)>> = vec![Vec::new(); moe.n_expert];
    for (t, logits) in s.router.chunks(moe.n_expert).enumerate() {
        let chosen = ops::route(logits, moe.n_expert_used);
        let unchosen = (0..moe.n_expert)
            .filter(|e| chosen.iter().all(|c| c.0 != *e))
            .map(|e| logits[e])
            .fold(f32::NEG_INFINITY, f32::max);
        let last = logits[chosen[chosen.len() - 1].0];
        s.route_margin[t] = s.route_margin[t].min(last - unchosen);
        for (e, w) in chosen {
            routed[e].push((t, w));
        }
    }
    let (wg, wu) = (mat(required(&lw.ffn_gate)?)?, mat(&lw.ffn_up)?);
    let wd = mat(&lw.ffn_down)?;
    s.xb2.fill(0.0);
    for (e, tokens) in routed.iter().enumerate().filter(|(_, t)| !t.is_empty()) {
        let m = tokens.len();
        // the inputs of the expert's tokens, gathered (m, dim)
        s.moe_x.clear();
        for &(t, _) in tokens {
            s.moe_x.extend_from_slice(&s.xb[t * dim..(t + 1) * dim]);
        }
        // gate and up (+ biases), then the clamped SwiGLU (m, ffn)
        let (gate, up) = (&mut s.hb[..m * ffn], &mut s.hb2[..m * ffn]);
        matmul(
            gate,
            &s.moe_x,
            &wg.rows(e * ffn, ffn)?,
            path,
            &mut s.scratch,
        )?;
        add_bias_rows(gate, expert_bias(&lv.gate_bias, e, ffn));
        matmul(up, &s.moe_x, &wu.rows(e * ffn, ffn)?, path, &mut s.scratch)?;
        add_bias_rows(up, expert_bias(&lv.up_bias, e, ffn));
        glu(gate, up, c.activation);
        // down (+ bias) (m, dim)
        s.moe_y.resize(m * dim, 0.0);
        matmul(
            &mut s.moe_y,
            gate,
            &wd.rows(e * dim, dim)?,
            path,
            &mut s.scratch,
        )?;
        add_bias_rows(&mut s.moe_y, expert_bias(&lv.down_bias, e, dim));
        // weighted into each token's output
        for (&(t, w), y) in tokens.iter().zip(s.moe_y.chunks(dim)) {
            ops::axpy(&mut s.xb2[t * dim..(t + 1) * dim], w, y);
        }
    }
    Ok(())
}

/// Expert `e`'s `len` values of stacked biases (n_expert, len), when present.
fn expert_bias(b: &Option<Vec<f32>>, e: usize, len: usize) -> Option<&[f32]> {
    b.as_deref().map(|b| &b[e * len..(e + 1) * len])
}
