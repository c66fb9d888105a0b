//! The model as its GGUF file holds it, independent of any backend: the validating reader
//! ([`gguf`], with the writer the tests and tools build files with), the quantized tensor types
//! ([`quant`]), the hyper-parameters ([`ModelConfig`]), the per-layer steps ([`plan`]), RoPE
//! scaling ([`rope`]), the tensor table ([`ModelWeights`]), the vocabulary ([`vocab`]) and the
//! row types a KV cache stores ([`kv_type`], built on the quant types' f16 and Q8_0 rules).
//!
//! Architectures: `llama` (and Mistral), `qwen2`, `qwen3`, `phi3`, `gemma3`, `gpt2`, `gpt-oss`
//! (see [`config`] for what differs between them, [`plan`] for the per-layer steps, [`rope`]
//! for RoPE scaling).
//! Weight types: whatever [`quant::GgmlType`] supports; norms and biases are f32.

pub mod config;
pub mod gguf;
pub mod kv_type;
pub mod plan;
pub mod quant;
pub mod rope;
pub mod tiny;
pub mod vocab;
pub mod weights;

use std::path::Path;
use std::sync::Arc;

pub use config::{Activation, Arch, FfnKind, ModelConfig, NormKind, Positions, RopeStyle};
pub use kv_type::KvType;
pub use plan::{LayerPlan, LayerRope};
pub use rope::{RopeFactors, RopeScaling};
pub use weights::{LayerWeights, ModelWeights};

use crate::gguf::GgufFile;
use orcd_device::EngineError;

/// A validated model: its file (memory-mapped; the weights stay in it), hyper-parameters and
/// tensor table.
#[derive(Clone, Debug)]
pub struct Model {
    pub gguf: Arc<GgufFile>,
    pub config: ModelConfig,
    pub weights: ModelWeights,
}

impl Model {
    /// Open, map and validate the GGUF file at `path`.
    pub fn open(path: &Path) -> Result<Model, EngineError> {
        Model::load(GgufFile::open(path)?)
    }

    /// Validate an opened file as a model of a supported architecture.
    pub fn load(gguf: impl Into<Arc<GgufFile>>) -> Result<Model, EngineError> {
        let gguf = gguf.into();
        // Check the architecture first, so an unknown one is reported as such.
        config::Arch::from_name(gguf.architecture()?)?;
        let embd = gguf
            .tensor("token_embd.weight")
            .ok_or_else(|| EngineError::BadTensor {
                tensor: "token_embd.weight".into(),
                problem: "missing".into(),
            })?;
        let config = ModelConfig::from_gguf(&gguf, embd.n_rows())?;
        let weights = ModelWeights::from_gguf(&gguf, &config)?;
        Ok(Model {
            gguf,
            config,
            weights,
        })
    }

    /// What this model needs beyond the pre-issue-14 layer (see
    /// [`ModelConfig::extended_features`]), plus projection biases outside Qwen2's q/k/v ones.
    pub fn extended_features(&self) -> Vec<&'static str> {
        let mut f = self.config.extended_features();
        let extra_bias = self.weights.output_norm_bias.is_some()
            || self.weights.layers.iter().any(|l| {
                l.attn_output_bias.is_some()
                    || l.ffn_gate_bias.is_some()
                    || l.ffn_up_bias.is_some()
                    || l.ffn_down_bias.is_some()
                    || l.attn_qkv_bias.is_some()
                    || (self.config.arch != Arch::Qwen2 && l.attn_q_bias.is_some())
            });
        if extra_bias {
            f.push("projection biases");
        }
        f
    }

    /// The bytes of tensor `t` in the mapped file.
    pub fn tensor_data(&self, t: &crate::gguf::TensorInfo) -> &[u8] {
        self.gguf.tensor_data(t)
    }
}

#[cfg(test)]
mod tests {
    use super::tiny::{self, TinySpec};
    use super::*;

    fn load(spec: &TinySpec) -> Result<Model, EngineError> {
        Model::load(spec.build()?)
    }

    fn bad_tensor(spec: &TinySpec) -> (String, String) {
        match load(spec) {
            Err(EngineError::BadTensor { tensor, problem }) => (tensor, problem),
            other => panic!("expected BadTensor, got {other:?}"),
        }
    }

