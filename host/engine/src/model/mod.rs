//! Model definitions: the hyper-parameters ([`ModelConfig`]) and the tensor table
//! ([`ModelWeights`]) of a GGUF model, checked on load, independent of any backend.
//!
//! Architectures: `llama`, `qwen2`, `gemma3` (see [`config`] for what differs between them).
//! Weight types: whatever [`crate::quant::GgmlType`] supports; norms and biases are f32.

pub mod config;
pub mod decode;
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
