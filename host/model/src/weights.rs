//! The tensor table of a model: which GGUF tensor plays which role, by llama.cpp's names, each
//! checked for presence, shape and type against the [`ModelConfig`].
//!
//! Backend-neutral: entries are [`TensorInfo`]s (name, shape, type, file offset), so the CPU
//! backend reads the mapped bytes in place and the CUDA backend uploads exactly these tensors.
//! Shapes are written ggml-style, `[ne0, ne1]` with `ne0` the contiguous row length: a projection
//! from `n_in` to `n_out` features is `[n_in, n_out]`, i.e. `n_out` rows of `n_in` weights.

use crate::config::{FfnKind, ModelConfig, NormKind, Positions};
use crate::gguf::{GgufFile, TensorInfo};
use crate::quant::GgmlType;
use orcd_device::EngineError;

/// One transformer block's tensors (`blk.N.*`). Which are present follows the
/// [`ModelConfig`]: Q/K/V split or fused, gated or plain FFN, biases where the family has them
/// (or, as llama.cpp, where the file has them).
#[derive(Clone, Debug)]
pub struct LayerWeights {
    /// `attn_norm` [dim], f32: the norm before attention.
    pub attn_norm: TensorInfo,
    /// `attn_norm.bias` [dim], f32 (LayerNorm: GPT-2).
    pub attn_norm_bias: Option<TensorInfo>,
    /// `attn_q` [dim, n_heads * head_dim] (split Q/K/V).
    pub attn_q: Option<TensorInfo>,
    /// `attn_k` [dim, n_kv_heads * head_dim] (split Q/K/V).
    pub attn_k: Option<TensorInfo>,
    /// `attn_v` [dim, n_kv_heads * head_dim] (split Q/K/V).
    pub attn_v: Option<TensorInfo>,
    /// `attn_qkv` [dim, q_dim + 2 * kv_dim]: Q, K and V in one projection (Phi-3, GPT-2).
    pub attn_qkv: Option<TensorInfo>,
    /// `attn_qkv.bias` [q_dim + 2 * kv_dim], f32 (GPT-2).
    pub attn_qkv_bias: Option<TensorInfo>,
    /// `attn_q.bias` [n_heads * head_dim], f32 (Qwen2).
    pub attn_q_bias: Option<TensorInfo>,
    /// `attn_k.bias` [n_kv_heads * head_dim], f32 (Qwen2).
    pub attn_k_bias: Option<TensorInfo>,
    /// `attn_v.bias` [n_kv_heads * head_dim], f32 (Qwen2).
    pub attn_v_bias: Option<TensorInfo>,
    /// `attn_q_norm` [head_dim], f32: per-head RMSNorm of queries (Gemma 3, Qwen3).
    pub attn_q_norm: Option<TensorInfo>,
    /// `attn_k_norm` [head_dim], f32: per-head RMSNorm of keys (Gemma 3, Qwen3).
    pub attn_k_norm: Option<TensorInfo>,
    /// `attn_output` [n_heads * head_dim, dim].
    pub attn_output: TensorInfo,
    /// `attn_output.bias` [dim], f32 (GPT-2, GPT-OSS; optional on Llama).
    pub attn_output_bias: Option<TensorInfo>,
    /// `attn_sinks.weight` [n_heads], f32: each query head's sink logit (GPT-OSS).
    pub attn_sinks: Option<TensorInfo>,
    /// `post_attention_norm` [dim], f32: RMSNorm of the attention output (Gemma 3).
    pub post_attention_norm: Option<TensorInfo>,
    /// `ffn_norm` [dim], f32: the norm before the feed-forward network (GPT-OSS names it
    /// `post_attention_norm`).
    pub ffn_norm: TensorInfo,
    /// `ffn_norm.bias` [dim], f32 (LayerNorm: GPT-2).
    pub ffn_norm_bias: Option<TensorInfo>,
    /// `ffn_gate_inp` [dim, n_expert]: the router of a mixture of experts (GPT-OSS).
    pub ffn_gate_inp: Option<TensorInfo>,
    /// `ffn_gate_inp.bias` [n_expert], f32 (GPT-OSS).
    pub ffn_gate_inp_bias: Option<TensorInfo>,
    /// `ffn_gate` [dim, ffn_dim] (gated FFN with separate gate).
    ///
    /// With a mixture of experts, this and the five tensors below are the experts' stacked
    /// along one more dimension: `ffn_gate_exps` [dim, ffn_dim, n_expert] (expert `e` is rows
    /// `e * ffn_dim..`), `ffn_up_exps` likewise, `ffn_down_exps` [ffn_dim, dim, n_expert], and
    /// their biases [ffn_dim or dim, n_expert].
    pub ffn_gate: Option<TensorInfo>,
    /// `ffn_gate.bias` [ffn_dim], f32 (optional on Llama).
    pub ffn_gate_bias: Option<TensorInfo>,
    /// `ffn_up` [dim, ffn_dim]; [dim, 2 * ffn_dim], gate rows first, for a fused gate+up (Phi-3).
    pub ffn_up: TensorInfo,
    /// `ffn_up.bias` [ffn_dim], f32 (GPT-2; optional on Llama).
    pub ffn_up_bias: Option<TensorInfo>,
    /// `ffn_down` [ffn_dim, dim].
    pub ffn_down: TensorInfo,
    /// `ffn_down.bias` [dim], f32 (GPT-2; optional on Llama).
    pub ffn_down_bias: Option<TensorInfo>,
    /// `post_ffw_norm` [dim], f32: RMSNorm of the FFN output (Gemma 3).
    pub post_ffw_norm: Option<TensorInfo>,
}

