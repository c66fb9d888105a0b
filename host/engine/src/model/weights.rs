//! The tensor table of a model: which GGUF tensor plays which role, by llama.cpp's names, each
//! checked for presence, shape and type against the [`ModelConfig`].
//!
//! Backend-neutral: entries are [`TensorInfo`]s (name, shape, type, file offset), so the CPU
//! backend reads the mapped bytes in place and the CUDA backend uploads exactly these tensors.
//! Shapes are written ggml-style, `[ne0, ne1]` with `ne0` the contiguous row length: a projection
//! from `n_in` to `n_out` features is `[n_in, n_out]`, i.e. `n_out` rows of `n_in` weights.

use super::config::ModelConfig;
use crate::EngineError;
use crate::gguf::{GgufFile, TensorInfo};
use crate::quant::GgmlType;

/// One transformer block's tensors (`blk.N.*`).
#[derive(Clone, Debug)]
pub struct LayerWeights {
    /// `attn_norm` [dim], f32: RMSNorm before attention.
    pub attn_norm: TensorInfo,
    /// `attn_q` [dim, n_heads * head_dim].
    pub attn_q: TensorInfo,
    /// `attn_k` [dim, n_kv_heads * head_dim].
    pub attn_k: TensorInfo,
    /// `attn_v` [dim, n_kv_heads * head_dim].
    pub attn_v: TensorInfo,
    /// `attn_q.bias` [n_heads * head_dim], f32 (Qwen2).
    pub attn_q_bias: Option<TensorInfo>,
    /// `attn_k.bias` [n_kv_heads * head_dim], f32 (Qwen2).
    pub attn_k_bias: Option<TensorInfo>,
    /// `attn_v.bias` [n_kv_heads * head_dim], f32 (Qwen2).
    pub attn_v_bias: Option<TensorInfo>,
    /// `attn_q_norm` [head_dim], f32: per-head RMSNorm of queries (Gemma 3).
    pub attn_q_norm: Option<TensorInfo>,
    /// `attn_k_norm` [head_dim], f32: per-head RMSNorm of keys (Gemma 3).
    pub attn_k_norm: Option<TensorInfo>,
    /// `attn_output` [n_heads * head_dim, dim].
    pub attn_output: TensorInfo,
    /// `post_attention_norm` [dim], f32: RMSNorm of the attention output (Gemma 3).
    pub post_attention_norm: Option<TensorInfo>,
    /// `ffn_norm` [dim], f32: RMSNorm before the feed-forward network.
    pub ffn_norm: TensorInfo,
    /// `ffn_gate` [dim, ffn_dim].
    pub ffn_gate: TensorInfo,
    /// `ffn_up` [dim, ffn_dim].
    pub ffn_up: TensorInfo,
    /// `ffn_down` [ffn_dim, dim].
    pub ffn_down: TensorInfo,
    /// `post_ffw_norm` [dim], f32: RMSNorm of the FFN output (Gemma 3).
    pub post_ffw_norm: Option<TensorInfo>,
}

/// All tensors of a model.
#[derive(Clone, Debug)]
pub struct ModelWeights {
    /// `token_embd` [dim, vocab]: one row per token.
    pub token_embd: TensorInfo,
    pub layers: Vec<LayerWeights>,
    /// `output_norm` [dim], f32: the final RMSNorm.
    pub output_norm: TensorInfo,
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
    /// Find and check every tensor `config` asks for.
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
        let output_norm = expect(gguf, "output_norm.weight", &[dim], Role::Vector)?;
        let output = if c.tied_output {
            token_embd.clone()
        } else {
            expect(gguf, "output.weight", &[dim, vocab], Role::Matrix)?
        };

        let mut layers = Vec::with_capacity(c.n_layers);
        for il in 0..c.n_layers {
            let get = |name: &str, shape: &[usize], role| {
                expect(gguf, &format!("blk.{il}.{name}.weight"), shape, role)
            };
            let bias = |name: &str, len: usize| -> Result<Option<TensorInfo>, EngineError> {
                if c.qkv_bias {
                    expect(gguf, &format!("blk.{il}.{name}.bias"), &[len], Role::Vector).map(Some)
                } else {
                    Ok(None)
                }
            };
            let opt =
                |on: bool, name: &str, len: usize| -> Result<Option<TensorInfo>, EngineError> {
                    if on {
                        get(name, &[len], Role::Vector).map(Some)
                    } else {
                        Ok(None)
                    }
                };
            layers.push(LayerWeights {
                attn_norm: get("attn_norm", &[dim], Role::Vector)?,
                attn_q: get("attn_q", &[dim, q_dim], Role::Matrix)?,
                attn_k: get("attn_k", &[dim, kv_dim], Role::Matrix)?,
                attn_v: get("attn_v", &[dim, kv_dim], Role::Matrix)?,
                attn_q_bias: bias("attn_q", q_dim)?,
                attn_k_bias: bias("attn_k", kv_dim)?,
                attn_v_bias: bias("attn_v", kv_dim)?,
                attn_q_norm: opt(c.qk_norm, "attn_q_norm", hd)?,
                attn_k_norm: opt(c.qk_norm, "attn_k_norm", hd)?,
                attn_output: get("attn_output", &[q_dim, dim], Role::Matrix)?,
                post_attention_norm: opt(c.post_norms, "post_attention_norm", dim)?,
                ffn_norm: get("ffn_norm", &[dim], Role::Vector)?,
                ffn_gate: get("ffn_gate", &[dim, ffn], Role::Matrix)?,
                ffn_up: get("ffn_up", &[dim, ffn], Role::Matrix)?,
                ffn_down: get("ffn_down", &[ffn, dim], Role::Matrix)?,
                post_ffw_norm: opt(c.post_norms, "post_ffw_norm", dim)?,
            });
        }
        Ok(ModelWeights {
            token_embd,
            layers,
            output_norm,
            output,
        })
    }

    /// Every distinct tensor, each once (a tied output is not repeated).
    pub fn all(&self) -> Vec<&TensorInfo> {
        let mut all = vec![&self.token_embd, &self.output_norm];
        if self.output.name != self.token_embd.name {
            all.push(&self.output);
        }
        for l in &self.layers {
            all.extend([
                &l.attn_norm,
                &l.attn_q,
                &l.attn_k,
                &l.attn_v,
                &l.attn_output,
                &l.ffn_norm,
                &l.ffn_gate,
                &l.ffn_up,
                &l.ffn_down,
            ]);
            all.extend(
                [
                    &l.attn_q_bias,
                    &l.attn_k_bias,
                    &l.attn_v_bias,
                    &l.attn_q_norm,
                    &l.attn_k_norm,
                    &l.post_attention_norm,
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
