//! Longer than 600 lines on purpose: the metadata of every supported architecture (nine
//! families, their RoPE variants and expert keys) is read in one place, so a reader sees
//! every key the worker accepts and the typed error for each it refuses.
//!
//! A model's hyper-parameters, read from the GGUF metadata (`{arch}.*` keys), plus the few
//! architecture constants llama.cpp hard-codes because the file does not store them.
//!
//! Covered: `llama` (Llama 2/3/3.1+, SmolLM2, Mistral: RMSNorm, GQA, SwiGLU, interleaved-pair
//! RoPE, optional sliding window), `qwen2` (the same with q/k/v biases and NEOX RoPE), `qwen3`
//! (per-head q/k RMSNorm, NEOX, no biases), `phi3` (fused QKV and gate+up projections, NEOX,
//! LongRoPE factors), `gemma3` (q/k RMSNorm, post-attention and post-FFN norms, GELU-tanh GLU,
//! scaled embeddings, interleaved sliding-window and global attention layers with two RoPE
//! bases), `gpt2` (LayerNorm with biases, learned positions, fused QKV, biased projections,
//! plain GELU FFN), `gpt-oss` (GPT-OSS: a mixture of experts with a softmax over the chosen
//! experts' router logits and a clamped SwiGLU, attention sinks, biases on every projection,
//! alternating sliding-window and full layers, NEOX RoPE with YaRN). Each family is a handful of lines in [`ModelConfig::from_gguf`]'s `match`;
//! the backends run the per-layer plan ([`crate::plan`]) these fields describe.

use crate::gguf::GgufFile;
use crate::rope::{self, RopeFactors, RopeScaling};
use orcd_device::EngineError;

/// Gemma 3: RoPE base of the sliding-window (local) layers. llama.cpp's
/// `rope_freq_base_train_swa`; used when the file has no `gemma3.rope.freq_base_swa`.
pub const GEMMA3_LOCAL_ROPE_BASE: f32 = 10_000.0;

/// Gemma 3: every `GEMMA3_SLIDING_PATTERN`-th layer (the 6th, 12th, ...) attends globally, the
/// others through the sliding window (llama.cpp's `set_swa_pattern(6)`).
pub const GEMMA3_SLIDING_PATTERN: usize = 6;

/// Gemma 3: the layer count of the 27B model, the one size whose `query_pre_attn_scalar` is
/// `dim / n_heads` instead of the head dimension (llama.cpp `LLM_TYPE_27B`).
pub const GEMMA3_27B_LAYERS: usize = 62;

/// GPT-OSS: every `GPT_OSS_SLIDING_PATTERN`-th layer from the second on attends globally, the
/// others through the sliding window (llama.cpp's `load_swa_pattern(ml, 2)`: layers 0, 2, 4, ...
/// slide).
pub const GPT_OSS_SLIDING_PATTERN: usize = 2;

/// GPT-OSS's clamped SwiGLU (llama.cpp's `LLM_FFN_SWIGLU_OAI_MOE`, constants it hard-codes):
/// `min(g, L) * sigmoid(ALPHA * min(g, L)) * (clamp(u, -L, L) + 1)`.
pub const SWIGLU_OAI_ALPHA: f32 = 1.702;
pub const SWIGLU_OAI_LIMIT: f32 = 7.0;

/// Caps on hyper-parameters read from a (hostile) file, well above any real model.
pub const MAX_LAYERS: usize = 1024;
pub const MAX_DIM: usize = 1 << 16;
pub const MAX_HEADS: usize = 1024;
pub const MAX_HEAD_DIM: usize = 1024;
pub const MAX_FFN_DIM: usize = 1 << 20;
pub const MAX_VOCAB: usize = 1 << 22;
pub const MAX_CONTEXT: usize = 1 << 24;
/// llama.cpp's `LLAMA_MAX_EXPERTS`.
pub const MAX_EXPERTS: usize = 512;

/// The architectures this engine runs.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    Llama,
    Qwen2,
    Qwen3,
    Phi3,
    Gemma3,
    Gpt2,
    GptOss,
}

impl Arch {
    /// Parse `general.architecture`.
    pub fn from_name(name: &str) -> Result<Arch, EngineError> {
        match name {
            "llama" => Ok(Arch::Llama),
            "qwen2" => Ok(Arch::Qwen2),
            "qwen3" => Ok(Arch::Qwen3),
            "phi3" => Ok(Arch::Phi3),
            "gemma3" => Ok(Arch::Gemma3),
            "gpt2" => Ok(Arch::Gpt2),
            "gpt-oss" => Ok(Arch::GptOss),
            other => Err(EngineError::UnsupportedArchitecture(other.to_string())),
        }
    }

