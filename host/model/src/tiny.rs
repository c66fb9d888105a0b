//! Tiny random-weight models of each architecture, built in memory as GGUF files: fixtures for
//! the loader's rejection tests and the CPU backend's unit tests (the real models are exercised
//! by the golden tests in `tests/`).
//!
//! Shapes: 2 layers, dim 64, 4 query heads and 2 KV heads of 16, FFN 128, vocabulary 96,
//! context 64; Gemma 3 and GPT-OSS get a sliding window of 4 so that the window is exercised.
//! Every architecture of [`Arch`] has its tensor layout (fused QKV and gate+up for Phi-3;
//! LayerNorm biases, learned positions and projection biases for GPT-2; for GPT-OSS attention
//! sinks, biases everywhere and [`EXPERTS`] MXFP4 experts of which [`EXPERTS_USED`] run).

use crate::config::Arch;
use crate::gguf::{GgufFile, GgufWriter, MetaValue};
use crate::quant::{self, GgmlType};
use orcd_device::EngineError;

pub const LAYERS: usize = 2;
pub const DIM: usize = 64;
pub const HEADS: usize = 4;
pub const KV_HEADS: usize = 2;
pub const HEAD_DIM: usize = 16;
pub const FFN: usize = 128;
pub const VOCAB: usize = 96;
pub const CONTEXT: usize = 64;
pub const WINDOW: usize = 4;
pub const EXPERTS: usize = 4;
pub const EXPERTS_USED: usize = 2;

/// What to build, and what to break.
#[derive(Clone, Debug)]
pub struct TinySpec {
    pub arch: &'static str,
    /// Type of the projection matrices (the embedding is Q8_0 when this is quantized).
    pub matrix_type: GgmlType,
    /// Leave this tensor out.
    pub drop_tensor: Option<String>,
    /// Give this tensor one more row than it should have.
    pub grow_tensor: Option<String>,
    /// Store this (norm) tensor as f16 instead of f32.
    pub f16_tensor: Option<String>,
    /// Leave this metadata key out.
    pub drop_key: Option<String>,
    /// Extra metadata pairs.
    pub extra_keys: Vec<(String, MetaValue)>,
    /// Extra f32 vectors of 8 values (e.g. `rope_freqs.weight`).
    pub extra_vectors: Vec<String>,
}

impl TinySpec {
    pub fn new(arch: &'static str) -> TinySpec {
        TinySpec {
            arch,
            matrix_type: GgmlType::Q8_0,
            drop_tensor: None,
            grow_tensor: None,
            f16_tensor: None,
            drop_key: None,
            extra_keys: Vec::new(),
            extra_vectors: Vec::new(),
        }
    }

    /// The GGUF file.
    pub fn build(&self) -> Result<GgufFile, EngineError> {
        GgufFile::from_bytes(self.writer()?.to_bytes()?)
    }

