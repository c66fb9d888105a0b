//! Hyper-parameters of real models, for `worker-orcd synth`.
//!
//! Values are those of the models' Hugging Face configs as llama.cpp's converter writes them
//! (`<arch>.block_count`, `.embedding_length`, ...). The vocabulary size is not part of a
//! shape: it comes from the vocabulary file the synthetic model copies its tokenizer from.

/// Llama 3.1+ long-context RoPE scaling (`rope_scaling.rope_type = "llama3"`), which llama.cpp
/// stores as per-frequency factors in the `rope_freqs.weight` tensor.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Llama3RopeScaling {
    pub factor: f32,
    pub low_freq_factor: f32,
    pub high_freq_factor: f32,
    pub original_context_length: u32,
}

/// YaRN scaling (`rope_scaling.rope_type = "yarn"`), written as `rope.scaling.type` "yarn",
/// `rope.scaling.factor` and `rope.scaling.original_context_length`.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct YarnScaling {
    pub factor: f32,
    pub original_context_length: u32,
}

/// Phi-3's LongRoPE: `rope_factors_long/short.weight` tensors, `rope.scaling.attn_factor`
/// `sqrt(1 + ln(ctx / orig) / ln(orig))` and `rope.scaling.original_context_length`, as
/// llama.cpp's Phi-3 converter writes them. The factor values are synthetic (smooth curves in
/// the range of the real ones: short 1 to ~2.5, long 1 to ~60).
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct LongRopeScaling {
    pub original_context_length: u32,
}

/// A mixture of experts (GPT-OSS): `n_ff` is then each expert's hidden width
/// (`expert_feed_forward_length`), the experts are stored in MXFP4 as the real files have them.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct MoeShape {
    pub n_expert: u32,
    pub n_expert_used: u32,
}

/// The architecture and dimensions of one model.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Shape {
    /// Name on the command line, e.g. "llama3-8b".
    pub name: &'static str,
    /// `general.architecture`: "llama", "qwen2", "qwen3", "phi3", "gemma3", "gpt2" or "gpt-oss".
    pub arch: &'static str,
    pub n_layer: u32,
    pub n_embd: u32,
    pub n_ff: u32,
    pub n_head: u32,
    pub n_head_kv: u32,
    pub head_dim: u32,
    /// Whether the converter writes `attention.key_length`/`value_length` (the config names a
    /// `head_dim`, e.g. Gemma 3 where `n_head * head_dim != n_embd`).
    pub explicit_head_dim: bool,
    pub context_length: u32,
    pub rope_freq_base: f32,
    pub rms_eps: f32,
    /// The output projection shares `token_embd.weight` (no `output.weight` tensor).
    pub tied_embeddings: bool,
    /// Biases on the Q, K and V projections (Qwen2; GPT-2's fused one).
    pub qkv_bias: bool,
    /// The attention window the converter writes (Gemma 3's local layers; Phi-3's
    /// `sliding_window`, 0 when the config has none).
    pub sliding_window: Option<u32>,
    pub llama3_rope: Option<Llama3RopeScaling>,
    pub yarn: Option<YarnScaling>,
    pub longrope: Option<LongRopeScaling>,
    pub moe: Option<MoeShape>,
}

