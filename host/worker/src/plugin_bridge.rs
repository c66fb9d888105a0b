//! The shipped [`Plugins`]: the Wasm components of `orcd-plugin-host` behind the worker's plugin
//! traits.
//!
//! Plugin sessions are single-threaded (`&mut`), so the bridge keeps them where they are used:
//! encoding opens a pooled tokenizer session per prompt (HTTP tasks); streaming decode uses one
//! tokenizer session owned by the scheduler thread's side (token pieces, joined by
//! [`Utf8Stream`]); request-handler sessions live in a small pool shared by parsing, stop checks
//! and event rendering.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use orcd_device::{Device, EngineError};
use orcd_model::Model;
use orcd_plugin_host::{
    EndEvent, ErrorEvent, HandlerSession, Limits, LogitsSource, MetricsEvent,
    ModelFacts as PluginModelFacts, PluginError, PluginHost, PluginHostConfig, PluginSource,
    SamplingParams, StartedEvent, StreamEvent, TokenEvent, TokenizerSession,
};

use crate::error_code::ErrorCode;
use crate::job::{BUILTIN_CONSTRAINT, GenParams, JobEvent};
use crate::plugins::{
    ConstraintFactory, ConstraintRefusal, ConstraintSession, ExecuteRequest, InvalidField,
    PluginCatalog, PluginFailure, PluginLoadFailure, PluginRow, Plugins, RequestHandler,
    RequestLimits, SamplerFactory, SamplerRefusal, SamplerSession, StreamDecoder, Tokenizer,
};
use crate::utf8_stream::Utf8Stream;

/// Request-handler sessions kept for reuse.
const HANDLER_POOL: usize = 16;

/// The plugin runtime and the sessions the bridge keeps.
struct WasmPlugins {
    host: PluginHost,
    handlers: Mutex<Vec<HandlerSession>>,
    /// The tokenizer session that turns generated ids into bytes.
    pieces: Mutex<Option<TokenizerSession>>,
    end_of_generation: HashSet<u32>,
    /// `gpt2` -> `bpe`, `llama` -> `spm`.
    kind: String,
    context_length: u32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A plugin runtime error as the worker reports it.
fn failure(e: PluginError) -> PluginFailure {
    let plugin = match &e {
        PluginError::LoadFailed { plugin, .. }
        | PluginError::Trap { plugin, .. }
        | PluginError::Timeout { plugin, .. }
        | PluginError::Memory { plugin, .. }
        | PluginError::InvalidOutput { plugin, .. }
        | PluginError::Reported { plugin, .. }
        | PluginError::Device { plugin, .. } => plugin.clone(),
        PluginError::NotFound { kind, name } => format!("{kind} `{name}`"),
        PluginError::InvalidRequest { .. } | PluginError::Runtime(_) => "plugin-host".into(),
    };
    PluginFailure {
        code: e.code(),
        plugin,
        message: e.to_string(),
    }
}

impl WasmPlugins {
    /// Run `f` on a pooled handler session; a session that failed is dropped, not reused.
    fn with_handler<R>(
        &self,
        f: impl FnOnce(&mut HandlerSession) -> Result<R, PluginError>,
    ) -> Result<R, PluginError> {
        let pooled = lock(&self.handlers).pop();
        let mut session = match pooled {
            Some(s) => s,
            None => self.host.request_handler()?,
        };
        let result = f(&mut session);
        let reusable = match &result {
            Ok(_) | Err(PluginError::InvalidRequest { .. }) => true,
            Err(_) => false,
        };
        if reusable {
            let mut pool = lock(&self.handlers);
            if pool.len() < HANDLER_POOL {
                pool.push(session);
            }
        }
        result
    }

    fn piece(&self, id: u32) -> Result<Vec<u8>, PluginError> {
        let mut slot = lock(&self.pieces);
        let session = match &mut *slot {
            Some(s) => s,
            empty => empty.insert(self.host.tokenizer()?),
        };
        session.piece(id)
    }
}

/// The tokenizer role, holding the bridge by `Arc` so that decoders can share it.
struct SharedTokenizer(Arc<WasmPlugins>);

/// A streaming decoder over the bridge's piece session.
struct PieceDecoder {
    plugins: Arc<WasmPlugins>,
    utf8: Utf8Stream,
}

impl StreamDecoder for PieceDecoder {
    fn push(&mut self, token: u32) -> Result<String, PluginFailure> {
        let bytes = self.plugins.piece(token).map_err(failure)?;
        Ok(self.utf8.push(&bytes))
    }
}

impl Tokenizer for SharedTokenizer {
    fn encode(&self, text: &str) -> Result<Vec<u32>, PluginFailure> {
        // Special-token text (`<|im_start|>`) becomes its token, as llama.cpp's server does;
        // BOS is added when the vocabulary asks for it.
        let mut session = self.0.host.tokenizer().map_err(failure)?;
        session.encode(text, true, true).map_err(failure)
    }

