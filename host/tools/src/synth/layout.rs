//! The layout of a synthetic model: its tensors (names, shapes, types, how their values are
//! drawn) and metadata keys, per architecture, as llama.cpp's converter writes them.

use super::{Shape, SynthOptions, type_for_row};
use orcd_model::gguf::{GgufFile, MetaValue};
use orcd_model::quant::GgmlType;

/// How a tensor's values are drawn.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Fill {
    /// N(0, WEIGHT_STD²).
    Normal,
    /// 1 + N(0, WEIGHT_STD²): RMS-norm gains.
    NearOne,
    /// N(0, std²) with another standard deviation (the output projection, `output_std`).
    Scaled(f32),
    /// Fixed values (`rope_freqs.weight`).
    Values(Vec<f32>),
}

/// One tensor of the synthetic model.
#[derive(Clone, Debug)]
pub(super) struct TensorPlan {
    pub name: String,
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    pub fill: Fill,
}

/// llama.cpp's `general.file_type` (`enum llama_ftype`) for a model whose matrices are `ty`.
fn file_type(ty: GgmlType) -> u32 {
    match ty {
        GgmlType::F32 => 0,
        GgmlType::F16 => 1,
        GgmlType::Q4_0 => 2,
        GgmlType::Q4_1 => 3,
        GgmlType::Q8_0 => 7,
        GgmlType::Q5_0 => 8,
        GgmlType::Q5_1 => 9,
        GgmlType::Q4K => 14, // Q4_K_S
        GgmlType::Q5K => 16, // Q5_K_S
        GgmlType::Q6K => 18,
        GgmlType::BF16 => 32,
        GgmlType::Mxfp4 => 38, // MXFP4_MOE
    }
}

/// How much of a shape a file holds: its layers, experts (a mixture of experts) and tokens.
#[derive(Copy, Clone, Debug)]
pub(super) struct Sizes {
    pub n_layer: u32,
    pub n_expert: u32,
    pub n_vocab: u64,
}