    #[test]
    fn gpt_oss_loads_its_experts_sinks_and_alternating_windows() {
        let m = load(&TinySpec::new("gpt-oss")).unwrap();
        let c = &m.config;
        assert_eq!(c.arch, Arch::GptOss);
        assert_eq!((c.ffn, c.activation), (FfnKind::Moe, Activation::SwigluOai));
        let moe = c.moe.unwrap();
        assert_eq!(
            (moe.n_expert, moe.n_expert_used),
            (tiny::EXPERTS, tiny::EXPERTS_USED)
        );
        assert!(c.attn_sinks && c.rope_style == RopeStyle::Neox);
        // layers 0, 2, ... slide; 1, 3, ... attend to everything
        assert_eq!(c.layer_plan(0).window, Some(tiny::WINDOW));
        assert_eq!(c.layer_plan(1).window, None);
        assert!(c.layer_plan(1).sinks);
        let l = &m.weights.layers[1];
        assert_eq!(l.ffn_gate.as_ref().unwrap().dims, [64, 128, 4]);
        assert_eq!(l.ffn_down_bias.as_ref().unwrap().dims, [64, 4]);
        assert_eq!(l.ffn_norm.name, "blk.1.post_attention_norm.weight");
        assert!(l.attn_q_bias.is_some() && l.attn_output_bias.is_some());
        let f = m.extended_features();
        assert!(f.contains(&"mixture of experts") && f.contains(&"attention sinks"));
        // every part is required
        for t in [
            "blk.1.attn_sinks.weight",
            "blk.0.ffn_gate_inp.bias",
            "blk.1.ffn_up_exps.bias",
            "blk.0.ffn_down_exps.weight",
            "blk.1.attn_output.bias",
        ] {
            let mut spec = TinySpec::new("gpt-oss");
            spec.drop_tensor = Some(t.into());
            assert_eq!(bad_tensor(&spec).0, t);
        }
        // expert keys: required for gpt-oss, unknown ones rejected, and still refused elsewhere
        let mut spec = TinySpec::new("gpt-oss");
        spec.drop_key = Some("gpt-oss.expert_used_count".into());
        assert!(matches!(load(&spec), Err(EngineError::BadMetadata { .. })));
        let mut spec = TinySpec::new("gpt-oss");
        spec.extra_keys = vec![(
            "gpt-oss.expert_weights_scale".into(),
            crate::gguf::MetaValue::F32(2.5),
        )];
        assert!(
            matches!(load(&spec), Err(EngineError::BadMetadata { key, .. })
            if key == "gpt-oss.expert_weights_scale")
        );
        let mut spec = TinySpec::new("llama");
        spec.extra_keys = vec![("llama.expert_count".into(), crate::gguf::MetaValue::U32(4))];
        assert!(matches!(load(&spec), Err(EngineError::BadMetadata { .. })));
    }

    #[test]
    fn each_architecture_loads_with_its_conventions() {
        let llama = load(&TinySpec::new("llama")).unwrap().config;
        assert_eq!(llama.arch, Arch::Llama);
        assert_eq!(llama.rope_style, RopeStyle::Normal);
        assert!(llama.tied_output && !llama.qkv_bias && !llama.qk_norm);
        assert_eq!(
            (llama.n_heads, llama.n_kv_heads, llama.head_dim),
            (4, 2, 16)
        );
        assert_eq!(llama.attn_scale, 0.25);
        assert_eq!(llama.eos_token_ids, vec![2]);
        assert_eq!(llama.vocab_size, tiny::VOCAB);

        let qwen = load(&TinySpec::new("qwen2")).unwrap();
        assert_eq!(qwen.config.rope_style, RopeStyle::Neox);
        assert!(qwen.weights.layers[1].attn_v_bias.is_some());

        let gemma = load(&TinySpec::new("gemma3")).unwrap().config;
        assert_eq!(gemma.rope_style, RopeStyle::Neox);
        assert_eq!(gemma.activation, Activation::GeluTanh);
        assert_eq!(gemma.embed_scale, (tiny::DIM as f32).sqrt());
        assert_eq!(gemma.rope_base_local, Some(config::GEMMA3_LOCAL_ROPE_BASE));
        assert_eq!(gemma.sliding_window, Some(tiny::WINDOW));
        assert!(gemma.qk_norm && gemma.post_norms);
    }

