//! A model's hyper-parameters, read from the GGUF metadata (`{arch}.*` keys), plus the few
//! architecture constants llama.cpp hard-codes because the file does not store them.
//!
//! Covered: `llama` (Llama 2/3, SmolLM2, Mistral-style: RMSNorm, GQA, SwiGLU, interleaved-pair
//! RoPE), `qwen2` (the same with q/k/v biases and NEOX RoPE), `gemma3` (q/k RMSNorm,
//! post-attention and post-FFN norms, GELU-tanh GLU, scaled embeddings, interleaved sliding-window
//! and global attention layers with two RoPE bases).

use crate::EngineError;
use crate::gguf::GgufFile;

/// Gemma 3: RoPE base of the sliding-window (local) layers. llama.cpp's
/// `rope_freq_base_train_swa`; used when the file has no `gemma3.rope.freq_base_swa`.
pub const GEMMA3_LOCAL_ROPE_BASE: f32 = 10_000.0;

/// Gemma 3: every `GEMMA3_SLIDING_PATTERN`-th layer (the 6th, 12th, ...) attends globally, the
/// others through the sliding window (llama.cpp's `set_swa_pattern(6)`).
pub const GEMMA3_SLIDING_PATTERN: usize = 6;

/// Gemma 3: the layer count of the 27B model, the one size whose `query_pre_attn_scalar` is
/// `dim / n_heads` instead of the head dimension (llama.cpp `LLM_TYPE_27B`).
pub const GEMMA3_27B_LAYERS: usize = 62;

/// Caps on hyper-parameters read from a (hostile) file, well above any real model.
pub const MAX_LAYERS: usize = 1024;
pub const MAX_DIM: usize = 1 << 16;
pub const MAX_HEADS: usize = 1024;
pub const MAX_HEAD_DIM: usize = 1024;
pub const MAX_FFN_DIM: usize = 1 << 20;
pub const MAX_VOCAB: usize = 1 << 22;
pub const MAX_CONTEXT: usize = 1 << 24;

/// The architectures this engine runs.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    Llama,
    Qwen2,
    Gemma3,
}

impl Arch {
    /// Parse `general.architecture`.
    pub fn from_name(name: &str) -> Result<Arch, EngineError> {
        match name {
            "llama" => Ok(Arch::Llama),
            "qwen2" => Ok(Arch::Qwen2),
            "gemma3" => Ok(Arch::Gemma3),
            other => Err(EngineError::UnsupportedArchitecture(other.to_string())),
        }
    }

    /// The GGUF name, also the prefix of its metadata keys.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Gemma3 => "gemma3",
        }
    }
}

/// How RoPE pairs the dimensions of a head.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs `(x[2i], x[2i+1])` (ggml's `LLAMA_ROPE_TYPE_NORM`). Llama GGUF files use
    /// it because the converter permutes the rows of Q and K.
    Normal,
    /// Halves `(x[i], x[i + n_rot/2])` (ggml's `LLAMA_ROPE_TYPE_NEOX`, HF's `rotate_half`).
    Neox,
}

/// The gate activation of the gated feed-forward network: `act(gate(x)) * up(x)`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Activation {
    /// SiLU, `x * sigmoid(x)` (SwiGLU).
    Silu,
    /// GELU, tanh approximation (GeGLU).
    GeluTanh,
}