/// The tensors of `shape` at `sizes`, in the order llama.cpp writes them: the layer matrices
/// in `ty`, the embedding and output in `embed_ty`.
pub(super) fn plan_tensors(
    shape: &Shape,
    sizes: Sizes,
    ty: GgmlType,
    embed_ty: GgmlType,
    output_fill: Fill,
) -> Vec<TensorPlan> {
    let Sizes {
        n_layer,
        n_expert,
        n_vocab,
    } = sizes;
    let (d, ff) = (shape.n_embd as u64, shape.n_ff as u64);
    let q_dim = (shape.n_head * shape.head_dim) as u64;
    let kv_dim = (shape.n_head_kv * shape.head_dim) as u64;
    let hd = shape.head_dim as u64;
    let mut t = Vec::new();
    let mut push = |name: String, dims: Vec<u64>, ty: GgmlType, fill: Fill| {
        t.push(TensorPlan {
            name,
            dims,
            ty,
            fill,
        })
    };
    let matrix = |cols: u64| type_for_row(ty, cols);
    let (arch, f32t) = (shape.arch, GgmlType::F32);
    let gemma = arch == "gemma3";
    let gpt2 = arch == "gpt2";
    let oss = arch == "gpt-oss";
    let ne = u64::from(n_expert);
    let fused = matches!(arch, "phi3" | "gpt2");
    let qk_norm = matches!(arch, "gemma3" | "qwen3");
    let embd_fill = if shape.tied_embeddings {
        output_fill.clone()
    } else {
        Fill::Normal
    };
    push(
        "token_embd.weight".into(),
        vec![d, n_vocab],
        type_for_row(embed_ty, d),
        embd_fill,
    );
    if gpt2 {
        let ctx = shape.context_length as u64;
        push(
            "position_embd.weight".into(),
            vec![d, ctx],
            type_for_row(embed_ty, d),
            Fill::Normal,
        );
    }
    if let Some(rope) = &shape.llama3_rope {
        let factors = rope.frequency_factors(shape.head_dim, shape.rope_freq_base);
        push(
            "rope_freqs.weight".into(),
            vec![hd / 2],
            f32t,
            Fill::Values(factors),
        );
    }
    if let Some(lr) = &shape.longrope {
        let (long, short) = lr.factors(shape.head_dim / 2);
        push(
            "rope_factors_long.weight".into(),
            vec![hd / 2],
            f32t,
            Fill::Values(long),
        );
        push(
            "rope_factors_short.weight".into(),
            vec![hd / 2],
            f32t,
            Fill::Values(short),
        );
    }
    for i in 0..n_layer {
        let b = |n: &str| format!("blk.{i}.{n}");
        push(b("attn_norm.weight"), vec![d], f32t, Fill::NearOne);
        if gpt2 {
            push(b("attn_norm.bias"), vec![d], f32t, Fill::Normal);
        }
        if fused {
            let rows = q_dim + 2 * kv_dim;
            push(b("attn_qkv.weight"), vec![d, rows], matrix(d), Fill::Normal);
            if shape.qkv_bias {
                push(b("attn_qkv.bias"), vec![rows], f32t, Fill::Normal);
            }
        } else {
            push(b("attn_q.weight"), vec![d, q_dim], matrix(d), Fill::Normal);
            push(b("attn_k.weight"), vec![d, kv_dim], matrix(d), Fill::Normal);
            push(b("attn_v.weight"), vec![d, kv_dim], matrix(d), Fill::Normal);
            if shape.qkv_bias {
                push(b("attn_q.bias"), vec![q_dim], f32t, Fill::Normal);
                push(b("attn_k.bias"), vec![kv_dim], f32t, Fill::Normal);
                push(b("attn_v.bias"), vec![kv_dim], f32t, Fill::Normal);
            }
        }
        if qk_norm {
            push(b("attn_q_norm.weight"), vec![hd], f32t, Fill::NearOne);
            push(b("attn_k_norm.weight"), vec![hd], f32t, Fill::NearOne);
        }
        push(
            b("attn_output.weight"),
            vec![q_dim, d],
            matrix(q_dim),
            Fill::Normal,
        );
        if gpt2 {
            push(b("attn_output.bias"), vec![d], f32t, Fill::Normal);
        }
        if oss {
            push(b("attn_output.bias"), vec![d], f32t, Fill::Normal);
            // sink logits ~ N(0, 1): their share of each softmax is visible
            let sinks = vec![shape.n_head as u64];
            push(b("attn_sinks.weight"), sinks, f32t, Fill::Scaled(1.0));
        }
        if gemma || oss {
            // GPT-OSS: the norm before the FFN goes by this name
            push(
                b("post_attention_norm.weight"),
                vec![d],
                f32t,
                Fill::NearOne,
            );
        }
        if !oss {
            push(b("ffn_norm.weight"), vec![d], f32t, Fill::NearOne);
        }
        match arch {
            "phi3" => push(b("ffn_up.weight"), vec![d, 2 * ff], matrix(d), Fill::Normal),
            "gpt2" => {
                push(b("ffn_norm.bias"), vec![d], f32t, Fill::Normal);
                push(b("ffn_up.weight"), vec![d, ff], matrix(d), Fill::Normal);
                push(b("ffn_up.bias"), vec![ff], f32t, Fill::Normal);
            }
            "gpt-oss" => {
                // the router (f32, as llama.cpp keeps it), then the experts in MXFP4
                push(b("ffn_gate_inp.weight"), vec![d, ne], f32t, Fill::Normal);
                push(b("ffn_gate_inp.bias"), vec![ne], f32t, Fill::Normal);
                let mx = GgmlType::Mxfp4;
                push(b("ffn_gate_exps.weight"), vec![d, ff, ne], mx, Fill::Normal);
                push(b("ffn_gate_exps.bias"), vec![ff, ne], f32t, Fill::Normal);
                push(b("ffn_up_exps.weight"), vec![d, ff, ne], mx, Fill::Normal);
                push(b("ffn_up_exps.bias"), vec![ff, ne], f32t, Fill::Normal);
                push(b("ffn_down_exps.weight"), vec![ff, d, ne], mx, Fill::Normal);
                push(b("ffn_down_exps.bias"), vec![d, ne], f32t, Fill::Normal);
            }
            _ => {
                push(b("ffn_gate.weight"), vec![d, ff], matrix(d), Fill::Normal);
                push(b("ffn_up.weight"), vec![d, ff], matrix(d), Fill::Normal);
            }
        }
        if !oss {
            push(b("ffn_down.weight"), vec![ff, d], matrix(ff), Fill::Normal);
        }
        if gpt2 {
            push(b("ffn_down.bias"), vec![d], f32t, Fill::Normal);
        }
        if gemma {
            push(b("post_ffw_norm.weight"), vec![d], f32t, Fill::NearOne);
        }
    }
    push("output_norm.weight".into(), vec![d], f32t, Fill::NearOne);
    if gpt2 {
        push("output_norm.bias".into(), vec![d], f32t, Fill::Normal);
    }
    if !shape.tied_embeddings {
        push(
            "output.weight".into(),
            vec![d, n_vocab],
            type_for_row(embed_ty, d),
            output_fill,
        );
    }
    t
}