    #[test]
    fn gemma3_every_sixth_layer_is_global() {
        // The pattern, independent of the tiny model's two layers.
        let slides: Vec<bool> = (0..12)
            .map(|il| il % config::GEMMA3_SLIDING_PATTERN < config::GEMMA3_SLIDING_PATTERN - 1)
            .collect();
        assert_eq!(slides.iter().filter(|s| !**s).count(), 2);
        assert!(!slides[5] && !slides[11] && slides[0] && slides[6]);
        let gemma = load(&TinySpec::new("gemma3")).unwrap().config;
        assert_eq!(gemma.sliding_layers, vec![true, true]);
        assert_eq!(gemma.rope_base_of(0), config::GEMMA3_LOCAL_ROPE_BASE);
        assert_eq!(gemma.window_of(1), Some(tiny::WINDOW));
    }

    #[test]
    fn unknown_architecture_is_rejected_by_name() {
        match load(&TinySpec::new("mamba")) {
            Err(EngineError::UnsupportedArchitecture(a)) => assert_eq!(a, "mamba"),
            other => panic!("expected UnsupportedArchitecture, got {other:?}"),
        }
    }

    #[test]
    fn missing_tensor_is_named() {
        let mut spec = TinySpec::new("llama");
        spec.drop_tensor = Some("blk.1.ffn_up.weight".into());
        assert_eq!(
            bad_tensor(&spec),
            ("blk.1.ffn_up.weight".into(), "missing".into())
        );
        let mut spec = TinySpec::new("qwen2");
        spec.drop_tensor = Some("blk.0.attn_k.bias".into());
        assert_eq!(bad_tensor(&spec).0, "blk.0.attn_k.bias");
        let mut spec = TinySpec::new("gemma3");
        spec.drop_tensor = Some("blk.0.post_ffw_norm.weight".into());
        assert_eq!(bad_tensor(&spec).0, "blk.0.post_ffw_norm.weight");
        for (arch, t) in [
            ("qwen3", "blk.1.attn_k_norm.weight"),
            ("phi3", "blk.1.attn_qkv.weight"),
            ("gpt2", "position_embd.weight"),
            ("gpt2", "blk.1.ffn_down.bias"),
            ("gpt2", "output_norm.bias"),
        ] {
            let mut spec = TinySpec::new(arch);
            spec.drop_tensor = Some(t.into());
            assert_eq!(bad_tensor(&spec).0, t, "{arch}");
        }
    }

    #[test]
    fn wrong_shape_or_type_is_named() {
        let mut spec = TinySpec::new("llama");
        spec.grow_tensor = Some("blk.0.attn_k.weight".into());
        let (t, problem) = bad_tensor(&spec);
        assert_eq!(t, "blk.0.attn_k.weight");
        assert!(problem.contains("shape"), "{problem}");
        let mut spec = TinySpec::new("llama");
        spec.f16_tensor = Some("blk.1.attn_norm.weight".into());
        let (t, problem) = bad_tensor(&spec);
        assert_eq!(t, "blk.1.attn_norm.weight");
        assert!(problem.contains("f32"), "{problem}");
    }

    fn bad_meta(spec: &TinySpec) -> (String, String) {
        match load(spec) {
            Err(EngineError::BadMetadata { key, problem }) => (key, problem),
            other => panic!("expected BadMetadata, got {other:?}"),
        }
    }