/// Every hyper-parameter the forward pass needs.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub arch: Arch,
    /// Transformer blocks.
    pub n_layers: usize,
    /// Width of the residual stream (`embedding_length`).
    pub dim: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (grouped-query attention: `n_heads` is a multiple of it).
    pub n_kv_heads: usize,
    /// Dimension of one query/key/value head (`attention.key_length`, default `dim / n_heads`).
    pub head_dim: usize,
    /// Hidden width of the feed-forward network.
    pub ffn_dim: usize,
    /// Vocabulary size (rows of the embedding, length of a logits row).
    pub vocab_size: usize,
    /// Context the model was trained for: the longest sequence a KV slot may hold.
    pub context_length: usize,
    /// Epsilon of every RMSNorm.
    pub rms_eps: f32,
    /// RoPE base frequency of the global-attention layers (all layers outside Gemma 3).
    pub rope_base: f32,
    /// RoPE base frequency of the sliding-window layers (Gemma 3 only).
    pub rope_base_local: Option<f32>,
    /// Linear RoPE scaling of the global-attention layers (`rope.scaling.type` "linear":
    /// `1 / rope.scaling.factor`; 1 without scaling): positions are multiplied by it.
    pub rope_freq_scale: f32,
    /// Leading dimensions of each head that RoPE rotates (even, at most `head_dim`).
    pub rope_dims: usize,
    pub rope_style: RopeStyle,
    /// The attention window of the sliding layers: a query at position `p` sees keys at
    /// positions `p - window + 1 ..= p`.
    pub sliding_window: Option<usize>,
    /// Per layer: whether it uses the sliding window (all false without one).
    pub sliding_layers: Vec<bool>,
    /// Multiplier of the query-key dot products (`1/sqrt(head_dim)` outside Gemma 3).
    pub attn_scale: f32,
    /// Multiplier of the token embedding (Gemma's `sqrt(dim)`; 1 elsewhere).
    pub embed_scale: f32,
    /// The output projection is the token embedding (no `output.weight` in the file).
    pub tied_output: bool,
    /// Q, K and V projections carry biases (Qwen2).
    pub qkv_bias: bool,
    /// Per-head RMSNorm of queries and keys before RoPE (Gemma 3).
    pub qk_norm: bool,
    /// RMSNorm of the attention output and of the FFN output before their residual adds (Gemma 3).
    pub post_norms: bool,
    pub activation: Activation,
    /// Tokens that end generation (`tokenizer.ggml.eos_token_id`, `eot_token_id`, `eom_token_id`).
    pub eos_token_ids: Vec<u32>,
    /// `tokenizer.ggml.bos_token_id`, if any.
    pub bos_token_id: Option<u32>,
}