/// Every shape `synth` knows.
pub const SHAPES: &[Shape] = &[
    // Meta-Llama-3-8B.
    Shape {
        name: "llama3-8b",
        arch: "llama",
        n_layer: 32,
        n_embd: 4096,
        n_ff: 14336,
        n_head: 32,
        n_head_kv: 8,
        head_dim: 128,
        explicit_head_dim: false,
        context_length: 8192,
        rope_freq_base: 500000.0,
        rms_eps: 1e-5,
        tied_embeddings: false,
        qkv_bias: false,
        sliding_window: None,
        llama3_rope: None,
        yarn: None,
        longrope: None,
        moe: None,
    },
    // Llama-3.2-1B.
    Shape {
        name: "llama3.2-1b",
        arch: "llama",
        n_layer: 16,
        n_embd: 2048,
        n_ff: 8192,
        n_head: 32,
        n_head_kv: 8,
        head_dim: 64,
        explicit_head_dim: true,
        context_length: 131072,
        rope_freq_base: 500000.0,
        rms_eps: 1e-5,
        tied_embeddings: true,
        qkv_bias: false,
        sliding_window: None,
        llama3_rope: Some(Llama3RopeScaling {
            factor: 32.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_context_length: 8192,
        }),
        yarn: None,
        longrope: None,
        moe: None,
    },
    // Qwen2.5-0.5B(-Instruct).
    Shape {
        name: "qwen2.5-0.5b",
        arch: "qwen2",
        n_layer: 24,
        n_embd: 896,
        n_ff: 4864,
        n_head: 14,
        n_head_kv: 2,
        head_dim: 64,
        explicit_head_dim: false,
        context_length: 32768,
        rope_freq_base: 1000000.0,
        rms_eps: 1e-6,
        tied_embeddings: true,
        qkv_bias: true,
        sliding_window: None,
        llama3_rope: None,
        yarn: None,
        longrope: None,
        moe: None,
    },
    // Qwen2.5-7B(-Instruct).
    Shape {
        name: "qwen2.5-7b",
        arch: "qwen2",
        n_layer: 28,
        n_embd: 3584,
        n_ff: 18944,
        n_head: 28,
        n_head_kv: 4,
        head_dim: 128,
        explicit_head_dim: false,
        context_length: 32768,
        rope_freq_base: 1000000.0,
        rms_eps: 1e-6,
        tied_embeddings: false,
        qkv_bias: true,
        sliding_window: None,
        llama3_rope: None,
        yarn: None,
        longrope: None,
        moe: None,
    },
    // SmolLM2-135M(-Instruct): a llama.
    Shape {
        name: "smollm2-135m",
        arch: "llama",
        n_layer: 30,
        n_embd: 576,
        n_ff: 1536,
        n_head: 9,
        n_head_kv: 3,
        head_dim: 64,
        explicit_head_dim: false,
        context_length: 8192,
        rope_freq_base: 100000.0,
        rms_eps: 1e-5,
        tied_embeddings: true,
        qkv_bias: false,
        sliding_window: None,
        llama3_rope: None,
        yarn: None,
        longrope: None,
        moe: None,
    },
    // gemma-3-270m(-it).
    Shape {
        name: "gemma3-270m",
        arch: "gemma3",
        n_layer: 18,
        n_embd: 640,
        n_ff: 2048,
        n_head: 4,
        n_head_kv: 1,
        head_dim: 256,
        explicit_head_dim: true,
        context_length: 32768,
        rope_freq_base: 1000000.0,
        rms_eps: 1e-6,
        tied_embeddings: true,
        qkv_bias: false,
        sliding_window: Some(512),
        llama3_rope: None,
        yarn: None,
        longrope: None,
        moe: None,
    },
    // Mistral-7B-v0.3(-Instruct): a llama (no sliding window in v0.2+).
    Shape {
        name: "mistral-7b",
        arch: "llama",
        n_layer: 32,
        n_embd: 4096,
        n_ff: 14336,
        n_head: 32,
        n_head_kv: 8,
        head_dim: 128,
        explicit_head_dim: false,
        context_length: 32768,
        rope_freq_base: 1000000.0,
        rms_eps: 1e-5,
        tied_embeddings: false,
        qkv_bias: false,
        sliding_window: None,
        llama3_rope: None,
        yarn: None,
        longrope: None,
        moe: None,
    },
    // Qwen3-0.6B: per-head q/k norms, head_dim 128 (q_dim 2048 != n_embd 1024).
    Shape {
        name: "qwen3-0.6b",
        arch: "qwen3",
        n_layer: 28,
        n_embd: 1024,
        n_ff: 3072,
        n_head: 16,
        n_head_kv: 8,
        head_dim: 128,
        explicit_head_dim: true,
        context_length: 40960,
        rope_freq_base: 1000000.0,
        rms_eps: 1e-6,
        tied_embeddings: true,
        qkv_bias: false,
        sliding_window: None,
        llama3_rope: None,
        yarn: None,
        longrope: None,
        moe: None,
    },
    // Qwen3-0.6B with the YaRN long-context setting of the Qwen3 model cards
    // (`rope_scaling: {rope_type: yarn, factor: 4.0, original_max_position_embeddings: 32768}`).
    Shape {
        name: "qwen3-0.6b-yarn",
        arch: "qwen3",
        n_layer: 28,
        n_embd: 1024,
        n_ff: 3072,
        n_head: 16,
        n_head_kv: 8,
        head_dim: 128,
        explicit_head_dim: true,
        context_length: 131072,
        rope_freq_base: 1000000.0,
        rms_eps: 1e-6,
        tied_embeddings: true,
        qkv_bias: false,
        sliding_window: None,
        llama3_rope: None,
        yarn: Some(YarnScaling {
            factor: 4.0,
            original_context_length: 32768,
        }),
        longrope: None,
        moe: None,
    },
    // Qwen3-8B.
    Shape {
        name: "qwen3-8b",
        arch: "qwen3",
        n_layer: 36,
        n_embd: 4096,
        n_ff: 12288,
        n_head: 32,
        n_head_kv: 8,
        head_dim: 128,
        explicit_head_dim: true,
        context_length: 40960,
        rope_freq_base: 1000000.0,
        rms_eps: 1e-6,
        tied_embeddings: false,
        qkv_bias: false,
        sliding_window: None,
        llama3_rope: None,
        yarn: None,
        longrope: None,
        moe: None,
    },
    // Phi-3.5-mini-instruct: fused QKV and gate+up, LongRoPE (131072 from 4096).
    Shape {
        name: "phi3.5-mini",
        arch: "phi3",
        n_layer: 32,
        n_embd: 3072,
        n_ff: 8192,
        n_head: 32,
        n_head_kv: 32,
        head_dim: 96,
        explicit_head_dim: false,
        context_length: 131072,
        rope_freq_base: 10000.0,
        rms_eps: 1e-5,
        tied_embeddings: false,
        qkv_bias: false,
        sliding_window: Some(262144),
        llama3_rope: None,
        yarn: None,
        longrope: Some(LongRopeScaling {
            original_context_length: 4096,
        }),
        moe: None,
    },
    // GPT-2 (124M): LayerNorm, learned positions, fused biased QKV, plain GELU FFN.
    Shape {
        name: "gpt2",
        arch: "gpt2",
        n_layer: 12,
        n_embd: 768,
        n_ff: 3072,
        n_head: 12,
        n_head_kv: 12,
        head_dim: 64,
        explicit_head_dim: false,
        context_length: 1024,
        rope_freq_base: 10000.0,
        rms_eps: 1e-5,
        tied_embeddings: true,
        qkv_bias: true,
        sliding_window: None,
        llama3_rope: None,
        yarn: None,
        longrope: None,
        moe: None,
    },
    // gpt-oss-20b: 32 MXFP4 experts (4 per token) of width 2880, attention sinks, biases on
    // q/k/v/o and on the router and experts, sliding window 128 on every other layer, YaRN
    // (factor 32 from 4096).
    Shape {
        name: "gpt-oss-20b",
        arch: "gpt-oss",
        n_layer: 24,
        n_embd: 2880,
        n_ff: 2880,
        n_head: 64,
        n_head_kv: 8,
        head_dim: 64,
        explicit_head_dim: true,
        context_length: 131072,
        rope_freq_base: 150000.0,
        rms_eps: 1e-5,
        tied_embeddings: false,
        qkv_bias: true,
        sliding_window: Some(128),
        llama3_rope: None,
        yarn: Some(YarnScaling {
            factor: 32.0,
            original_context_length: 4096,
        }),
        longrope: None,
        moe: Some(MoeShape {
            n_expert: 32,
            n_expert_used: 4,
        }),
    },
];

