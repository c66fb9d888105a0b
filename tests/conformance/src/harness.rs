//! The plugin host as the kit runs it: a synthetic vocabulary and model facts, the built-in
//! plugins left out (only the plugin under test is loaded), and the mock device for logits.

use std::path::Path;

use orcd_common::Vocab;
use orcd_plugin_host::{
    ModelFacts, PluginHost, PluginHostConfig, PluginInfo, PluginKind, SamplingParams,
};

use crate::KitError;

/// A vocabulary of `n` tokens `t0`, `t1`, ... (BOS 0, EOS 1).
pub fn synthetic_vocab(n: u32) -> Vocab {
    Vocab::synthetic(n)
}

/// Facts of a synthetic model with `n` tokens.
pub fn synthetic_facts(n: u32) -> ModelFacts {
    ModelFacts {
        architecture: "llama".into(),
        name: "conformance".into(),
        vocab_size: n,
        context_length: 4096,
        bos: Some(0),
        eos: Some(1),
        eot: None,
    }
}

/// A host over `vocab` with only the plugin at `wasm` loaded; fails unless it is of `kind`.
pub fn host_with(
    wasm: &Path,
    kind: PluginKind,
    facts: ModelFacts,
    vocab: &Vocab,
) -> Result<(PluginHost, PluginInfo), KitError> {
    host_with_config(wasm, kind, facts, vocab, PluginHostConfig::default())
}

/// [`host_with`] under explicit sandbox settings (the built-in plugins are always left out).
pub fn host_with_config(
    wasm: &Path,
    kind: PluginKind,
    facts: ModelFacts,
    vocab: &Vocab,
    cfg: PluginHostConfig,
) -> Result<(PluginHost, PluginInfo), KitError> {
    let cfg = PluginHostConfig {
        load_builtins: false,
        ..cfg
    };
    let host = PluginHost::new(cfg, facts, vocab)?;
    let info = host.load_file(wasm)?;
    if info.kind != kind {
        return Err(KitError::WrongKind {
            plugin: info.label(),
            found: info.kind.to_string(),
            wanted: kind.as_str(),
        });
    }
    Ok((host, info))
}

/// The kind of plugin the component at `wasm` is (loaded once, with nothing else, to find out).
pub fn detect_kind(wasm: &Path) -> Result<PluginKind, KitError> {
    let cfg = PluginHostConfig {
        load_builtins: false,
        ..PluginHostConfig::default()
    };
    let host = PluginHost::new(cfg, synthetic_facts(1000), &synthetic_vocab(1000))?;
    Ok(host.load_file(wasm)?.kind)
}

/// Sampling parameters with every filter off at `temperature`.
pub fn plain_params(temperature: f32) -> SamplingParams {
    SamplingParams {
        temperature,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        repetition_penalty: 1.0,
        presence_penalty: 0.0,
        frequency_penalty: 0.0,
        penalty_window: 64,
        extra: Vec::new(),
    }
}
