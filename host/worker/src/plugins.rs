//! The worker's view of its plugins: the roles the scheduler and the server call (tokenizer,
//! sampler, constraint, request handler), as narrow traits.
//!
//! The shipped implementation forwards to the Wasm components of `orcd-plugin-host`
//! ([`crate::plugin_bridge`]); the scheduler and the HTTP layer only see these traits, so the
//! request path reads request -> handler -> tokenizer -> scheduler -> device -> sampler ->
//! tokenizer -> handler (SSE rendering) without knowing how a plugin runs.

use std::sync::Arc;

use orcd_device::Device;

use crate::error_code::ErrorCode;
use crate::job::{GenParams, JobEvent};

/// A plugin failure, tagged with the plugin that failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct PluginFailure {
    /// `PLUGIN_TRAP` (a plugin bug) or `PLUGIN_ERROR` (an expected failure it reported).
    pub code: ErrorCode,
    /// Plugin name and version, e.g. `tokenizer@0.1.0`.
    pub plugin: String,
    /// What happened, naming the plugin once (`plugin typical@0.1.0 failed with ...`).
    pub message: String,
}

/// Why a request's sampler was refused at admission (before the request is queued).
#[derive(Debug, Clone)]
pub enum SamplerRefusal {
    /// No sampler plugin of that name is loaded (`PLUGIN_NOT_FOUND`).
    NotFound { name: String, loaded: Vec<String> },
    /// The sampler's `validate` refused a field (`INVALID_REQUEST`).
    Invalid(InvalidField),
    /// The sampler failed while validating (trap, timeout, ...).
    Failed(PluginFailure),
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
    /// Tokenize text as `POST /tokenize` asks: special-token text parsed or not, BOS added or
    /// not.
    fn encode_with(
        &self,
        text: &str,
        parse_special: bool,
        add_special: bool,
    ) -> Result<Vec<u32>, PluginFailure>;
    /// The bytes of token ids, special tokens included (`POST /detokenize`).
    fn decode(&self, ids: &[u32]) -> Result<Vec<u8>, PluginFailure>;
    /// The bytes of one token (possibly part of a UTF-8 character).
    fn piece(&self, id: u32) -> Result<Vec<u8>, PluginFailure>;
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
    /// Admission check: the sampler `params.sampler` is loaded and accepts `params` (its
    /// `sampler_params` included). Runs before the request is queued, so a refusal is an HTTP
    /// error rather than an `error` event after `started`.
    fn validate(&self, params: &GenParams) -> Result<(), SamplerRefusal>;
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

/// Compiles one constraint session per constrained request.
pub trait ConstraintFactory: Send + Sync {
    /// Compile the request's constraint (admission, before the request is queued): a spec the
    /// plugin refuses is [`ConstraintRefusal::Invalid`] naming `spec.field` (HTTP 400).
    fn compile(
        &self,
        spec: &crate::job::ConstraintSpec,
    ) -> Result<Box<dyn ConstraintSession>, ConstraintRefusal>;
}

/// Why a request's constraint was refused at admission.
#[derive(Debug, Clone)]
pub enum ConstraintRefusal {
    /// No constraint plugin of that name is loaded (`PLUGIN_NOT_FOUND`).
    NotFound { name: String, loaded: Vec<String> },
    /// The plugin cannot compile the spec (`INVALID_REQUEST` naming the field).
    Invalid(InvalidField),
    /// The plugin failed while compiling (trap, timeout, ...).
    Failed(PluginFailure),
}

/// One request's constraint: the allowed tokens before each sample, the sampled token after.
pub trait ConstraintSession: Send {
    /// The allowed-token bitset of the next token: `ceil(vocab / 32)` words, token `i` allowed
    /// when bit `i % 32` of word `i / 32` is set. All zero is a dead end. `remaining`: tokens
    /// the sequence may still generate, the end token included (the mask keeps the output
    /// able to complete within them).
    fn allowed(&mut self, remaining: u32) -> Result<Vec<u32>, PluginFailure>;
    /// Take the sampled token (refused when it was not allowed).
    fn advance(&mut self, token: u32) -> Result<(), PluginFailure>;
}

impl std::fmt::Debug for dyn ConstraintSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConstraintSession")
    }
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

/// One plugin in service (`GET /plugins`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PluginRow {
    /// `tokenizer`, `sampler` or `request-handler`.
    pub kind: String,
    /// What requests select it by (`"sampler": "<name>"`).
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// The contract version it was built against (`0.1.0`, `0.2.0`).
    pub contract: String,
    /// `builtin` or the `.wasm` file's path.
    pub source: String,
    pub description: String,
}

/// A plugin file that failed to load (`GET /plugins`, `/health`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PluginLoadFailure {
    pub path: String,
    /// `PLUGIN_LOAD_FAILED` (or the code of a failing `info()`).
    pub code: String,
    pub message: String,
}

/// What the worker has loaded and how its plugin folder changed.
pub trait PluginCatalog: Send + Sync {
    /// The plugins in service, by kind and name.
    fn loaded(&self) -> Vec<PluginRow>;
    /// The plugin files that fail to load.
    fn load_failures(&self) -> Vec<PluginLoadFailure>;
    /// Directory changes since start, by change (`loaded`, `replaced`, `unloaded`, `released`,
    /// `failed`), for `/metrics`.
    fn changes(&self) -> Vec<(&'static str, u64)>;
}

/// The plugins of one worker, shared by the HTTP tasks and the scheduler thread.
#[derive(Clone)]
pub struct Plugins {
    pub tokenizer: Arc<dyn Tokenizer>,
    pub sampler: Arc<dyn SamplerFactory>,
    pub constraint: Arc<dyn ConstraintFactory>,
    pub handler: Arc<dyn RequestHandler>,
    pub catalog: Arc<dyn PluginCatalog>,
}

impl std::fmt::Debug for Plugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugins").finish_non_exhaustive()
    }
}