    fn encode_with(
        &self,
        text: &str,
        parse_special: bool,
        add_special: bool,
    ) -> Result<Vec<u32>, PluginFailure> {
        let mut session = self.0.host.tokenizer().map_err(failure)?;
        session
            .encode(text, parse_special, add_special)
            .map_err(failure)
    }

    fn decode(&self, ids: &[u32]) -> Result<Vec<u8>, PluginFailure> {
        let mut session = self.0.host.tokenizer().map_err(failure)?;
        session.decode(ids, false).map_err(failure)
    }

    fn piece(&self, id: u32) -> Result<Vec<u8>, PluginFailure> {
        self.0.piece(id).map_err(failure)
    }

    fn decoder(&self) -> Result<Box<dyn StreamDecoder>, PluginFailure> {
        Ok(Box::new(PieceDecoder {
            plugins: self.0.clone(),
            utf8: Utf8Stream::default(),
        }))
    }

    fn is_end_of_generation(&self, token: u32) -> bool {
        self.0.end_of_generation.contains(&token)
    }

    fn kind(&self) -> String {
        self.0.kind.clone()
    }
}

struct WasmSampler(orcd_plugin_host::SamplerSession);

impl SamplerSession for WasmSampler {
    fn sample(
        &mut self,
        device: &mut dyn Device,
        row: usize,
        history: &[u32],
    ) -> Result<u32, PluginFailure> {
        let mut source = DeviceLogits(device);
        self.0.sample(&mut source, row, history).map_err(failure)
    }
}

/// A device lent to a sampler as its logits source.
struct DeviceLogits<'a>(&'a mut dyn Device);

impl LogitsSource for DeviceLogits<'_> {
    fn vocab_size(&self) -> usize {
        self.0.vocab_size()
    }
    fn argmax(&self, row: usize) -> Result<(u32, f32), EngineError> {
        self.0.logits_argmax(row)
    }
    fn top_k(&self, row: usize, k: usize) -> Result<Vec<(u32, f32)>, EngineError> {
        self.0.logits_top_k(row, k)
    }
    fn row(&self, row: usize) -> Result<Vec<f32>, EngineError> {
        self.0.logits_row(row)
    }
    fn penalize(
        &mut self,
        row: usize,
        history: &[u32],
        repeat: f32,
        frequency: f32,
        presence: f32,
    ) -> Result<(), EngineError> {
        self.0
            .logits_penalize(row, history, repeat, frequency, presence)
    }
}

fn sampling_params(p: &GenParams) -> SamplingParams {
    SamplingParams {
        temperature: p.temperature,
        top_k: p.top_k,
        top_p: p.top_p,
        min_p: p.min_p,
        repetition_penalty: p.repetition_penalty,
        presence_penalty: p.presence_penalty,
        frequency_penalty: p.frequency_penalty,
        penalty_window: p.penalty_window,
        extra: p.extra.clone(),
    }
}

impl SamplerFactory for WasmPlugins {
    fn validate(&self, params: &GenParams) -> Result<(), SamplerRefusal> {
        match self
            .host
            .validate_sampler(&params.sampler, &sampling_params(params))
        {
            Ok(()) => Ok(()),
            Err(PluginError::NotFound { name, .. }) => Err(SamplerRefusal::NotFound {
                name,
                loaded: self.host.sampler_names(),
            }),
            Err(PluginError::InvalidRequest { field, message }) => {
                Err(SamplerRefusal::Invalid(InvalidField { field, message }))
            }
            Err(e) => Err(SamplerRefusal::Failed(failure(e))),
        }
    }

    fn session(
        &self,
        params: &GenParams,
        seed: u64,
    ) -> Result<Box<dyn SamplerSession>, PluginFailure> {
        let s = self
            .host
            .sampler(&params.sampler, &sampling_params(params), seed)
            .map_err(failure)?;
        Ok(Box::new(WasmSampler(s)))
    }
}

/// A constraint plugin's session behind the worker's trait.
struct WasmConstraint(orcd_plugin_host::ConstraintSession);

