//! The host side of the frozen contract `worker:plugin@0.1.0`: each 0.1.0 import forwards to
//! the 0.2.0 implementation (`host_api.rs`, `vocab_view.rs`, `logits.rs`), adapting records
//! that are distinct Rust types in the two bindings. `types` needs nothing: its 0.1.0 records
//! are mapped onto the 0.2.0 ones (see `bindings.rs`).

use wasmtime::component::Resource;

use crate::bindings::sampler::worker::plugin::logits as l2;
use crate::bindings::tokenizer::worker::plugin::{host as host2, vocab as v2};
use crate::bindings::types::ModelFacts;
use crate::bindings::v0_1_0::sampler::worker::plugin::logits as l1;
use crate::bindings::v0_1_0::tokenizer::worker::plugin::{host as host1, vocab as v1};
use crate::logits::LogitsHandle;
use crate::state::PluginState;

impl host1::Host for PluginState {
    fn log(&mut self, level: host1::LogLevel, message: String) -> wasmtime::Result<()> {
        let level = match level {
            host1::LogLevel::Trace => host2::LogLevel::Trace,
            host1::LogLevel::Debug => host2::LogLevel::Debug,
            host1::LogLevel::Info => host2::LogLevel::Info,
            host1::LogLevel::Warn => host2::LogLevel::Warn,
            host1::LogLevel::Error => host2::LogLevel::Error,
        };
        host2::Host::log(self, level, message)
    }

    fn model(&mut self) -> wasmtime::Result<ModelFacts> {
        host2::Host::model(self)
    }
}

impl v1::Host for PluginState {
    fn info(&mut self) -> wasmtime::Result<v1::VocabInfo> {
        let i = v2::Host::info(self)?;
        Ok(v1::VocabInfo {
            model: i.model,
            pre: i.pre,
            size: i.size,
            merges_count: i.merges_count,
            has_scores: i.has_scores,
            add_bos: i.add_bos,
            add_eos: i.add_eos,
            add_space_prefix: i.add_space_prefix,
            bos: i.bos,
            eos: i.eos,
            eot: i.eot,
            unk: i.unk,
            pad: i.pad,
        })
    }

    fn tokens(&mut self, start: u32, count: u32) -> wasmtime::Result<v1::PackedBytes> {
        packed(v2::Host::tokens(self, start, count)?)
    }

    fn scores(&mut self, start: u32, count: u32) -> wasmtime::Result<Vec<f32>> {
        v2::Host::scores(self, start, count)
    }

    fn token_types(&mut self, start: u32, count: u32) -> wasmtime::Result<Vec<v1::TokenType>> {
        let types = v2::Host::token_types(self, start, count)?;
        Ok(types
            .into_iter()
            .map(|t| match t {
                v2::TokenType::Undefined => v1::TokenType::Undefined,
                v2::TokenType::Normal => v1::TokenType::Normal,
                v2::TokenType::Unknown => v1::TokenType::Unknown,
                v2::TokenType::Control => v1::TokenType::Control,
                v2::TokenType::UserDefined => v1::TokenType::UserDefined,
                v2::TokenType::Unused => v1::TokenType::Unused,
                v2::TokenType::Byte => v1::TokenType::Byte,
            })
            .collect())
    }

    fn merges(&mut self, start: u32, count: u32) -> wasmtime::Result<v1::PackedBytes> {
        packed(v2::Host::merges(self, start, count)?)
    }
}

fn packed(p: v2::PackedBytes) -> wasmtime::Result<v1::PackedBytes> {
    Ok(v1::PackedBytes {
        data: p.data,
        lengths: p.lengths,
    })
}

fn candidate(c: l2::Candidate) -> l1::Candidate {
    l1::Candidate {
        id: c.id,
        logit: c.logit,
    }
}

impl l1::HostLogits for PluginState {
    fn vocab_size(&mut self, h: Resource<LogitsHandle>) -> wasmtime::Result<u32> {
        l2::HostLogits::vocab_size(self, h)
    }

    fn argmax(&mut self, h: Resource<LogitsHandle>) -> wasmtime::Result<l1::Candidate> {
        l2::HostLogits::argmax(self, h).map(candidate)
    }

    fn top_k(&mut self, h: Resource<LogitsHandle>, k: u32) -> wasmtime::Result<Vec<l1::Candidate>> {
        Ok(l2::HostLogits::top_k(self, h, k)?
            .into_iter()
            .map(candidate)
            .collect())
    }

    fn penalize(
        &mut self,
        h: Resource<LogitsHandle>,
        history: Vec<u32>,
        repeat: f32,
        frequency: f32,
        presence: f32,
    ) -> wasmtime::Result<()> {
        l2::HostLogits::penalize(self, h, history, repeat, frequency, presence)
    }

    fn full(&mut self, h: Resource<LogitsHandle>) -> wasmtime::Result<Vec<f32>> {
        l2::HostLogits::full(self, h)
    }

    fn drop(&mut self, h: Resource<LogitsHandle>) -> wasmtime::Result<()> {
        l2::HostLogits::drop(self, h)
    }
}

impl l1::Host for PluginState {}
