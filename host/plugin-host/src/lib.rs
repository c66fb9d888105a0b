//! The Wasm plugin runtime: loads tokenizer, sampler, request-handler and constraint components
//! (contract `worker:plugin@0.2.0`, see `wit/`; plugins of the frozen 0.1.0 contract in
//! `wit/since_v0.1.0/` load too) and runs them sandboxed.
//!
//! # Model
//! One wasmtime [`Engine`](wasmtime::Engine) per worker. Every plugin is compiled once (through
//! an on-disk cache keyed by its hash), linked once into an `InstancePre`, and instantiated per
//! session (~tens of µs). Sessions hold an `Arc` to the plugin they started with, so loading a
//! new version of a plugin ([`PluginHost::load_file`], [`PluginHost::rescan`]) affects new
//! sessions only.
//!
//! # Sandbox
//! - WASI with nothing granted: no preopened directory, environment, arguments or sockets;
//!   imports outside the WASI 0.2 families and the plugin kind's host interfaces are refused at
//!   load ([`PluginError::LoadFailed`]).
//! - Per instance: linear memory capped ([`PluginHostConfig::memory_limit_bytes`]), Wasm stack
//!   capped, every call bounded in time by epoch interruption (a ticker thread), optionally by
//!   fuel too (deterministic conformance runs).
//! - A trap, timeout, exhausted memory or invalid output ends only that call's session with a
//!   stable code ([`PluginError::code`]: `PLUGIN_TRAP`, `PLUGIN_TIMEOUT`, `PLUGIN_MEMORY`,
//!   `PLUGIN_INVALID_OUTPUT`, ...) naming the plugin and its version; the trapped instance is
//!   dropped, never reused.
//!
//! # API
//! ```ignore
//! let host = PluginHost::new(PluginHostConfig::default(), facts, &vocab_data)?;
//! let mut handler = host.request_handler()?;
//! let job = handler.parse_execute(body, "application/json", &limits)?;
//! let mut tok = host.tokenizer()?;
//! let prompt = tok.encode(&job.prompt, true, true)?;
//! let mut sampler = host.sampler(&job.sampler, &job.params, seed)?;
//! // per token, after device.forward(..):
//! let id = sampler.sample(&mut device, row, &history)?;   // any orcd_device::Device
//! let bytes = tok.piece(id)?;
//! let sse = handler.render_event(&StreamEvent::Token(TokenEvent { text, index }))?;
//! ```

mod bindings;
mod bounded_clock;
mod builtin;
mod cache;
mod config;
mod constraint_session;
mod directory;
mod error;
mod handler_session;
mod host;
mod host_api;
mod legacy;
mod logits;
mod plugin;
mod sampler_session;
mod state;
mod tokenizer_session;
mod versions;
mod vocab_view;

pub use builtin::{BuiltinPlugin, builtin_plugins};
pub use config::PluginHostConfig;
pub use constraint_session::ConstraintSession;
pub use directory::{DirectoryChanges, LoadFailure};
pub use error::PluginError;
pub use handler_session::{HandlerSession, MAX_BODY_BYTES};
pub use host::PluginHost;
pub use logits::{LogitsHandle, LogitsSource};
pub use plugin::{CONTRACT_VERSION, PluginInfo, PluginKind, PluginSource};
pub use sampler_session::SamplerSession;
pub use tokenizer_session::TokenizerSession;

/// Records of the WIT contract, as the host sees them.
pub use bindings::handler::exports::worker::plugin::handler_plugin::{
    EndEvent, ErrorEvent, Invalid, Job as ExecuteJob, Limits, MetricsEvent, StartedEvent, StopHit,
    StreamEvent, TokenEvent,
};
pub use bindings::types::{InvalidField, ModelFacts, SamplingParams};
pub use versions::Contract;

#[cfg(test)]
mod tests {
    use super::*;

    /// The server shares the host across tasks and moves sessions between threads.
    #[test]
    fn host_and_sessions_cross_threads() {
        fn shared<T: Clone + Send + Sync>() {}
        fn movable<T: Send>() {}
        shared::<PluginHost>();
        movable::<SamplerSession>();
        movable::<TokenizerSession>();
        movable::<HandlerSession>();
        movable::<ConstraintSession>();
    }
}