impl ConstraintSession for WasmConstraint {
    fn allowed(&mut self, remaining: u32) -> Result<Vec<u32>, PluginFailure> {
        self.0.allowed(remaining).map_err(failure)
    }
    fn advance(&mut self, token: u32) -> Result<(), PluginFailure> {
        self.0.advance(token).map_err(failure)
    }
}

impl ConstraintFactory for WasmPlugins {
    fn compile(
        &self,
        spec: &crate::job::ConstraintSpec,
    ) -> Result<Box<dyn ConstraintSession>, ConstraintRefusal> {
        match self.host.constraint(&spec.plugin, &spec.kind, &spec.spec) {
            Ok(s) => Ok(Box::new(WasmConstraint(s))),
            Err(PluginError::NotFound { name, .. }) => Err(ConstraintRefusal::NotFound {
                name,
                loaded: self.host.constraint_names(),
            }),
            // The plugin's own refusal (an unsupported keyword, a bad expression) or the
            // host's (a spec over the size limit): the client's field is at fault.
            Err(PluginError::Reported { code, message, .. }) => {
                Err(ConstraintRefusal::Invalid(InvalidField {
                    field: spec.field.clone(),
                    message: format!("{message} ({code})"),
                }))
            }
            Err(PluginError::InvalidRequest { message, .. }) => {
                Err(ConstraintRefusal::Invalid(InvalidField {
                    field: spec.field.clone(),
                    message,
                }))
            }
            Err(e) => Err(ConstraintRefusal::Failed(failure(e))),
        }
    }
}

fn stream_event(event: &JobEvent) -> StreamEvent {
    match event.clone() {
        JobEvent::Started {
            job_id,
            model,
            started_at,
        } => StreamEvent::Started(StartedEvent {
            job_id,
            model,
            started_at,
        }),
        JobEvent::Token { t, i, .. } => StreamEvent::Token(TokenEvent { text: t, index: i }),
        JobEvent::Metrics {
            job_id,
            tokens_out,
            decode_time_ms,
            vram_bytes,
        } => StreamEvent::Metrics(MetricsEvent {
            job_id,
            tokens_out,
            decode_time_ms,
            vram_bytes,
        }),
        JobEvent::End {
            tokens_out,
            decode_time_ms,
            stop_reason,
            seed,
            ..
        } => StreamEvent::End(EndEvent {
            tokens_out,
            decode_time_ms,
            stop_reason: stop_reason.as_str().to_string(),
            seed,
        }),
        JobEvent::Error {
            code,
            message,
            retriable,
        } => StreamEvent::Error(ErrorEvent {
            code: code.as_str().to_string(),
            message,
            retriable,
        }),
    }
}

impl PluginCatalog for WasmPlugins {
    fn loaded(&self) -> Vec<PluginRow> {
        self.host
            .plugins()
            .into_iter()
            .map(|p| PluginRow {
                kind: p.kind.as_str().to_string(),
                name: p.name,
                version: p.version,
                contract: p.contract,
                source: match p.source {
                    PluginSource::Builtin(_) => "builtin".to_string(),
                    PluginSource::File(path) => path.display().to_string(),
                },
                description: p.description,
            })
            .collect()
    }

    fn load_failures(&self) -> Vec<PluginLoadFailure> {
        self.host
            .load_failures()
            .into_iter()
            .map(|f| PluginLoadFailure {
                path: f.path.display().to_string(),
                code: f.code.to_string(),
                message: f.message,
            })
            .collect()
    }

    fn changes(&self) -> Vec<(&'static str, u64)> {
        let c = self.host.directory_changes();
        vec![
            ("loaded", c.loaded),
            ("replaced", c.replaced),
            ("unloaded", c.unloaded),
            ("released", c.released),
            ("failed", c.failed),
        ]
    }
}