/// The metadata of the synthetic model: general keys, architecture keys, then the tokenizer.
pub(super) fn plan_metadata(
    opts: &SynthOptions,
    n_layer: u32,
    n_expert: u32,
    vocab: &GgufFile,
    n_vocab: usize,
) -> Vec<(String, MetaValue)> {
    let s = opts.shape;
    let arch = s.arch;
    let k = |name: &str| format!("{arch}.{name}");
    let mut m: Vec<(String, MetaValue)> = vec![
        ("general.architecture".into(), MetaValue::Str(arch.into())),
        ("general.type".into(), MetaValue::Str("model".into())),
        (
            "general.name".into(),
            MetaValue::Str(format!(
                "synthetic {} (random weights, seed {})",
                s.name, opts.seed
            )),
        ),
        (k("block_count"), MetaValue::U32(n_layer)),
        (k("context_length"), MetaValue::U32(s.context_length)),
        (k("embedding_length"), MetaValue::U32(s.n_embd)),
        (k("feed_forward_length"), MetaValue::U32(s.n_ff)),
        (k("attention.head_count"), MetaValue::U32(s.n_head)),
    ];
    if arch == "gpt2" {
        // GPT-2's converter writes no KV head count, RoPE base or RMS epsilon.
        m.push((k("attention.layer_norm_epsilon"), MetaValue::F32(s.rms_eps)));
    } else {
        m.push((k("attention.head_count_kv"), MetaValue::U32(s.n_head_kv)));
        m.push((k("rope.freq_base"), MetaValue::F32(s.rope_freq_base)));
        m.push((
            k("attention.layer_norm_rms_epsilon"),
            MetaValue::F32(s.rms_eps),
        ));
    }
    if s.explicit_head_dim {
        m.push((k("attention.key_length"), MetaValue::U32(s.head_dim)));
        m.push((k("attention.value_length"), MetaValue::U32(s.head_dim)));
    }
    if let Some(w) = s.sliding_window {
        m.push((k("attention.sliding_window"), MetaValue::U32(w)));
    }
    if arch == "llama" {
        m.push((k("vocab_size"), MetaValue::U32(n_vocab as u32)));
        m.push((k("rope.dimension_count"), MetaValue::U32(s.head_dim)));
    }
    if arch == "phi3" {
        m.push((k("rope.dimension_count"), MetaValue::U32(s.head_dim)));
        if s.sliding_window.is_none() {
            m.push((k("attention.sliding_window"), MetaValue::U32(0)));
        }
    }
    if let Some(y) = &s.yarn {
        m.push((k("rope.scaling.type"), MetaValue::Str("yarn".into())));
        m.push((k("rope.scaling.factor"), MetaValue::F32(y.factor)));
        m.push((
            k("rope.scaling.original_context_length"),
            MetaValue::U32(y.original_context_length),
        ));
    }
    if let Some(moe) = &s.moe {
        m.push((k("expert_count"), MetaValue::U32(n_expert)));
        m.push((k("expert_used_count"), MetaValue::U32(moe.n_expert_used)));
        m.push((k("expert_feed_forward_length"), MetaValue::U32(s.n_ff)));
    }
    if arch == "gpt-oss" {
        // the model's config names YaRN's betas (llama.cpp's defaults), so the converter writes
        m.push((k("rope.scaling.yarn_beta_fast"), MetaValue::F32(32.0)));
        m.push((k("rope.scaling.yarn_beta_slow"), MetaValue::F32(1.0)));
    }
    if let Some(lr) = &s.longrope {
        m.push((
            k("rope.scaling.attn_factor"),
            MetaValue::F32(lr.attn_factor(s.context_length)),
        ));
        m.push((
            k("rope.scaling.original_context_length"),
            MetaValue::U32(lr.original_context_length),
        ));
    }
    m.push((
        "general.file_type".into(),
        MetaValue::U32(file_type(opts.ty)),
    ));
    m.push(("general.quantization_version".into(), MetaValue::U32(2)));
    for (key, value) in vocab.metadata() {
        if key.starts_with("tokenizer.") {
            m.push((key.clone(), value.clone()));
        }
    }
    m
}
