//! The forward pass of one chunk of tokens, as llama2.c's `forward()` reads: embed the tokens,
//! run every layer's ops in the order of the model's [`Plan`], then the final norm and the
//! classifier for the rows that want logits. Each op is a method of [`Step`] (in
//! `crate::layer`) computed either by the fused kernels or by one launch per operation (the
//! reference), as the plan says; both give the logits the canonical kernels make reproducible.
//!
//! Everything here only queues launches on the GPU's stream: no host synchronization and no
//! allocation, so a step's launches can be captured into a CUDA graph.

use orcd_model::{Activation, FfnKind, ModelConfig, NormKind, Positions};

use crate::error::CudaResult;
use crate::operand::{GateAct, Norm, OutView, Tokens};
use crate::ops::{KvGeometry, Ops};
use crate::scratch::Scratch;
use crate::vram::DeviceBuffer;
use crate::weights::{GpuWeights, Matrix};

/// How one op is computed.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Exec {
    /// The fused kernels (norm on the fly in the matrix input, q/k/v or gate/up in one launch,
    /// the residual add in the matrix output, the attention prologue in one launch); an op
    /// whose tensors differ in type or layout falls back to separate launches where it must.
    Fused,
    /// One launch per operation: the reference for the fused path.
    Reference,
}

/// One op of a transformer layer, in the order the plan lists them.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum LayerOp {
    /// xb = norm(x); q, k, v = Wq xb, Wk xb, Wv xb (+ their biases).
    AttnNormQkv(Exec),
    /// The per-head q/k norms (if the layer has them), RoPE of q and k, and the store of the
    /// new keys and values into the layer's KV cache.
    QkNormRopeStore(Exec),
    /// att = softmax(q K^T * scale) V over each token's slot (causal, windowed on sliding
    /// layers; each head's sink logit in the softmax where the model has sinks).
    Attention,
    /// x += post_norm(Wo att) (the post-norm where the layer has one).
    AttnOutResidual(Exec),
    /// xb = norm(x); hb = act(Wg xb) * (Wu xb).
    FfnNormGateUp(Exec),
    /// x += post_norm(Wd hb).
    FfnDownResidual(Exec),
    /// Learned positions (GPT-2): the store of the new keys and values, no RoPE.
    KvStore,
    /// xb = norm(x); hb = act(Wu xb) (GPT-2's plain FFN).
    FfnNormUpAct,
    /// A mixture of experts (GPT-OSS): xb = norm(x); each token's top-k experts by router
    /// logits (+ bias), weighted by the softmax over the chosen; each chosen expert's
    /// down(swiglu_oai(gate xb + b, up xb + b)) + b; x += the weighted sum. Only the chosen
    /// experts' weights are read.
    FfnNormMoe,
}

/// A model's forward pass as ops: what every layer runs, in order, and the activation of its
/// gated FFN. Built once at load from the architecture's config and the options.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub layer: Vec<LayerOp>,
    pub ffn_act: GateAct,
    /// RMSNorm or LayerNorm (GPT-2, with biases) before each sublayer and at the output.
    pub norm: NormKind,
}

impl Plan {
    /// The plan of `c`'s architecture; `fused`: every op that has fused kernels uses them.
    /// The ops that take an input norm run the reference form under LayerNorm (the fused
    /// kernels normalize with RMSNorm on the fly).
    pub fn for_model(c: &ModelConfig, fused: bool) -> Plan {
        let e = if fused { Exec::Fused } else { Exec::Reference };
        let ffn_act = match c.activation {
            Activation::Silu => GateAct::Silu,
            Activation::GeluTanh => GateAct::GeluTanh,
            Activation::SwigluOai => GateAct::SwigluOai,
        };
        let e_in = if c.norm == NormKind::Rms {
            e
        } else {
            Exec::Reference
        };
        let rope = c.positions == Positions::Rope;
        let ffn = match c.ffn {
            FfnKind::Plain => vec![LayerOp::FfnNormUpAct, LayerOp::FfnDownResidual(e)],
            FfnKind::Moe => vec![LayerOp::FfnNormMoe],
            FfnKind::Gated | FfnKind::FusedGateUp => {
                vec![LayerOp::FfnNormGateUp(e_in), LayerOp::FfnDownResidual(e)]
            }
        };
        let mut layer = vec![
            LayerOp::AttnNormQkv(e_in),
            if rope {
                LayerOp::QkNormRopeStore(e)
            } else {
                LayerOp::KvStore
            },
            LayerOp::Attention,
            LayerOp::AttnOutResidual(e),
        ];
        layer.extend(ffn);
        Plan {
            layer,
            ffn_act,
            norm: c.norm,
        }
    }
}