impl RequestHandler for WasmPlugins {
    fn parse_execute(
        &self,
        body: &[u8],
        content_type: Option<&str>,
        limits: &RequestLimits,
    ) -> Result<Result<ExecuteRequest, InvalidField>, PluginFailure> {
        let limits = Limits {
            max_prompt_chars: limits.max_prompt_chars as u32,
            max_tokens_cap: limits.max_tokens_out,
            vocab_size: limits.vocab_size,
            context_length: self.context_length,
            samplers: self.host.sampler_names(),
        };
        let parsed =
            self.with_handler(|h| h.parse_execute(body, content_type.unwrap_or(""), &limits));
        match parsed {
            Ok(job) => Ok(Ok(ExecuteRequest {
                job_id: job.job_id,
                prompt: job.prompt,
                params: GenParams {
                    max_tokens: job.max_tokens,
                    temperature: job.params.temperature,
                    top_p: job.params.top_p,
                    top_k: job.params.top_k,
                    repetition_penalty: job.params.repetition_penalty,
                    min_p: job.params.min_p,
                    frequency_penalty: job.params.frequency_penalty,
                    presence_penalty: job.params.presence_penalty,
                    penalty_window: job.params.penalty_window,
                    sampler: job.sampler,
                    extra: job.params.extra,
                    stop: job.stop,
                    seed: job.seed,
                    constraint: job.constraint.map(|c| crate::job::ConstraintSpec {
                        plugin: c.plugin.unwrap_or_else(|| BUILTIN_CONSTRAINT.into()),
                        kind: c.kind,
                        spec: c.spec,
                        field: c.field,
                    }),
                    tool_trigger: None,
                    logprobs: None,
                },
            })),
            Err(PluginError::InvalidRequest { field, message }) => {
                Ok(Err(InvalidField { field, message }))
            }
            Err(e) => Err(failure(e)),
        }
    }

    fn find_stop(&self, text: &str, stops: &[String]) -> Result<Option<usize>, PluginFailure> {
        self.with_handler(|h| h.check_stop(text, stops))
            .map(|hit| hit.map(|h| h.offset as usize))
            .map_err(failure)
    }

    fn render_event(&self, event: &JobEvent) -> Result<String, PluginFailure> {
        let ev = stream_event(event);
        self.with_handler(|h| h.render_event(&ev)).map_err(failure)
    }
}

/// Start the plugin runtime for `model` (built-in plugins plus those in `plugin_dir`), compiling
/// every plugin anew. With `rescan_every`, the folder is scanned again at that interval while
/// the worker runs: a new or updated plugin serves new requests; requests in flight keep the
/// version they started with.
pub fn load(
    plugin_dir: Option<&Path>,
    model: &Model,
    rescan_every: Option<Duration>,
) -> Result<Plugins, PluginFailure> {
    load_cached(plugin_dir, None, model, rescan_every)
}

/// [`load`], with compiled plugins kept in and reused from `cache_dir` (a folder only this
/// user can write; see `cli/plugin_cache.rs` for the default).
pub fn load_cached(
    plugin_dir: Option<&Path>,
    cache_dir: Option<&Path>,
    model: &Model,
    rescan_every: Option<Duration>,
) -> Result<Plugins, PluginFailure> {
    let runtime = |message: String| PluginFailure {
        code: ErrorCode::PluginLoadFailed,
        plugin: "plugin-host".into(),
        message,
    };
    let vocab = orcd_model::vocab::from_gguf(&model.gguf).map_err(|e| runtime(e.to_string()))?;
    let name = model
        .gguf
        .get_str_opt("general.name")
        .ok()
        .flatten()
        .unwrap_or("")
        .to_string();
    let facts = PluginModelFacts {
        architecture: model.config.arch.name().to_string(),
        name,
        vocab_size: model.config.vocab_size as u32,
        context_length: model.config.context_length as u32,
        bos: vocab.bos,
        eos: vocab.eos,
        eot: vocab.eot,
    };
    let config = PluginHostConfig {
        plugin_dir: plugin_dir.map(Path::to_path_buf),
        cache_dir: cache_dir.map(Path::to_path_buf),
        ..PluginHostConfig::default()
    };
    let host = PluginHost::new(config, facts, &vocab).map_err(failure)?;
    if let Some(interval) = rescan_every {
        host.watch(interval).map_err(failure)?;
    }
    // Fail at startup, not at the first request, when a role has no plugin.
    drop(host.tokenizer().map_err(failure)?);
    drop(host.request_handler().map_err(failure)?);
    let end_of_generation: HashSet<u32> =
        orcd_model::vocab::end_of_generation(&vocab, &model.config.eos_token_ids)
            .into_iter()
            .collect();
    let kind = match vocab.model.as_str() {
        "gpt2" => "bpe".to_string(),
        "llama" => "spm".to_string(),
        other => other.to_string(),
    };
    let bridge = Arc::new(WasmPlugins {
        host,
        handlers: Mutex::new(Vec::new()),
        pieces: Mutex::new(None),
        end_of_generation,
        kind,
        context_length: model.config.context_length as u32,
    });
    Ok(Plugins {
        tokenizer: Arc::new(SharedTokenizer(bridge.clone())),
        sampler: bridge.clone(),
        constraint: bridge.clone(),
        handler: bridge.clone(),
        catalog: bridge,
    })
}
