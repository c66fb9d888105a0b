//! How the plugin runtime is set up: where compiled components are cached, which extra plugin
//! folder is scanned, and the sandbox bounds every instance runs under.

use std::path::PathBuf;
use std::time::Duration;

/// Settings of a [`crate::PluginHost`].
#[derive(Clone, Debug)]
pub struct PluginHostConfig {
    /// Folder for compiled components (`<sha256>.cwasm`), or none to compile at every start.
    /// Only files this host wrote there are deserialized; it must be writable by the worker
    /// alone.
    pub cache_dir: Option<PathBuf>,
    /// Folder of extra `.wasm` plugins loaded at start and on [`crate::PluginHost::rescan`].
    pub plugin_dir: Option<PathBuf>,
    /// Whether the plugins built into the binary (tokenizer, sampler `standard`, handler
    /// `orcd`) are loaded.
    pub load_builtins: bool,
    /// Linear memory one instance may grow to, in bytes.
    pub memory_limit_bytes: usize,
    /// Wasm stack one call may use, in bytes (deeper recursion traps as a stack overflow).
    pub max_stack_bytes: usize,
    /// Time bound of one per-request call (encode, sample, render, ...).
    pub call_timeout: Duration,
    /// Time bound of one-off calls: `info` at load and the tokenizer's `init`.
    pub init_timeout: Duration,
    /// Fuel per call, for deterministic bounds in conformance runs (in addition to the time
    /// bound); none = fuel is not counted (faster).
    pub fuel_per_call: Option<u64>,
    /// Name of the tokenizer plugin to use; none = the only one, or the built-in one.
    pub tokenizer: Option<String>,
    /// Name of the request-handler plugin to use; none = `orcd`, or the only one.
    pub handler: Option<String>,
    /// Whether a 0.2.0 sampler's `top-k` answer is written into its memory in one pass
    /// ([`crate::logits`]'s `BulkCandidate`) rather than field by field as wasmtime's generated
    /// lowering does (the reference, kept for the test that compares them).
    pub bulk_candidate_lists: bool,
}

impl Default for PluginHostConfig {
    fn default() -> Self {
        PluginHostConfig {
            cache_dir: None,
            plugin_dir: None,
            load_builtins: true,
            memory_limit_bytes: 256 << 20,
            max_stack_bytes: 1 << 20,
            call_timeout: Duration::from_secs(1),
            init_timeout: Duration::from_secs(30),
            fuel_per_call: None,
            tokenizer: None,
            handler: None,
            bulk_candidate_lists: true,
        }
    }
}