/// Everything one chunk's forward pass reads: the kernels, the model, its weights, the
/// scratch buffers and the KV cache. Borrowed from the backend for the length of a step.
pub(crate) struct Step<'a> {
    pub ops: Ops<'a>,
    pub c: &'a ModelConfig,
    pub plan: &'a Plan,
    pub w: &'a GpuWeights,
    pub s: &'a Scratch,
    /// Per layer K and V: (n_pages, PAGE_TOKENS) rows of kv_dim values in the cache's type
    /// (`geo.kv_type`) each, back to back.
    pub kv: &'a DeviceBuffer,
    /// Bytes of one layer's K (or V) cache.
    pub layer_kv_bytes: u64,
    pub geo: KvGeometry,
    /// Whether packed matrices with many columns take the GEMM.
    pub gemm: bool,
}

impl Step<'_> {
    /// The forward pass of `n` tokens whose metadata is on the device; `r` logits rows go to
    /// rows `row0..` of the logits buffer.
    pub(crate) fn forward(&self, n: usize, r: usize, row0: usize) -> CudaResult<()> {
        let s = self.s;
        let tokens = Tokens {
            n,
            pos: s.pos,
            slot: s.slot,
        };
        // x = token_embd[tokens] (* embed_scale)
        self.embed(n)?;
        for (l, lw) in self.w.layers.iter().enumerate() {
            for op in &self.plan.layer {
                match *op {
                    LayerOp::AttnNormQkv(e) => self.attn_norm_qkv(e, lw, n)?,
                    LayerOp::QkNormRopeStore(e) => self.qk_norm_rope_store(e, l, lw, &tokens)?,
                    LayerOp::Attention => self.attention(l, lw, &tokens)?,
                    LayerOp::AttnOutResidual(e) => self.attn_out_residual(e, lw, n)?,
                    LayerOp::FfnNormGateUp(e) => self.ffn_norm_gate_up(e, lw, n)?,
                    LayerOp::FfnDownResidual(e) => self.ffn_down_residual(e, lw, n)?,
                    LayerOp::KvStore => self.kv_store(l, &tokens)?,
                    LayerOp::FfnNormUpAct => self.ffn_norm_up_act(lw, n)?,
                    LayerOp::FfnNormMoe => self.ffn_norm_moe(lw, n)?,
                }
            }
        }
        if r > 0 {
            // logits = Wout norm(x) for the rows that want them
            self.classifier(r, row0)?;
        }
        Ok(())
    }

    /// x = token_embd[tokens] * embed_scale (Gemma's sqrt(dim); 1 elsewhere), plus
    /// position_embd[pos] for learned positions (GPT-2).
    fn embed(&self, n: usize) -> CudaResult<()> {
        let (s, scale) = (self.s, self.c.embed_scale);
        let rows = |t: &crate::weights::DevTensor, ids: u64, out: u64, scale: f32| match t.matrix()
        {
            Matrix::Packed(e) => self.ops.embed_packed(e, ids, n, out, scale),
            Matrix::Gguf(e) => self.ops.embed(e, ids, n, out, scale),
        };
        rows(&self.w.token_embd, s.tokens, s.x, scale)?;
        if let Some(pe) = &self.w.position_embd {
            // The positions (i32, non-negative, within the context) index the table's rows.
            rows(pe, s.pos, s.xb, 1.0)?;
            self.ops.add(s.x, s.xb, n * self.c.dim)?;
        }
        Ok(())
    }

    /// The final norm of the `r` rows that want logits (gathered from the chunk), then the
    /// classifier into logits rows `row0..row0 + r`.
    fn classifier(&self, r: usize, row0: usize) -> CudaResult<()> {
        let (c, s, w) = (self.c, self.s, self.w);
        let dim = c.dim;
        let norm = Norm {
            weight: w.output_norm.ptr,
            eps: c.rms_eps,
        };
        self.ops.gather_rows(s.x, s.out_rows, s.out_x, r, dim)?;
        let logits = OutView::write(s.logits + (row0 * c.vocab_size * 4) as u64, c.vocab_size);
        if self.plan.norm == NormKind::Layer {
            let bias = w.output_norm_bias.as_ref().map_or(0, |b| b.ptr);
            self.ops.layer_norm(s.out_x, norm, bias, s.out_x, r, dim)?;
            return self.linear(&w.output, s.out_x, r, logits);
        }
        match w.output.matrix() {
            Matrix::Packed(out) => {
                // the norm on the fly in the quantization, then the classifier
                self.ops.quantize_q8(s.out_x, dim, r, Some(norm), s.acts)?;
                self.linear_q8(out, s.acts, r, logits)
            }
            Matrix::Gguf(out) => {
                self.ops
                    .rms_norm(s.out_x, norm.weight, s.out_x, r, dim, norm.eps)?;
                self.ops.matmul(out, s.out_x, r, logits)
            }
        }
    }
}
