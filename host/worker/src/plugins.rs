//! The worker's view of its plugins: the three roles the scheduler and the server call
//! (tokenizer, sampler, request handler), as narrow traits.
//!
//! The shipped implementation forwards to the Wasm components of `orcd-plugin-host`
//! ([`crate::plugin_bridge`]); the scheduler and the HTTP layer only see these traits, so the
//! request path reads request -> handler -> tokenizer -> scheduler -> device -> sampler ->
//! tokenizer -> handler (SSE rendering) without knowing how a plugin runs.

use std::sync::Arc;

use orcd_engine::Device;

use crate::error_code::ErrorCode;
use crate::job::{GenParams, JobEvent};

/// A plugin failure, tagged with the plugin that failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin {plugin}: {message}")]
pub struct PluginFailure {
    /// `PLUGIN_TRAP` (a plugin bug) or `PLUGIN_ERROR` (an expected failure it reported).
    pub code: ErrorCode,
    /// Plugin name and version, e.g. `tokenizer@0.1.0`.
    pub plugin: String,
    pub message: String,
}

/// A request body the handler rejected: the field at fault and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidField {
    pub field: String,
    pub message: String,
}

/// Limits the handler enforces while parsing (from the CLI flags).
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Longest prompt in characters (spec: 32768).
    pub max_prompt_chars: usize,
    /// Largest `max_tokens` a request may ask for (`--max-tokens-out`).
    pub max_tokens_out: u32,
    /// Vocabulary size (upper bound of `top_k`).
    pub vocab_size: u32,
}

/// A parsed `POST /execute` body.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecuteRequest {
    pub job_id: String,
    pub prompt: String,
    pub params: GenParams,
}

/// Text to token ids and back.
pub trait Tokenizer: Send + Sync {
    /// Tokenize a prompt the way the model expects (BOS when the model adds one; special-token
    /// text such as `<|im_start|>` parsed as the special token).
    fn encode(&self, text: &str) -> Result<Vec<u32>, PluginFailure>;
    /// A fresh streaming decoder for one generation.
    fn decoder(&self) -> Result<Box<dyn StreamDecoder>, PluginFailure>;
    /// Whether a token ends generation (EOS, end-of-turn).
    fn is_end_of_generation(&self, token: u32) -> bool;
    /// `"bpe"`, `"spm"`, ... for `/health`.
    fn kind(&self) -> String;
}

/// Incremental detokenizer: text comes out only once its UTF-8 bytes are complete.
pub trait StreamDecoder: Send {
    /// Append a token; returns the text that became complete (possibly empty).
    fn push(&mut self, token: u32) -> Result<String, PluginFailure>;
}

/// Creates one sampling session per request.
pub trait SamplerFactory: Send + Sync {
    /// A session for `params` with the RNG seeded by `seed`.
    fn session(
        &self,
        params: &GenParams,
        seed: u64,
    ) -> Result<Box<dyn SamplerSession>, PluginFailure>;
}

/// One request's sampler: picks the next token from a logits row kept on the device.
pub trait SamplerSession: Send {
    /// Choose a token from logits `row` of the last step; `history` is the prompt plus the
    /// tokens generated so far.
    fn sample(
        &mut self,
        device: &mut dyn Device,
        row: usize,
        history: &[u32],
    ) -> Result<u32, PluginFailure>;
}

/// Request handling: parsing `/execute`, stop sequences, SSE event rendering.
pub trait RequestHandler: Send + Sync {
    /// Parse and validate an `/execute` body.
    fn parse_execute(
        &self,
        body: &[u8],
        content_type: Option<&str>,
        limits: &RequestLimits,
    ) -> Result<Result<ExecuteRequest, InvalidField>, PluginFailure>;
    /// If `text` (everything generated so far) contains one of `stops`, the byte offset where
    /// the earliest match starts; the output is cut there.
    fn find_stop(&self, text: &str, stops: &[String]) -> Result<Option<usize>, PluginFailure>;
    /// Render an event as SSE text: `event: <name>\ndata: <json>\n\n`.
    fn render_event(&self, event: &JobEvent) -> Result<String, PluginFailure>;
}

/// A loaded plugin as `/health` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PluginListing {
    /// `tokenizer`, `sampler` or `request-handler`.
    pub kind: String,
    /// The name requests select it by.
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// The contract version it implements.
    pub contract: String,
    /// Built into the binary (else loaded from `--plugin-dir`).
    pub builtin: bool,
}

/// Which plugins are loaded now (the list changes when `--plugin-dir` is rescanned).
pub trait PluginCatalog: Send + Sync {
    fn loaded(&self) -> Vec<PluginListing>;
}

/// The plugins of one worker, shared by the HTTP tasks and the scheduler thread.
#[derive(Clone)]
pub struct Plugins {
    pub tokenizer: Arc<dyn Tokenizer>,
    pub sampler: Arc<dyn SamplerFactory>,
    pub handler: Arc<dyn RequestHandler>,
    pub catalog: Arc<dyn PluginCatalog>,
}

impl std::fmt::Debug for Plugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugins").finish_non_exhaustive()
    }
}