impl ModelConfig {
    /// Read and check the hyper-parameters of `gguf`'s architecture. `vocab_from_tensor` is the
    /// row count of `token_embd.weight`, used when the file has no `{arch}.vocab_size`.
    pub fn from_gguf(
        gguf: &GgufFile,
        vocab_from_tensor: usize,
    ) -> Result<ModelConfig, EngineError> {
        let arch = Arch::from_name(gguf.architecture()?)?;
        let key = |k: &str| format!("{}.{k}", arch.name());
        let usize_key =
            |k: &str| -> Result<usize, EngineError> { Ok(gguf.get_u32(&key(k))? as usize) };
        let usize_opt = |k: &str| -> Result<Option<usize>, EngineError> {
            Ok(gguf.get_u32_opt(&key(k))?.map(|v| v as usize))
        };

        let n_layers = capped(&key("block_count"), usize_key("block_count")?, MAX_LAYERS)?;
        let dim = capped(
            &key("embedding_length"),
            usize_key("embedding_length")?,
            MAX_DIM,
        )?;
        let n_heads = capped(
            &key("attention.head_count"),
            usize_key("attention.head_count")?,
            MAX_HEADS,
        )?;
        let n_kv_heads = capped(
            &key("attention.head_count_kv"),
            usize_opt("attention.head_count_kv")?.unwrap_or(n_heads),
            MAX_HEADS,
        )?;
        if n_heads % n_kv_heads != 0 {
            return Err(bad_meta(
                &key("attention.head_count_kv"),
                format!("{n_heads} query heads are not a multiple of {n_kv_heads} KV heads"),
            ));
        }
        let head_dim = match usize_opt("attention.key_length")? {
            Some(d) => d,
            None if dim % n_heads == 0 => dim / n_heads,
            None => {
                return Err(bad_meta(
                    &key("attention.key_length"),
                    format!("missing, and dim {dim} is not a multiple of {n_heads} heads"),
                ));
            }
        };
        let head_dim = capped(&key("attention.key_length"), head_dim, MAX_HEAD_DIM)?;
        if let Some(v) = usize_opt("attention.value_length")?
            && v != head_dim
        {
            return Err(bad_meta(
                &key("attention.value_length"),
                format!("{v} differs from key_length {head_dim}; unsupported"),
            ));
        }
        let ffn_dim = capped(
            &key("feed_forward_length"),
            usize_key("feed_forward_length")?,
            MAX_FFN_DIM,
        )?;
        let vocab_size = match usize_opt("vocab_size")? {
            Some(v) if v != vocab_from_tensor => {
                return Err(bad_meta(
                    &key("vocab_size"),
                    format!("{v} differs from the {vocab_from_tensor} rows of token_embd.weight"),
                ));
            }
            _ => vocab_from_tensor,
        };
        let vocab_size = capped(&key("vocab_size"), vocab_size, MAX_VOCAB)?;
        let context_length = capped(
            &key("context_length"),
            usize_key("context_length")?,
            MAX_CONTEXT,
        )?;
        let rms_eps = gguf.get_f32(&key("attention.layer_norm_rms_epsilon"))?;
        if !(rms_eps.is_finite() && rms_eps >= 0.0) {
            return Err(bad_meta(
                &key("attention.layer_norm_rms_epsilon"),
                format!("{rms_eps} is not a finite non-negative number"),
            ));
        }
        let rope_base = positive_f32(gguf, &key("rope.freq_base"), 10_000.0)?;
        let rope_dims = usize_opt("rope.dimension_count")?.unwrap_or(head_dim);
        if rope_dims % 2 != 0 || rope_dims > head_dim {
            return Err(bad_meta(
                &key("rope.dimension_count"),
                format!("{rope_dims} must be even and at most the head dimension {head_dim}"),
            ));
        }

        let rope_freq_scale =
            rope_scaling(gguf, &key("rope.scaling.type"), &key("rope.scaling.factor"))?;
        if gguf.tensor("rope_freqs.weight").is_some() {
            return Err(EngineError::BadTensor {
                tensor: "rope_freqs.weight".into(),
                problem: "per-dimension RoPE frequency factors (Llama 3 scaling) are not supported"
                    .into(),
            });
        }

        let default_scale = 1.0 / (head_dim as f32).sqrt();
        let eos_token_ids = eos_ids(gguf, vocab_size)?;
        let bos_token_id = gguf.get_u32_opt("tokenizer.ggml.bos_token_id")?;
        if let Some(id) = bos_token_id
            && id as usize >= vocab_size
        {
            return Err(bad_meta(
                "tokenizer.ggml.bos_token_id",
                format!("{id} is outside the vocabulary of {vocab_size}"),
            ));
        }
        let mut cfg = ModelConfig {
            arch,
            n_layers,
            dim,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn_dim,
            vocab_size,
            context_length,
            rms_eps,
            rope_base,
            rope_base_local: None,
            rope_freq_scale,
            rope_dims,
            rope_style: RopeStyle::Normal,
            sliding_window: None,
            sliding_layers: vec![false; n_layers],
            attn_scale: default_scale,
            embed_scale: 1.0,
            tied_output: gguf.tensor("output.weight").is_none(),
            qkv_bias: false,
            qk_norm: false,
            post_norms: false,
            activation: Activation::Silu,
            eos_token_ids,
            bos_token_id,
        };
        match arch {
            Arch::Llama => {}
            Arch::Qwen2 => {
                cfg.rope_style = RopeStyle::Neox;
                cfg.qkv_bias = true;
            }
            Arch::Gemma3 => {
                cfg.rope_style = RopeStyle::Neox;
                cfg.qk_norm = true;
                cfg.post_norms = true;
                cfg.activation = Activation::GeluTanh;
                cfg.embed_scale = (dim as f32).sqrt();
                cfg.rope_base_local = Some(positive_f32(
                    gguf,
                    &key("rope.freq_base_swa"),
                    GEMMA3_LOCAL_ROPE_BASE,
                )?);
                let window = usize_key("attention.sliding_window")?;
                if window == 0 {
                    return Err(bad_meta(
                        &key("attention.sliding_window"),
                        "must be positive",
                    ));
                }
                cfg.sliding_window = Some(window);
                cfg.sliding_layers = (0..n_layers)
                    .map(|il| il % GEMMA3_SLIDING_PATTERN < GEMMA3_SLIDING_PATTERN - 1)
                    .collect();
                // query_pre_attn_scalar: the head dimension, except on the 27B model.
                let query_pre_attn_scalar = if n_layers == GEMMA3_27B_LAYERS {
                    (dim / n_heads) as f32
                } else {
                    head_dim as f32
                };
                cfg.attn_scale = 1.0 / query_pre_attn_scalar.sqrt();
            }
        }
        Ok(cfg)
    }