    /// The GGUF name, also the prefix of its metadata keys.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Phi3 => "phi3",
            Arch::Gemma3 => "gemma3",
            Arch::Gpt2 => "gpt2",
            Arch::GptOss => "gpt-oss",
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
    /// GELU, tanh approximation (GeGLU; GPT-2's plain FFN; ggml's `ggml_gelu`).
    GeluTanh,
    /// GPT-OSS's clamped SwiGLU, ggml's `swiglu_oai` with [`SWIGLU_OAI_ALPHA`] and
    /// [`SWIGLU_OAI_LIMIT`]: the gate capped above, the up projection clamped and offset by 1.
    SwigluOai,
}

/// The normalisation before each sublayer and at the output.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum NormKind {
    /// `x / rms(x) * w` (every family but GPT-2).
    Rms,
    /// `(x - mean) / std * w + b` (GPT-2; `*_norm.bias` tensors).
    Layer,
}

/// How the feed-forward network is laid out.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum FfnKind {
    /// `down(act(gate(x)) * up(x))`, separate `ffn_gate` and `ffn_up` (Llama, Qwen, Gemma).
    Gated,
    /// The same with gate and up fused in one `ffn_up` of `2 * ffn_dim` outputs, gate first
    /// (Phi-3; ggml's `swiglu` of one tensor).
    FusedGateUp,
    /// `down(act(up(x)))` with no gate (GPT-2).
    Plain,
    /// A mixture of experts (GPT-OSS): a router picks `n_expert_used` of `n_expert` gated FFNs
    /// per token (each with biases), weighted by the softmax of the chosen router logits. See
    /// [`MoeConfig`].
    Moe,
}

/// The mixture of experts of [`FfnKind::Moe`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct MoeConfig {
    /// Experts per layer (`expert_count`).
    pub n_expert: usize,
    /// Experts each token runs (`expert_used_count`).
    pub n_expert_used: usize,
}