    fn writer(&self) -> Result<GgufWriter, EngineError> {
        let mut w = GgufWriter::new();
        let a = self.arch;
        let mut meta = vec![
            ("general.architecture".to_string(), MetaValue::Str(a.into())),
            (format!("{a}.block_count"), MetaValue::U32(LAYERS as u32)),
            (format!("{a}.embedding_length"), MetaValue::U32(DIM as u32)),
            (
                format!("{a}.feed_forward_length"),
                MetaValue::U32(FFN as u32),
            ),
            (
                format!("{a}.attention.head_count"),
                MetaValue::U32(HEADS as u32),
            ),
            (
                format!("{a}.attention.head_count_kv"),
                MetaValue::U32(KV_HEADS as u32),
            ),
            (
                format!("{a}.attention.key_length"),
                MetaValue::U32(HEAD_DIM as u32),
            ),
            (
                format!("{a}.attention.value_length"),
                MetaValue::U32(HEAD_DIM as u32),
            ),
            (
                format!("{a}.context_length"),
                MetaValue::U32(CONTEXT as u32),
            ),
            (
                if a == "gpt2" {
                    format!("{a}.attention.layer_norm_epsilon")
                } else {
                    format!("{a}.attention.layer_norm_rms_epsilon")
                },
                MetaValue::F32(1e-6),
            ),
            (format!("{a}.rope.freq_base"), MetaValue::F32(10_000.0)),
            ("tokenizer.ggml.eos_token_id".to_string(), MetaValue::U32(2)),
        ];
        if a == "gemma3" || a == "gpt-oss" {
            meta.push((
                format!("{a}.attention.sliding_window"),
                MetaValue::U32(WINDOW as u32),
            ));
        }
        if a == "gpt-oss" {
            meta.extend([
                (format!("{a}.expert_count"), MetaValue::U32(EXPERTS as u32)),
                (
                    format!("{a}.expert_used_count"),
                    MetaValue::U32(EXPERTS_USED as u32),
                ),
                (
                    format!("{a}.expert_feed_forward_length"),
                    MetaValue::U32(FFN as u32),
                ),
            ]);
        }
        meta.extend(self.extra_keys.iter().cloned());
        for (k, v) in meta {
            if self.drop_key.as_deref() != Some(k.as_str()) {
                w.add_metadata(k, v)?;
            }
        }

        let arch = Arch::from_name(a).ok();
        let q_dim = HEADS * HEAD_DIM;
        let kv_dim = KV_HEADS * HEAD_DIM;
        let fused = matches!(arch, Some(Arch::Phi3 | Arch::Gpt2));
        let gpt2 = arch == Some(Arch::Gpt2);
        let oss = arch == Some(Arch::GptOss);
        let mut tensors: Vec<(String, Vec<usize>, bool)> = vec![
            ("token_embd.weight".into(), vec![DIM, VOCAB], true),
            ("output_norm.weight".into(), vec![DIM], false),
        ];
        if gpt2 {
            tensors.extend([
                ("position_embd.weight".into(), vec![DIM, CONTEXT], true),
                ("output_norm.bias".into(), vec![DIM], false),
            ]);
        }
        for l in 0..LAYERS {
            let b = |n: &str| format!("blk.{l}.{n}");
            tensors.extend([
                (b("attn_norm.weight"), vec![DIM], false),
                (b("attn_output.weight"), vec![q_dim, DIM], true),
            ]);
            if oss {
                let e = EXPERTS;
                tensors.extend([
                    (b("attn_q.bias"), vec![q_dim], false),
                    (b("attn_k.bias"), vec![kv_dim], false),
                    (b("attn_v.bias"), vec![kv_dim], false),
                    (b("attn_output.bias"), vec![DIM], false),
                    (b("attn_sinks.weight"), vec![HEADS], false),
                    (b("post_attention_norm.weight"), vec![DIM], false),
                    (b("ffn_gate_inp.weight"), vec![DIM, e], true),
                    (b("ffn_gate_inp.bias"), vec![e], false),
                    (b("ffn_gate_exps.weight"), vec![DIM, FFN, e], true),
                    (b("ffn_gate_exps.bias"), vec![FFN, e], false),
                    (b("ffn_up_exps.weight"), vec![DIM, FFN, e], true),
                    (b("ffn_up_exps.bias"), vec![FFN, e], false),
                    (b("ffn_down_exps.weight"), vec![FFN, DIM, e], true),
                    (b("ffn_down_exps.bias"), vec![DIM, e], false),
                ]);
            } else {
                tensors.extend([
                    (b("ffn_norm.weight"), vec![DIM], false),
                    (b("ffn_down.weight"), vec![FFN, DIM], true),
                ]);
            }
            if fused {
                tensors.push((b("attn_qkv.weight"), vec![DIM, q_dim + 2 * kv_dim], true));
            } else {
                tensors.extend([
                    (b("attn_q.weight"), vec![DIM, q_dim], true),
                    (b("attn_k.weight"), vec![DIM, kv_dim], true),
                    (b("attn_v.weight"), vec![DIM, kv_dim], true),
                ]);
            }
            match arch {
                Some(Arch::Phi3) => tensors.push((b("ffn_up.weight"), vec![DIM, 2 * FFN], true)),
                Some(Arch::Gpt2) => tensors.push((b("ffn_up.weight"), vec![DIM, FFN], true)),
                Some(Arch::GptOss) => {}
                _ => tensors.extend([
                    (b("ffn_gate.weight"), vec![DIM, FFN], true),
                    (b("ffn_up.weight"), vec![DIM, FFN], true),
                ]),
            }
            if gpt2 {
                tensors.extend([
                    (b("attn_norm.bias"), vec![DIM], false),
                    (b("attn_qkv.bias"), vec![q_dim + 2 * kv_dim], false),
                    (b("attn_output.bias"), vec![DIM], false),
                    (b("ffn_norm.bias"), vec![DIM], false),
                    (b("ffn_up.bias"), vec![FFN], false),
                    (b("ffn_down.bias"), vec![DIM], false),
                ]);
            }
            if arch == Some(Arch::Qwen3) {
                tensors.extend([
                    (b("attn_q_norm.weight"), vec![HEAD_DIM], false),
                    (b("attn_k_norm.weight"), vec![HEAD_DIM], false),
                ]);
            }
            if arch == Some(Arch::Qwen2) {
                tensors.extend([
                    (b("attn_q.bias"), vec![q_dim], false),
                    (b("attn_k.bias"), vec![kv_dim], false),
                    (b("attn_v.bias"), vec![kv_dim], false),
                ]);
            }
            if arch == Some(Arch::Gemma3) {
                tensors.extend([
                    (b("attn_q_norm.weight"), vec![HEAD_DIM], false),
                    (b("attn_k_norm.weight"), vec![HEAD_DIM], false),
                    (b("post_attention_norm.weight"), vec![DIM], false),
                    (b("post_ffw_norm.weight"), vec![DIM], false),
                ]);
            }
        }
        tensors.extend(
            self.extra_vectors
                .iter()
                .map(|n| (n.clone(), vec![8], false)),
        );
        for (i, (name, mut dims, matrix)) in tensors.into_iter().enumerate() {
            if self.drop_tensor.as_deref() == Some(name.as_str()) {
                continue;
            }
            if self.grow_tensor.as_deref() == Some(name.as_str()) {
                *dims.last_mut().expect("dims") += 1;
            }
            let n: usize = dims.iter().product();
            let values = pattern(i, n, if matrix { 0.15 } else { 0.1 }, !matrix);
            let ty = if self.f16_tensor.as_deref() == Some(name.as_str()) {
                GgmlType::F16
            } else if name.ends_with("_exps.weight") {
                GgmlType::Mxfp4
            } else if matrix {
                self.matrix_type
            } else {
                GgmlType::F32
            };
            let mut bytes = Vec::new();
            for row in values.chunks(dims[0]) {
                bytes.extend(quant::quantize_row(ty, row)?);
            }
            let dims: Vec<u64> = dims.iter().map(|&d| d as u64).collect();
            w.add_tensor(name, &dims, ty, bytes)?;
        }
        Ok(w)
    }
}

/// `n` deterministic pseudo-random values in `[-amp, amp)` (around 1 for norm weights).
fn pattern(seed: usize, n: usize, amp: f32, around_one: bool) -> Vec<f32> {
    let mut s = (seed as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 40) as f32 / (1u64 << 24) as f32;
            let v = (2.0 * u - 1.0) * amp;
            if around_one { 1.0 + v } else { v }
        })
        .collect()
}
