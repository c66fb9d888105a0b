//! Model definitions: the hyper-parameters ([`ModelConfig`]) and the tensor table
//! ([`ModelWeights`]) of a GGUF model, checked on load, independent of any backend.
//!
//! Architectures: `llama`, `qwen2`, `gemma3` (see [`config`] for what differs between them).
//! Weight types: whatever [`crate::quant::GgmlType`] supports; norms and biases are f32.

pub mod config;
pub mod decode;
#[cfg(test)]
pub(crate) mod tiny;
pub mod weights;

use std::path::Path;
use std::sync::Arc;

pub use config::{Activation, Arch, ModelConfig, RopeStyle};
pub use weights::{LayerWeights, ModelWeights};

use crate::EngineError;
use crate::gguf::GgufFile;

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

    #[test]
    fn rope_scaling_linear_is_read_and_other_kinds_rejected() {
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
        spec.extra_keys[0].1 = MetaValue::Str("yarn".into());
        match load(&spec) {
            Err(EngineError::BadMetadata { key, problem }) => {
                assert_eq!(key, "llama.rope.scaling.type");
                assert!(problem.contains("yarn"));
            }
            other => panic!("expected BadMetadata, got {other:?}"),
        }
        let mut spec = TinySpec::new("llama");
        spec.extra_vectors = vec!["rope_freqs.weight".into()];
        assert_eq!(bad_tensor(&spec).0, "rope_freqs.weight");
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