    /// Width of all query heads together (`n_heads * head_dim`).
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    /// Width of all key (or value) heads together (`n_kv_heads * head_dim`).
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// The RoPE base of layer `layer` (local base on Gemma 3's sliding layers).
    pub fn rope_base_of(&self, layer: usize) -> f32 {
        match self.rope_base_local {
            Some(local) if self.sliding_layers[layer] => local,
            _ => self.rope_base,
        }
    }

    /// The RoPE position scale of layer `layer` (Gemma 3's sliding layers are never scaled,
    /// as in llama.cpp's `rope_freq_scale_train_swa`).
    pub fn rope_freq_scale_of(&self, layer: usize) -> f32 {
        if self.rope_base_local.is_some() && self.sliding_layers[layer] {
            1.0
        } else {
            self.rope_freq_scale
        }
    }

    /// The attention window of layer `layer`, if it slides.
    pub fn window_of(&self, layer: usize) -> Option<usize> {
        if self.sliding_layers[layer] {
            self.sliding_window
        } else {
            None
        }
    }
}

fn bad_meta(key: &str, problem: impl Into<String>) -> EngineError {
    EngineError::BadMetadata {
        key: key.to_string(),
        problem: problem.into(),
    }
}

/// `value` when it lies in `1..=max`, else a `BadMetadata` naming `key`.
fn capped(key: &str, value: usize, max: usize) -> Result<usize, EngineError> {
    if value == 0 || value > max {
        return Err(bad_meta(key, format!("{value} is outside 1..={max}")));
    }
    Ok(value)
}

/// An optional positive finite f32 key, `default` when absent.
fn positive_f32(gguf: &GgufFile, key: &str, default: f32) -> Result<f32, EngineError> {
    let v = gguf.get_f32_opt(key)?.unwrap_or(default);
    if !(v.is_finite() && v > 0.0) {
        return Err(bad_meta(
            key,
            format!("{v} is not a positive finite number"),
        ));
    }
    Ok(v)
}

/// The RoPE position scale from `rope.scaling.*`: 1 without scaling, `1 / factor` for linear
/// scaling; other kinds (YaRN, LongRoPE, ...) are rejected rather than run wrongly.
fn rope_scaling(gguf: &GgufFile, type_key: &str, factor_key: &str) -> Result<f32, EngineError> {
    match gguf.get_str_opt(type_key)? {
        None | Some("none") => Ok(1.0),
        Some("linear") => {
            let factor = positive_f32(gguf, factor_key, 1.0)?;
            Ok(1.0 / factor)
        }
        Some(other) => Err(bad_meta(
            type_key,
            format!("RoPE scaling `{other}` is not supported"),
        )),
    }
}

/// The end-of-generation tokens named in the tokenizer metadata, deduplicated, in key order.
fn eos_ids(gguf: &GgufFile, vocab_size: usize) -> Result<Vec<u32>, EngineError> {
    let mut ids = Vec::new();
    for k in [
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.eot_token_id",
        "tokenizer.ggml.eom_token_id",
    ] {
        let Some(id) = gguf.get_u32_opt(k)? else {
            continue;
        };
        if id as usize >= vocab_size {
            return Err(bad_meta(
                k,
                format!("{id} is outside the vocabulary of {vocab_size}"),
            ));
        }
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}