/// All tensors of a model.
#[derive(Clone, Debug)]
pub struct ModelWeights {
    /// `token_embd` [dim, vocab]: one row per token.
    pub token_embd: TensorInfo,
    /// `position_embd` [dim, context_length]: one learned row per position (GPT-2).
    pub position_embd: Option<TensorInfo>,
    /// The RoPE frequency factors [rope_dims / 2], f32, named by `ModelConfig::rope_factors`.
    pub rope_factors: Option<TensorInfo>,
    pub layers: Vec<LayerWeights>,
    /// `output_norm` [dim], f32: the final norm.
    pub output_norm: TensorInfo,
    /// `output_norm.bias` [dim], f32 (LayerNorm: GPT-2).
    pub output_norm_bias: Option<TensorInfo>,
    /// `output` [dim, vocab]; the same tensor as `token_embd` when the model ties them.
    pub output: TensorInfo,
}

/// What a tensor is allowed to be.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Role {
    /// A norm weight or bias: a plain f32 vector.
    Vector,
    /// A weight matrix (or embedding): any supported type, rows of whole blocks.
    Matrix,
}

impl ModelWeights {
    /// Find and check every tensor `config` asks for. Like llama.cpp's loader, a file tensor
    /// that no role takes is an error: it would be model content silently ignored.
    pub fn from_gguf(gguf: &GgufFile, config: &ModelConfig) -> Result<ModelWeights, EngineError> {
        let c = config;
        let (dim, q_dim, kv_dim, hd, ffn, vocab) = (
            c.dim,
            c.q_dim(),
            c.kv_dim(),
            c.head_dim,
            c.ffn_dim,
            c.vocab_size,
        );
        let token_embd = expect(gguf, "token_embd.weight", &[dim, vocab], Role::Matrix)?;
        let position_embd = match c.positions {
            Positions::Learned => Some(expect(
                gguf,
                "position_embd.weight",
                &[dim, c.context_length],
                Role::Matrix,
            )?),
            Positions::Rope => None,
        };
        let rope_factors = c
            .rope_factors
            .map(|f| expect(gguf, f.tensor_name(), &[c.rope_dims / 2], Role::Vector))
            .transpose()?;
        let output_norm = expect(gguf, "output_norm.weight", &[dim], Role::Vector)?;
        let layer_norm = c.norm == NormKind::Layer;
        let output_norm_bias = maybe(gguf, layer_norm, "output_norm.bias", &[dim], Role::Vector)?;
        let output = if c.tied_output {
            token_embd.clone()
        } else {
            expect(gguf, "output.weight", &[dim, vocab], Role::Matrix)?
        };

        let mut layers = Vec::with_capacity(c.n_layers);
        for il in 0..c.n_layers {
            let name = |n: &str| format!("blk.{il}.{n}");
            let get = |n: &str, shape: &[usize], role| expect(gguf, &name(n), shape, role);
            // Required when `on`, else used if the file has it (llama.cpp's optional biases).
            let opt =
                |on: bool, n: &str, shape: &[usize]| maybe(gguf, on, &name(n), shape, Role::Vector);
            // Present only when `on`.
            let only = |on: bool, n: &str, shape: &[usize], role| {
                if on {
                    get(n, shape, role).map(Some)
                } else {
                    Ok(None)
                }
            };
            let split = !c.fused_qkv;
            let gated = matches!(c.ffn, FfnKind::Gated | FfnKind::Moe);
            // A mixture of experts stacks each FFN tensor over its experts (`ffn_*_exps`, one
            // more dimension, biases required) and names the FFN's input norm
            // `post_attention_norm`.
            let (exps, n_expert) = match c.moe {
                Some(m) => ("_exps", vec![m.n_expert]),
                None => ("", vec![]),
            };
            let moe = c.moe.is_some();
            let ffn_t = |n: &str, kind: &str| format!("ffn_{n}{exps}.{kind}");
            let stacked = |shape: &[usize]| [shape, &n_expert].concat();
            let ffn_norm = if moe {
                "post_attention_norm.weight"
            } else {
                "ffn_norm.weight"
            };
            let up_rows = if c.ffn == FfnKind::FusedGateUp {
                2 * ffn
            } else {
                ffn
            };
            let qkv_rows = q_dim + 2 * kv_dim;
            let (pb, bias_split) = (c.proj_bias, c.qkv_bias && split);
            layers.push(LayerWeights {
                attn_norm: get("attn_norm.weight", &[dim], Role::Vector)?,
                attn_norm_bias: only(layer_norm, "attn_norm.bias", &[dim], Role::Vector)?,
                attn_q: only(split, "attn_q.weight", &[dim, q_dim], Role::Matrix)?,
                attn_k: only(split, "attn_k.weight", &[dim, kv_dim], Role::Matrix)?,
                attn_v: only(split, "attn_v.weight", &[dim, kv_dim], Role::Matrix)?,
                attn_qkv: only(!split, "attn_qkv.weight", &[dim, qkv_rows], Role::Matrix)?,
                attn_qkv_bias: if split {
                    None
                } else {
                    opt(c.qkv_bias, "attn_qkv.bias", &[qkv_rows])?
                },
                attn_q_bias: if split {
                    opt(bias_split, "attn_q.bias", &[q_dim])?
                } else {
                    None
                },
                attn_k_bias: if split {
                    opt(bias_split, "attn_k.bias", &[kv_dim])?
                } else {
                    None
                },
                attn_v_bias: if split {
                    opt(bias_split, "attn_v.bias", &[kv_dim])?
                } else {
                    None
                },
                attn_q_norm: only(c.qk_norm, "attn_q_norm.weight", &[hd], Role::Vector)?,
                attn_k_norm: only(c.qk_norm, "attn_k_norm.weight", &[hd], Role::Vector)?,
                attn_output: get("attn_output.weight", &[q_dim, dim], Role::Matrix)?,
                attn_output_bias: opt(c.attn_out_bias, "attn_output.bias", &[dim])?,
                attn_sinks: only(
                    c.attn_sinks,
                    "attn_sinks.weight",
                    &[c.n_heads],
                    Role::Vector,
                )?,
                post_attention_norm: only(
                    c.post_norms,
                    "post_attention_norm.weight",
                    &[dim],
                    Role::Vector,
                )?,
                ffn_norm: get(ffn_norm, &[dim], Role::Vector)?,
                ffn_norm_bias: only(layer_norm, "ffn_norm.bias", &[dim], Role::Vector)?,
                ffn_gate_inp: only(moe, "ffn_gate_inp.weight", &stacked(&[dim]), Role::Matrix)?,
                ffn_gate_inp_bias: only(moe, "ffn_gate_inp.bias", &n_expert, Role::Vector)?,
                ffn_gate: only(
                    gated,
                    &ffn_t("gate", "weight"),
                    &stacked(&[dim, ffn]),
                    Role::Matrix,
                )?,
                ffn_gate_bias: if gated {
                    opt(moe, &ffn_t("gate", "bias"), &stacked(&[ffn]))?
                } else {
                    None
                },
                ffn_up: get(
                    &ffn_t("up", "weight"),
                    &stacked(&[dim, up_rows]),
                    Role::Matrix,
                )?,
                ffn_up_bias: opt(pb || moe, &ffn_t("up", "bias"), &stacked(&[up_rows]))?,
                ffn_down: get(
                    &ffn_t("down", "weight"),
                    &stacked(&[ffn, dim]),
                    Role::Matrix,
                )?,
                ffn_down_bias: opt(pb || moe, &ffn_t("down", "bias"), &stacked(&[dim]))?,
                post_ffw_norm: only(c.post_norms, "post_ffw_norm.weight", &[dim], Role::Vector)?,
            });
        }
        let w = ModelWeights {
            token_embd,
            position_embd,
            rope_factors,
            layers,
            output_norm,
            output_norm_bias,
            output,
        };
        w.check_all_used(gguf)?;
        Ok(w)
    }