    #[test]
    fn rope_scaling_linear_and_yarn_are_read_and_unknown_kinds_rejected() {
        use crate::gguf::MetaValue;
        let mut spec = TinySpec::new("llama");
        spec.extra_keys = vec![
            (
                "llama.rope.scaling.type".into(),
                MetaValue::Str("linear".into()),
            ),
            ("llama.rope.scaling.factor".into(), MetaValue::F32(8.0)),
        ];
        let c = load(&spec).unwrap().config;
        assert_eq!(c.rope_freq_scale, 0.125);
        assert_eq!(c.rope_freq_scale_of(1), 0.125);
        assert_eq!(c.rope_scaling.ext_factor, 0.0);

        spec.extra_keys[0].1 = MetaValue::Str("yarn".into());
        spec.extra_keys.push((
            "llama.rope.scaling.original_context_length".into(),
            MetaValue::U32(16),
        ));
        let c = load(&spec).unwrap().config;
        assert_eq!(
            (
                c.rope_freq_scale,
                c.rope_scaling.ext_factor,
                c.rope_scaling.n_ctx_orig
            ),
            (0.125, 1.0, 16)
        );
        // llama.cpp's attn_factor: get_mscale(8) / (1 + 0.1 ln 8), ~1 in f32.
        assert!((c.rope_scaling.attn_factor - 1.0).abs() < 1e-6);
        assert!(
            load(&spec)
                .unwrap()
                .extended_features()
                .contains(&"YaRN RoPE scaling")
        );

        spec.extra_keys[0].1 = MetaValue::Str("dynamic".into());
        let (key, problem) = bad_meta(&spec);
        assert_eq!(key, "llama.rope.scaling.type");
        assert!(problem.contains("dynamic"), "{problem}");

        // A YaRN tuning key that llama.cpp would ignore is refused by name.
        spec.extra_keys[0].1 = MetaValue::Str("yarn".into());
        spec.extra_keys.push((
            "llama.rope.scaling.yarn_beta_fast".into(),
            MetaValue::F32(16.0),
        ));
        assert_eq!(bad_meta(&spec).0, "llama.rope.scaling.yarn_beta_fast");

        // Gemma 3's sliding layers are never scaled.
        let mut spec = TinySpec::new("gemma3");
        spec.extra_keys = vec![
            (
                "gemma3.rope.scaling.type".into(),
                MetaValue::Str("linear".into()),
            ),
            ("gemma3.rope.scaling.factor".into(), MetaValue::F32(8.0)),
        ];
        assert_eq!(load(&spec).unwrap().config.rope_freq_scale_of(0), 1.0);
    }

    #[test]
    fn rope_factor_tensors_are_chosen_like_llama_cpp() {
        use crate::gguf::MetaValue;
        let mut spec = TinySpec::new("llama");
        spec.extra_vectors = vec!["rope_freqs.weight".into()];
        let m = load(&spec).unwrap();
        assert_eq!(m.config.rope_factors, Some(RopeFactors::Freqs));
        assert_eq!(m.weights.rope_factors.unwrap().name, "rope_freqs.weight");
        // LongRoPE: long factors when the served context exceeds the original one.
        let mut spec = TinySpec::new("phi3");
        spec.extra_vectors = vec![
            "rope_factors_long.weight".into(),
            "rope_factors_short.weight".into(),
        ];
        assert_eq!(
            load(&spec).unwrap().config.rope_factors,
            Some(RopeFactors::Short)
        );
        spec.extra_keys = vec![(
            "phi3.rope.scaling.original_context_length".into(),
            MetaValue::U32(32),
        )];
        spec.extra_keys
            .push(("phi3.rope.scaling.attn_factor".into(), MetaValue::F32(1.2)));
        let c = load(&spec).unwrap().config;
        assert_eq!(c.rope_factors, Some(RopeFactors::Long));
        assert_eq!(c.rope_scaling.attn_factor, 1.2);
        // A factor tensor of the wrong length is named.
        let mut spec = TinySpec::new("llama");
        spec.extra_keys = vec![("llama.rope.dimension_count".into(), MetaValue::U32(8))];
        spec.extra_vectors = vec!["rope_freqs.weight".into()];
        let (t, problem) = bad_tensor(&spec);
        assert_eq!(t, "rope_freqs.weight");
        assert!(problem.contains("shape"), "{problem}");
    }