/// The shape called `name`.
pub fn shape(name: &str) -> Option<&'static Shape> {
    SHAPES.iter().find(|s| s.name == name)
}

/// All shape names, comma-separated (for error messages and `--help`).
pub fn shape_names() -> String {
    SHAPES.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
}

impl Llama3RopeScaling {
    /// The `rope_freqs.weight` factors, one per rotated pair (`head_dim / 2` of them): 1 for
    /// high frequencies, `factor` for low ones, and a smooth blend between.
    pub fn frequency_factors(&self, head_dim: u32, base: f32) -> Vec<f32> {
        let old_ctx = self.original_context_length as f64;
        let low_wavelen = old_ctx / self.low_freq_factor as f64;
        let high_wavelen = old_ctx / self.high_freq_factor as f64;
        (0..head_dim / 2)
            .map(|i| {
                let freq = 1.0 / (base as f64).powf(2.0 * i as f64 / head_dim as f64);
                let wavelen = 2.0 * std::f64::consts::PI / freq;
                let factor = self.factor as f64;
                if wavelen < high_wavelen {
                    1.0
                } else if wavelen > low_wavelen {
                    factor as f32
                } else {
                    let smooth = (old_ctx / wavelen - self.low_freq_factor as f64)
                        / (self.high_freq_factor - self.low_freq_factor) as f64;
                    (1.0 / ((1.0 - smooth) / factor + smooth)) as f32
                }
            })
            .collect()
    }
}

impl LongRopeScaling {
    /// `rope.scaling.attn_factor` of a model trained for `ctx` positions.
    pub fn attn_factor(&self, ctx: u32) -> f32 {
        let orig = self.original_context_length as f64;
        let scale = ctx as f64 / orig;
        if scale > 1.0 {
            (1.0 + scale.ln() / orig.ln()).sqrt() as f32
        } else {
            1.0
        }
    }

    /// Synthetic (long, short) factors, `n` each, rising smoothly with the pair index.
    pub fn factors(&self, n: u32) -> (Vec<f32>, Vec<f32>) {
        let t = |i: u32| i as f32 / (n.max(2) - 1) as f32;
        let long = (0..n).map(|i| 1.0 + 59.0 * t(i).powi(3)).collect();
        let short = (0..n).map(|i| 1.0 + 1.5 * t(i).powi(2)).collect();
        (long, short)
    }
}