    /// Every file tensor must have a role (LongRoPE files carry both factor sets; one is used).
    fn check_all_used(&self, gguf: &GgufFile) -> Result<(), EngineError> {
        let used: std::collections::HashSet<&str> =
            self.all().iter().map(|t| t.name.as_str()).collect();
        for t in gguf.tensors() {
            let n = t.name.as_str();
            let spare_factors = self.rope_factors.is_some()
                && (n == "rope_factors_long.weight" || n == "rope_factors_short.weight");
            if !used.contains(n) && !spare_factors {
                return Err(bad(n, "not used by this architecture; unsupported"));
            }
        }
        Ok(())
    }

    /// Every distinct tensor, each once (a tied output is not repeated).
    pub fn all(&self) -> Vec<&TensorInfo> {
        let mut all = vec![&self.token_embd, &self.output_norm];
        if self.output.name != self.token_embd.name {
            all.push(&self.output);
        }
        all.extend(
            [
                &self.position_embd,
                &self.rope_factors,
                &self.output_norm_bias,
            ]
            .into_iter()
            .flatten(),
        );
        for l in &self.layers {
            all.extend([
                &l.attn_norm,
                &l.attn_output,
                &l.ffn_norm,
                &l.ffn_up,
                &l.ffn_down,
            ]);
            all.extend(
                [
                    &l.attn_norm_bias,
                    &l.attn_q,
                    &l.attn_k,
                    &l.attn_v,
                    &l.attn_qkv,
                    &l.attn_qkv_bias,
                    &l.attn_q_bias,
                    &l.attn_k_bias,
                    &l.attn_v_bias,
                    &l.attn_q_norm,
                    &l.attn_k_norm,
                    &l.attn_output_bias,
                    &l.attn_sinks,
                    &l.post_attention_norm,
                    &l.ffn_gate_inp,
                    &l.ffn_gate_inp_bias,
                    &l.ffn_norm_bias,
                    &l.ffn_gate,
                    &l.ffn_gate_bias,
                    &l.ffn_up_bias,
                    &l.ffn_down_bias,
                    &l.post_ffw_norm,
                ]
                .into_iter()
                .flatten(),
            );
        }
        all
    }