    #[test]
    fn new_families_load_with_their_plans() {
        let qwen3 = load(&TinySpec::new("qwen3")).unwrap();
        let p = qwen3.config.layer_plan(0);
        assert!(p.qk_norm && !qwen3.config.qkv_bias && !p.fused_qkv);
        assert_eq!(p.rope.unwrap().style, RopeStyle::Neox);
        assert!(qwen3.weights.layers[0].attn_q_bias.is_none());

        let phi3 = load(&TinySpec::new("phi3")).unwrap();
        let p = phi3.config.layer_plan(1);
        assert!(p.fused_qkv && p.ffn == FfnKind::FusedGateUp);
        assert!(phi3.weights.layers[1].ffn_gate.is_none());
        assert_eq!(phi3.weights.layers[1].ffn_up.dims, [64, 256]);

        let gpt2 = load(&TinySpec::new("gpt2")).unwrap();
        let p = gpt2.config.layer_plan(0);
        assert!(p.rope.is_none() && p.norm == NormKind::Layer && p.ffn == FfnKind::Plain);
        assert_eq!(p.activation, Activation::GeluTanh);
        assert!(gpt2.weights.position_embd.is_some() && gpt2.weights.output_norm_bias.is_some());
        assert!(gpt2.extended_features().contains(&"learned positions"));
        // The three families that ran before need nothing new from a backend.
        for a in ["llama", "qwen2", "gemma3"] {
            assert_eq!(
                load(&TinySpec::new(a)).unwrap().extended_features(),
                Vec::<&str>::new()
            );
        }
    }

    #[test]
    fn sliding_window_follows_the_metadata() {
        use crate::gguf::MetaValue;
        // Mistral: a llama with a window; 0 or the whole context means full attention.
        for (w, want) in [(8, Some(8)), (0, None), (tiny::CONTEXT as u32, None)] {
            let mut spec = TinySpec::new("llama");
            spec.extra_keys = vec![("llama.attention.sliding_window".into(), MetaValue::U32(w))];
            let c = load(&spec).unwrap().config;
            assert_eq!((c.window_of(0), c.window_of(1)), (want, want), "{w}");
        }
        let mut spec = TinySpec::new("phi3");
        spec.extra_keys = vec![("phi3.attention.sliding_window".into(), MetaValue::U32(6))];
        assert_eq!(load(&spec).unwrap().config.window_of(1), Some(6));
    }

    #[test]
    fn unknown_metadata_and_unused_tensors_are_named() {
        use crate::gguf::MetaValue;
        for (k, v) in [
            ("llama.expert_count", MetaValue::U32(8)),
            ("llama.attention.clamp_kqv", MetaValue::F32(8.0)),
            ("qwen3.logit_scale", MetaValue::F32(0.5)),
            ("gemma3.final_logit_softcapping", MetaValue::F32(30.0)),
        ] {
            let arch = k.split('.').next().unwrap();
            let mut spec = TinySpec::new(match arch {
                "llama" => "llama",
                "qwen3" => "qwen3",
                _ => "gemma3",
            });
            spec.extra_keys = vec![(k.into(), v)];
            let (key, problem) = bad_meta(&spec);
            assert_eq!(key, k);
            assert!(problem.contains("not supported"), "{problem}");
        }
        // Neutral values of known MoE keys are fine.
        let mut spec = TinySpec::new("llama");
        spec.extra_keys = vec![("llama.expert_count".into(), MetaValue::U32(0))];
        assert!(load(&spec).is_ok());
        // A tensor no role takes.
        let mut spec = TinySpec::new("qwen3");
        spec.extra_vectors = vec!["blk.0.attn_sinks.weight".into()];
        let (t, problem) = bad_tensor(&spec);
        assert_eq!(t, "blk.0.attn_sinks.weight");
        assert!(problem.contains("not used"), "{problem}");
    }

    #[test]
    fn missing_metadata_is_named() {
        let mut spec = TinySpec::new("gemma3");
        spec.drop_key = Some("gemma3.attention.sliding_window".into());
        match load(&spec) {
            Err(EngineError::BadMetadata { key, .. }) => {
                assert_eq!(key, "gemma3.attention.sliding_window")
            }
            other => panic!("expected BadMetadata, got {other:?}"),
        }
        let mut spec = TinySpec::new("llama");
        spec.drop_key = Some("llama.block_count".into());
        assert!(matches!(load(&spec), Err(EngineError::BadMetadata { .. })));
    }
}