/// How token positions enter the model.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Positions {
    /// Rotary embeddings on queries and keys.
    Rope,
    /// A learned `position_embd.weight` row added to the token embedding (GPT-2); no RoPE.
    Learned,
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
    /// Epsilon of every norm: RMSNorm (`attention.layer_norm_rms_epsilon`) or LayerNorm
    /// (`attention.layer_norm_epsilon`), per [`ModelConfig::norm`].
    pub rms_eps: f32,
    pub norm: NormKind,
    /// RoPE base frequency of the global-attention layers (all layers outside Gemma 3).
    pub rope_base: f32,
    /// RoPE base frequency of the sliding-window layers (Gemma 3 only).
    pub rope_base_local: Option<f32>,
    /// RoPE position scale of the global-attention layers (`1 / rope.scaling.factor` for
    /// linear and YaRN scaling; 1 without): positions are multiplied by it. The same value as
    /// `rope_scaling.freq_scale`.
    pub rope_freq_scale: f32,
    /// The whole RoPE scaling of the global-attention layers (YaRN mix and magnitude included).
    pub rope_scaling: RopeScaling,
    /// The per-frequency factor tensor RoPE divides by (Llama 3.1+, Phi-3 LongRoPE), if any.
    pub rope_factors: Option<RopeFactors>,
    pub positions: Positions,
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
    /// Q, K and V projections carry biases that the file must have (Qwen2; GPT-2's fused
    /// `attn_qkv.bias`). Other families use such biases when the file has them, as llama.cpp.
    pub qkv_bias: bool,
    /// Q, K and V come from one fused `attn_qkv` projection (rows: all of Q, then K, then V),
    /// as the file has it (Phi-3, GPT-2).
    pub fused_qkv: bool,
    /// The attention output and FFN projections and the norms carry biases the file must have
    /// (GPT-2).
    pub proj_bias: bool,
    pub ffn: FfnKind,
    /// Per-head RMSNorm of queries and keys before RoPE (Gemma 3).
    pub qk_norm: bool,
    /// RMSNorm of the attention output and of the FFN output before their residual adds (Gemma 3).
    pub post_norms: bool,
    pub activation: Activation,
    /// The experts of [`FfnKind::Moe`] (`ffn_dim` is then each expert's hidden width).
    pub moe: Option<MoeConfig>,
    /// A learned logit per query head that joins every softmax of its attention scores
    /// (`attn_sinks.weight`, GPT-OSS): its weight goes to no value.
    pub attn_sinks: bool,
    /// The attention output projection carries a bias the file must have (GPT-2, GPT-OSS).
    pub attn_out_bias: bool,
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
        let (norm, eps_key) = match arch {
            Arch::Gpt2 => (NormKind::Layer, key("attention.layer_norm_epsilon")),
            _ => (NormKind::Rms, key("attention.layer_norm_rms_epsilon")),
        };
        let rms_eps = gguf.get_f32(&eps_key)?;
        if !(rms_eps.is_finite() && rms_eps >= 0.0) {
            return Err(bad_meta(
                &eps_key,
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

        check_known_keys(gguf, arch)?;
        let rope_scaling = rope::read_scaling(gguf, arch.name(), context_length)?;
        // The worker serves the model's whole context, so LongRoPE's long factors apply when
        // that context exceeds the original one (llama.cpp's choice for `n_ctx_seq`).
        let rope_factors = rope::factors_in(gguf, context_length, rope_scaling.n_ctx_orig);

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
            norm,
            rope_base,
            rope_base_local: None,
            rope_freq_scale: rope_scaling.freq_scale,
            rope_scaling,
            rope_factors,
            positions: Positions::Rope,
            rope_dims,
            rope_style: RopeStyle::Normal,
            sliding_window: None,
            sliding_layers: vec![false; n_layers],
            attn_scale: default_scale,
            embed_scale: 1.0,
            tied_output: gguf.tensor("output.weight").is_none(),
            qkv_bias: false,
            fused_qkv: gguf.tensor("blk.0.attn_qkv.weight").is_some(),
            proj_bias: false,
            ffn: FfnKind::Gated,
            qk_norm: false,
            post_norms: false,
            activation: Activation::Silu,
            moe: None,
            attn_sinks: false,
            attn_out_bias: false,
            eos_token_ids,
            bos_token_id,
        };
        // What each family adds to the plain Llama layer.
        match arch {
            Arch::Llama => {
                // Mistral-style sliding window, when the file names one (0: none).
                cfg.set_uniform_window(gguf, &key("attention.sliding_window"))?;
            }
            Arch::Qwen2 => {
                cfg.rope_style = RopeStyle::Neox;
                cfg.qkv_bias = true;
            }
            Arch::Qwen3 => {
                cfg.rope_style = RopeStyle::Neox;
                cfg.qk_norm = true;
            }
            Arch::Phi3 => {
                cfg.rope_style = RopeStyle::Neox;
                cfg.ffn = FfnKind::FusedGateUp;
                cfg.set_uniform_window(gguf, &key("attention.sliding_window"))?;
            }
            Arch::Gpt2 => {
                cfg.positions = Positions::Learned;
                cfg.rope_dims = 0;
                cfg.qkv_bias = true;
                cfg.proj_bias = true;
                cfg.attn_out_bias = true;
                cfg.ffn = FfnKind::Plain;
                cfg.activation = Activation::GeluTanh;
                if !cfg.fused_qkv {
                    return Err(EngineError::BadTensor {
                        tensor: "blk.0.attn_qkv.weight".into(),
                        problem: "missing (GPT-2 has a fused QKV projection)".into(),
                    });
                }
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
            Arch::GptOss => {
                cfg.rope_style = RopeStyle::Neox;
                cfg.attn_sinks = true;
                cfg.attn_out_bias = true;
                cfg.ffn = FfnKind::Moe;
                cfg.activation = Activation::SwigluOai;
                let n_expert = capped(
                    &key("expert_count"),
                    usize_key("expert_count")?,
                    MAX_EXPERTS,
                )?;
                let n_expert_used = capped(
                    &key("expert_used_count"),
                    usize_key("expert_used_count")?,
                    n_expert,
                )?;
                cfg.moe = Some(MoeConfig {
                    n_expert,
                    n_expert_used,
                });
                cfg.ffn_dim = capped(
                    &key("expert_feed_forward_length"),
                    usize_key("expert_feed_forward_length")?,
                    MAX_FFN_DIM,
                )?;
                let window = usize_key("attention.sliding_window")?;
                if window == 0 {
                    return Err(bad_meta(
                        &key("attention.sliding_window"),
                        "must be positive",
                    ));
                }
                cfg.sliding_window = Some(window);
                cfg.sliding_layers = (0..n_layers)
                    .map(|il| il % GPT_OSS_SLIDING_PATTERN < GPT_OSS_SLIDING_PATTERN - 1)
                    .collect();
                // The sliding layers share the global RoPE (base and YaRN scaling) unless the
                // file names another base, which this engine does not run.
                if let Some(b) = gguf.get_f32_opt(&key("rope.freq_base_swa"))?
                    && b != rope_base
                {
                    return Err(bad_meta(
                        &key("rope.freq_base_swa"),
                        format!("{b} differs from rope.freq_base {rope_base}; unsupported"),
                    ));
                }
            }
        }
        Ok(cfg)
    }

    /// Use the window named by `key` on every layer, when the file has it and it is shorter
    /// than the context (0, absent, or the whole context: full attention).
    fn set_uniform_window(&mut self, gguf: &GgufFile, key: &str) -> Result<(), EngineError> {
        if let Some(w) = gguf.get_u32_opt(key)?
            && w > 0
            && (w as usize) < self.context_length
        {
            self.sliding_window = Some(w as usize);
            self.sliding_layers = vec![true; self.n_layers];
        }
        Ok(())
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

    /// The RoPE scaling of layer `layer` (Gemma 3's sliding layers: no position scaling).
    pub fn rope_scaling_of(&self, layer: usize) -> RopeScaling {
        if self.rope_base_local.is_some() && self.sliding_layers[layer] {
            self.rope_scaling.unscaled()
        } else {
            self.rope_scaling.clone()
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

pub(crate) fn bad_meta(key: &str, problem: impl Into<String>) -> EngineError {
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
pub(crate) fn positive_f32(gguf: &GgufFile, key: &str, default: f32) -> Result<f32, EngineError> {
    let v = gguf.get_f32_opt(key)?.unwrap_or(default);
    if !(v.is_finite() && v > 0.0) {
        return Err(bad_meta(
            key,
            format!("{v} is not a positive finite number"),
        ));
    }
    Ok(v)
}

/// The `{arch}.*` keys this engine reads or knows to be harmless; any other key of the
/// architecture's namespace may change the model's meaning, so it is an error naming the key.
const KNOWN_KEYS: &[&str] = &[
    "block_count",
    "context_length",
    "embedding_length",
    "feed_forward_length",
    "vocab_size",
    "attention.head_count",
    "attention.head_count_kv",
    "attention.key_length",
    "attention.value_length",
    "attention.layer_norm_rms_epsilon",
    "attention.layer_norm_epsilon",
    "attention.sliding_window",
    "rope.freq_base",
    "rope.freq_base_swa",
    "rope.dimension_count",
    "rope.scale_linear",
    "rope.scaling.type",
    "rope.scaling.factor",
    "rope.scaling.attn_factor",
    "rope.scaling.original_context_length",
    "rope.scaling.finetuned",
    "rope.scaling.yarn_ext_factor",
    "rope.scaling.yarn_attn_factor",
    "rope.scaling.yarn_beta_fast",
    "rope.scaling.yarn_beta_slow",
    "rope.scaling.yarn_log_multiplier",
];

/// Keys only some architectures read (outside them, [`neutral`] decides).
fn known_for(arch: Arch, key: &str) -> bool {
    match arch {
        Arch::GptOss => matches!(
            key,
            "expert_count" | "expert_used_count" | "expert_feed_forward_length"
        ),
        _ => false,
    }
}

/// Keys that are harmless at a neutral value (mixture-of-experts counts of 0, causal
/// attention on).
fn neutral(key: &str, v: &crate::gguf::MetaValue) -> bool {
    use crate::gguf::MetaValue as M;
    matches!(
        (key, v),
        ("expert_count" | "expert_used_count", M::U32(0)) | ("attention.causal", M::Bool(true))
    )
}

/// Reject any `{arch}.*` key outside [`KNOWN_KEYS`] (unless neutral): granite's multipliers,
/// experts, logit soft-capping, clamping and the like would otherwise be silently ignored.
fn check_known_keys(gguf: &GgufFile, arch: Arch) -> Result<(), EngineError> {
    let prefix = format!("{}.", arch.name());
    for (k, v) in gguf.metadata() {
        let Some(rest) = k.strip_prefix(&prefix) else {
            continue;
        };
        if !KNOWN_KEYS.contains(&rest) && !known_for(arch, rest) && !neutral(rest, v) {
            return Err(bad_meta(
                k,
                format!("not supported for `{}` models", arch.name()),
            ));
        }
    }
    Ok(())
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