    /// Bytes of all distinct tensors.
    pub fn total_bytes(&self) -> u64 {
        self.all().iter().map(|t| t.size).sum()
    }
}

/// The tensor `name` when `required` or when the file has it; checked like [`expect`].
fn maybe(
    gguf: &GgufFile,
    required: bool,
    name: &str,
    shape: &[usize],
    role: Role,
) -> Result<Option<TensorInfo>, EngineError> {
    if required || gguf.tensor(name).is_some() {
        expect(gguf, name, shape, role).map(Some)
    } else {
        Ok(None)
    }
}

fn bad(tensor: &str, problem: impl Into<String>) -> EngineError {
    EngineError::BadTensor {
        tensor: tensor.to_string(),
        problem: problem.into(),
    }
}

/// The tensor `name`, checked to have exactly `shape` (ggml order), a type fit for `role`, and
/// all its bytes in the file.
fn expect(
    gguf: &GgufFile,
    name: &str,
    shape: &[usize],
    role: Role,
) -> Result<TensorInfo, EngineError> {
    let t = gguf.tensor(name).ok_or_else(|| bad(name, "missing"))?;
    let dims: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
    if dims != shape {
        return Err(bad(name, format!("shape {dims:?}, expected {shape:?}")));
    }
    match role {
        Role::Vector if t.ty != GgmlType::F32 => {
            return Err(bad(name, format!("type {}, expected f32", t.ty.name())));
        }
        Role::Matrix if t.row_len() % t.ty.block_size() != 0 => {
            return Err(bad(
                name,
                format!(
                    "rows of {} are not whole {} blocks of {}",
                    t.row_len(),
                    t.ty.name(),
                    t.ty.block_size()
                ),
            ));
        }
        _ => {}
    }
    let want = t.ty.row_bytes(t.row_len())? as u64 * t.n_rows() as u64;
    let have = gguf.tensor_data(t).len() as u64;
    if t.size != want || have != want {
        return Err(bad(
            name,
            format!("holds {have} bytes (declared {}), expected {want}", t.size),
        ));
    }
    Ok(t.clone())
}
