//! The ops of a transformer layer ([`crate::forward::LayerOp`]), each with its fused and its
//! reference form. Buffers (scratch, `T` tokens): x (T, dim) the residual stream; xb (T, dim)
//! a sublayer's normed input; xb2 (T, dim) a sublayer's output; q (T, q_dim), k, v (T, kv_dim);
//! att (T, q_dim); hb, hb2 (T, ffn_dim); the mixture of experts' buffers (`moe_*`, see
//! [`crate::scratch::Scratch`]).

use orcd_model::NormKind;

use crate::error::{CudaError, CudaResult};
use crate::forward::{Exec, Step};
use crate::operand::{GateAct, Glu, KvLayer, Norm, OutView, Tokens};
use crate::ops::{
    AttnKernel, AttnParams, Experts, MoeKernel, PackedPart, Pairs, QkNorm, Qkv, Rope, RopeScale,
    RopeStyle,
};
use crate::weights::{DevTensor, GpuLayer};

impl Step<'_> {
    fn norm(&self, w: &DevTensor) -> Norm {
        Norm {
            weight: w.ptr,
            eps: self.c.rms_eps,
        }
    }

    /// out = rmsnorm(x) * w over `rows` rows of `n`.
    fn rms_norm(&self, x: u64, w: &DevTensor, out: u64, rows: usize, n: usize) -> CudaResult<()> {
        self.ops.rms_norm(x, w.ptr, out, rows, n, self.c.rms_eps)
    }

    /// out = norm(x) * w (+ b): the plan's input norm (RMSNorm, or LayerNorm with its bias).
    fn input_norm(
        &self,
        w: &DevTensor,
        bias: Option<&DevTensor>,
        out: u64,
        n: usize,
    ) -> CudaResult<()> {
        let (s, dim) = (self.s, self.c.dim);
        match self.plan.norm {
            NormKind::Rms => self.rms_norm(s.x, w, out, n, dim),
            NormKind::Layer => {
                let b = bias.map_or(0, |b| b.ptr);
                self.ops.layer_norm(s.x, self.norm(w), b, out, n, dim)
            }
        }
    }

    /// Layer `l`'s KV cache.
    fn kv_layer(&self, l: usize) -> CudaResult<KvLayer> {
        Ok(KvLayer {
            k: self.kv.ptr_at(2 * l as u64 * self.layer_kv_bytes)?,
            v: self.kv.ptr_at((2 * l as u64 + 1) * self.layer_kv_bytes)?,
        })
    }

    /// Layer `l`'s RoPE: the linear factor, and YaRN, the attention factor and the frequency
    /// factors where the model has them (`orcd_model::rope`).
    fn rope_of(&self, l: usize) -> Rope {
        let c = self.c;
        let base = c.rope_base_of(l);
        let sc = c.rope_scaling_of(l);
        let yarn = sc.ext_factor != 0.0;
        Rope {
            n_rot: c.rope_dims,
            base,
            freq_scale: c.rope_freq_scale_of(l),
            style: match c.rope_style {
                orcd_model::RopeStyle::Normal => RopeStyle::Norm,
                orcd_model::RopeStyle::Neox => RopeStyle::Neox,
            },
            scale: RopeScale {
                factors: self.w.rope_factors.as_ref().map_or(0, |t| t.ptr),
                ext_factor: sc.ext_factor,
                attn_factor: sc.attn_factor,
                corr: if yarn {
                    sc.corr_dims(c.rope_dims, base)
                } else {
                    [0.0, 0.0]
                },
            },
        }
    }

    /// xb = rmsnorm(x) * attn_norm; q, k, v = Wq xb, Wk xb, Wv xb, plus the biases (Qwen2).
    /// Fused: one launch for the three matrices with the norm on the fly (packed: in the
    /// activation quantization; the biases in the launch's epilogue); where q, k and v differ
    /// in type or layout, separate launches.
    pub(crate) fn attn_norm_qkv(&self, e: Exec, lw: &GpuLayer, n: usize) -> CudaResult<()> {
        let (c, s) = (self.c, self.s);
        let (dim, q_dim, kv_dim) = (c.dim, c.q_dim(), c.kv_dim());
        let (q, k, v) = (&lw.attn_q, &lw.attn_k, &lw.attn_v);
        let biases = [&lw.attn_q_bias, &lw.attn_k_bias, &lw.attn_v_bias];
        let outs = [s.q, s.k, s.v];
        let mut biases_added = false;
        let same_type = q.ty == k.ty && k.ty == v.ty;
        let packed = [q.as_packed(), k.as_packed(), v.as_packed()];
        let gguf = [q.as_gguf(), k.as_gguf(), v.as_gguf()];
        match (e, packed, gguf) {
            (Exec::Fused, [Some(pq), Some(pk), Some(pv)], _) if same_type => {
                self.ops
                    .quantize_q8(s.x, dim, n, Some(self.norm(&lw.attn_norm)), s.acts)?;
                let parts = [pq, pk, pv].into_iter().zip(outs).zip(biases);
                let parts = parts.map(|((w, y), b)| PackedPart {
                    w,
                    y,
                    bias: b.as_ref().map_or(0, |b| b.ptr),
                });
                let parts: Vec<PackedPart> = parts.collect();
                self.qkv_q8([parts[0], parts[1], parts[2]], s.acts, n)?;
                biases_added = true;
            }
            (Exec::Fused, _, [Some(gq), Some(gk), Some(gv)]) if same_type => {
                let parts = [(gq, s.q), (gk, s.k), (gv, s.v)];
                self.ops
                    .matmul3(parts, s.x, n, Some(self.norm(&lw.attn_norm)))?;
            }
            _ => {
                self.input_norm(&lw.attn_norm, lw.attn_norm_bias.as_ref(), s.xb, n)?;
                self.linear(q, s.xb, n, OutView::write(s.q, q_dim))?;
                self.linear(k, s.xb, n, OutView::write(s.k, kv_dim))?;
                self.linear(v, s.xb, n, OutView::write(s.v, kv_dim))?;
            }
        }
        if !biases_added {
            for ((b, y), len) in biases.iter().zip(outs).zip([q_dim, kv_dim, kv_dim]) {
                if let Some(b) = b {
                    self.ops.add_bias(y, b.ptr, n, len)?;
                }
            }
        }
        Ok(())
    }

    /// The per-head q/k norms (Gemma 3), RoPE of q and k, and the store of k and v into layer
    /// `l`'s cache. Fused: one launch for all of it.
    pub(crate) fn qk_norm_rope_store(
        &self,
        e: Exec,
        l: usize,
        lw: &GpuLayer,
        t: &Tokens,
    ) -> CudaResult<()> {
        let (c, s) = (self.c, self.s);
        let (n, hd) = (t.n, c.head_dim);
        let cache = self.kv_layer(l)?;
        let rope = self.rope_of(l);
        match e {
            Exec::Fused => {
                let norms = QkNorm {
                    q: lw.attn_q_norm.as_ref().map_or(0, |t| t.ptr),
                    k: lw.attn_k_norm.as_ref().map_or(0, |t| t.ptr),
                    eps: c.rms_eps,
                };
                let qkv = Qkv {
                    q: s.q,
                    k: s.k,
                    v: s.v,
                };
                self.ops
                    .rope_qk_store(&self.geo, qkv, cache, t, norms, &rope)
            }
            Exec::Reference => {
                if let Some(qn) = &lw.attn_q_norm {
                    self.rms_norm(s.q, qn, s.q, n * c.n_heads, hd)?;
                }
                if let Some(kn) = &lw.attn_k_norm {
                    self.rms_norm(s.k, kn, s.k, n * c.n_kv_heads, hd)?;
                }
                self.ops.rope(s.q, t, c.n_heads, hd, &rope)?;
                self.ops.rope(s.k, t, c.n_kv_heads, hd, &rope)?;
                self.ops.kv_write(&self.geo, s.k, s.v, cache, t)
            }
        }
    }

    /// The store of the new keys and values into layer `l`'s cache (learned positions: no
    /// RoPE).
    pub(crate) fn kv_store(&self, l: usize, t: &Tokens) -> CudaResult<()> {
        let cache = self.kv_layer(l)?;
        self.ops.kv_write(&self.geo, self.s.k, self.s.v, cache, t)
    }

    /// att = attention of every new token over its slot in layer `l`'s cache (causal,
    /// windowed on sliding layers; each head's sink logit in its softmax on a model with
    /// sinks).
    pub(crate) fn attention(&self, l: usize, lw: &GpuLayer, t: &Tokens) -> CudaResult<()> {
        let c = self.c;
        let sinks = match (c.attn_sinks, &lw.attn_sinks) {
            (false, _) => 0,
            (true, Some(s)) => s.ptr,
            (true, None) => return Err(CudaError::shape("attention sinks without their tensor")),
        };
        let p = AttnParams {
            kernel: AttnKernel::Auto,
            window: c.window_of(l).unwrap_or(0),
            scale: c.attn_scale,
            sinks,
        };
        let cache = self.kv_layer(l)?;
        self.ops
            .attention(&self.geo, cache, self.s.q, self.s.att, t, p)
    }

    /// x += post_attention_norm(Wo att + b) (the bias on GPT-2, the norm on Gemma 3 only).
    /// Fused without either: the residual add in the matrix launch.
    pub(crate) fn attn_out_residual(&self, e: Exec, lw: &GpuLayer, n: usize) -> CudaResult<()> {
        let (w, b, pn) = (
            &lw.attn_output,
            lw.attn_output_bias.as_ref(),
            lw.post_attention_norm.as_ref(),
        );
        self.out_residual(e, w, b, pn, self.s.att, n)
    }

    /// xb = rmsnorm(x) * ffn_norm; hb = act(Wg xb) * (Wu xb). Fused: one launch for the pair
    /// with the norm on the fly and the activation in the epilogue; where gate and up differ in
    /// type or layout, separate launches.
    pub(crate) fn ffn_norm_gate_up(&self, e: Exec, lw: &GpuLayer, n: usize) -> CudaResult<()> {
        let (c, s) = (self.c, self.s);
        let (dim, ffn) = (c.dim, c.ffn_dim);
        let g = lw
            .ffn_gate
            .as_ref()
            .ok_or_else(|| CudaError::shape("a gated FFN op on a layer without a gate"))?;
        let u = &lw.ffn_up;
        let act = self.plan.ffn_act;
        let norm = self.norm(&lw.ffn_norm);
        let (gb, ub) = (lw.ffn_gate_bias.as_ref(), lw.ffn_up_bias.as_ref());
        // The fused kernels add no biases: a layer with them takes separate launches.
        let same_type = g.ty == u.ty && gb.is_none() && ub.is_none();
        match (e, g.as_packed(), u.as_packed(), g.as_gguf(), u.as_gguf()) {
            (Exec::Fused, Some(gate), Some(up), _, _) if same_type => {
                self.ops.quantize_q8(s.x, dim, n, Some(norm), s.acts)?;
                self.glu_q8(Glu { gate, up, act }, s.acts, n, s.hb, s.hb2)
            }
            (Exec::Fused, _, _, Some(gate), Some(up)) if same_type => {
                self.ops
                    .matmul_glu(Glu { gate, up, act }, s.x, n, s.hb, Some(norm))
            }
            _ => {
                self.input_norm(&lw.ffn_norm, lw.ffn_norm_bias.as_ref(), s.xb, n)?;
                self.linear(g, s.xb, n, OutView::write(s.hb, ffn))?;
                if let Some(b) = gb {
                    self.ops.add_bias(s.hb, b.ptr, n, ffn)?;
                }
                self.linear(u, s.xb, n, OutView::write(s.hb2, ffn))?;
                if let Some(b) = ub {
                    self.ops.add_bias(s.hb2, b.ptr, n, ffn)?;
                }
                self.gated(act, s.hb, s.hb2, n * ffn)
            }
        }
    }

    /// x += post_ffw_norm(Wd hb + b) (the bias on GPT-2, the norm on Gemma 3 only).
    pub(crate) fn ffn_down_residual(&self, e: Exec, lw: &GpuLayer, n: usize) -> CudaResult<()> {
        let (w, b, pn) = (
            &lw.ffn_down,
            lw.ffn_down_bias.as_ref(),
            lw.post_ffw_norm.as_ref(),
        );
        self.out_residual(e, w, b, pn, self.s.hb, n)
    }

    /// xb = norm(x); hb = act(Wu xb + b) (GPT-2's plain FFN; GELU).
    pub(crate) fn ffn_norm_up_act(&self, lw: &GpuLayer, n: usize) -> CudaResult<()> {
        let (s, ffn) = (self.s, self.c.ffn_dim);
        self.input_norm(&lw.ffn_norm, lw.ffn_norm_bias.as_ref(), s.xb, n)?;
        self.linear(&lw.ffn_up, s.xb, n, OutView::write(s.hb, ffn))?;
        if let Some(b) = &lw.ffn_up_bias {
            self.ops.add_bias(s.hb, b.ptr, n, ffn)?;
        }
        match self.plan.ffn_act {
            GateAct::GeluTanh => self.ops.gelu_tanh(s.hb, n * ffn),
            GateAct::Silu | GateAct::SwigluOai => {
                Err(CudaError::shape("a plain FFN without GELU has no kernel"))
            }
        }
    }

    /// The mixture of experts (GPT-OSS), per (token, chosen expert) pair:
    /// xb = norm(x) * ffn_norm; router logits = Wr xb (+ br); each token's top k experts and
    /// their weights (the softmax over the chosen logits); per pair, gate and up of xb (+ the
    /// expert's biases), the clamped SwiGLU, down (+ bias); x += each token's weighted sum of
    /// its pairs, in the order of the choice. Only the chosen experts' rows are read (pair by
    /// pair for a few pairs; by expert, each once, when the step has as many pairs as there
    /// are experts); a token's result depends on nothing else in the step.
    pub(crate) fn ffn_norm_moe(&self, lw: &GpuLayer, n: usize) -> CudaResult<()> {
        let (c, s) = (self.c, self.s);
        let moe = c.moe.ok_or_else(|| {
            CudaError::shape("a mixture-of-experts op on a model without experts")
        })?;
        let (ne, k) = (moe.n_expert, moe.n_expert_used);
        let missing = |what: &str| CudaError::shape(format!("a mixture of experts without {what}"));
        let router = lw
            .ffn_gate_inp
            .as_ref()
            .ok_or_else(|| missing("a router"))?;
        let gate = lw
            .ffn_gate
            .as_ref()
            .ok_or_else(|| missing("gate experts"))?;
        let gate = experts(gate, lw.ffn_gate_bias.as_ref(), ne)?;
        let up = experts(&lw.ffn_up, lw.ffn_up_bias.as_ref(), ne)?;
        let down = experts(&lw.ffn_down, lw.ffn_down_bias.as_ref(), ne)?;
        // xb = norm(x)
        self.input_norm(&lw.ffn_norm, lw.ffn_norm_bias.as_ref(), s.xb, n)?;
        // router logits (n, n_expert); the bias is added in the routing
        self.linear(router, s.xb, n, OutView::write(s.moe_logits, ne))?;
        let router_bias = lw.ffn_gate_inp_bias.as_ref().map_or(0, |b| b.ptr);
        // each token's k experts (n, k) and their weights (n, k)
        let pairs = Pairs {
            ids: s.moe_ids,
            ntok: n,
            k,
        };
        self.ops
            .moe_route(s.moe_logits, router_bias, ne, pairs, s.moe_w)?;
        // gate and up of every pair (n k, ffn_dim), then the clamped SwiGLU into the gate;
        // the kernel (per pair, or by expert for many pairs) gives the same bits
        let auto = MoeKernel::Auto;
        self.ops
            .moe_matmul(gate, s.xb, false, pairs, s.moe_gate, auto)?;
        self.ops
            .moe_matmul(up, s.xb, false, pairs, s.moe_up, auto)?;
        self.ops
            .moe_swiglu_oai(s.moe_gate, s.moe_up, n * k * gate.rows)?;
        // down of every pair (n k, dim)
        self.ops
            .moe_matmul(down, s.moe_gate, true, pairs, s.moe_y, auto)?;
        // x += sum_j w_j y_j (the residual add)
        self.ops.moe_combine(s.x, s.moe_y, s.moe_w, n, c.dim, k)
    }

    /// x += post_norm(W input + bias), the bias and `post_norm` optional: fused without
    /// either, the add happens in the matrix launch; else W into xb2, the bias, the norm, then
    /// the add.
    fn out_residual(
        &self,
        e: Exec,
        w: &DevTensor,
        bias: Option<&DevTensor>,
        post_norm: Option<&DevTensor>,
        input: u64,
        n: usize,
    ) -> CudaResult<()> {
        let (s, dim) = (self.s, self.c.dim);
        match (e, bias, post_norm) {
            (Exec::Fused, None, None) => self.linear(w, input, n, OutView::add(s.x, dim)),
            _ => {
                self.linear(w, input, n, OutView::write(s.xb2, dim))?;
                if let Some(b) = bias {
                    self.ops.add_bias(s.xb2, b.ptr, n, dim)?;
                }
                if let Some(pn) = post_norm {
                    self.rms_norm(s.xb2, pn, s.xb2, n, dim)?;
                }
                self.ops.add(s.x, s.xb2, n * dim)
            }
        }
    }
}

/// The `n_expert` stacked experts of one projection, `t` in GGUF layout (expert `e` is rows
/// `e * t.rows / n_expert..`), with their biases (n_expert, t.rows / n_expert) f32.
fn experts(t: &DevTensor, bias: Option<&DevTensor>, n_expert: usize) -> CudaResult<Experts> {
    if t.packed || n_expert == 0 || !t.rows.is_multiple_of(n_expert) {
        return Err(CudaError::shape(format!(
            "{} experts stacked in a {}-row {} tensor{}",
            n_expert,
            t.rows,
            t.ty.name(),
            if t.packed { " (packed)" } else { "" }
        )));
    }
    Ok(Experts {
        ptr: t.ptr,
        ty: t.ty,
        n_expert,
        rows: t.rows / n_expert,
        cols: t.cols,
        bias: bias.map_or(0, |b| b.ptr),
    })
}
