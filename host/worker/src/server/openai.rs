//! OpenAI-compatible endpoints: `POST /v1/completions`, `POST /v1/chat/completions` (streaming
//! and not) and `GET /v1/models`. They map onto the same jobs as `/execute`; chat requests are
//! turned into a prompt by the model's chat template. This file parses the requests; the
//! answers (`n` choices, streamed or whole) are `openai_response`, the accepted fields
//! `openai_fields`, tool calls `openai_tools`, log-probabilities `openai_logprobs`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::chat_template::{ChatMessage, RENDER_DEADLINE, TemplateError};
use super::error::AppError;
use super::openai_fields::{self, Endpoint};
use super::openai_response::{Flavour, Reply, respond};
use super::openai_tools;
use super::state::AppState;
use super::submit::submit_n;
use crate::error_code::ErrorCode;
use crate::job::GenParams;

/// `max_tokens` of a completion request that gives none (OpenAI's default).
const DEFAULT_COMPLETION_TOKENS: u32 = 16;
const MAX_STOPS: usize = 4;

/// An error in OpenAI's shape: `{"error":{"message","type","param","code"}}`.
#[derive(Debug)]
pub struct OpenAiError(pub AppError);

impl From<AppError> for OpenAiError {
    fn from(e: AppError) -> Self {
        OpenAiError(e)
    }
}

pub(super) fn error_json(code: ErrorCode, message: &str, param: Option<&str>) -> Value {
    let kind = match code {
        ErrorCode::InvalidRequest | ErrorCode::ModelNotFound | ErrorCode::UnsupportedMediaType => {
            "invalid_request_error"
        }
        ErrorCode::Unauthorized => "authentication_error",
        ErrorCode::WorkerBusy | ErrorCode::ShuttingDown | ErrorCode::VramOom => "server_busy",
        _ => "server_error",
    };
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let e = self.0;
        e.record();
        let status =
            StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            status,
            Json(error_json(e.code, &e.message, e.field.as_deref())),
        )
            .into_response()
    }
}

/// `stop`: one string or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StopField {
    One(String),
    Many(Vec<String>),
}

/// The sampling fields both endpoints share (OpenAI's, plus llama.cpp-style extensions).
#[derive(Debug, Deserialize)]
struct SamplingFields {
    max_tokens: Option<u32>,
    /// The newer name of `max_tokens` in chat requests.
    max_completion_tokens: Option<u32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    n: Option<u32>,
    stop: Option<StopField>,
    seed: Option<u64>,
    frequency_penalty: Option<f32>,
    presence_penalty: Option<f32>,
    top_k: Option<u32>,
    min_p: Option<f32>,
    repetition_penalty: Option<f32>,
    /// The sampler plugin (worker extension; default `standard`).
    sampler: Option<Value>,
    /// Named numbers for that sampler (worker extension).
    sampler_params: Option<Value>,
    /// `text`, `json_object` or `json_schema` (constrained decoding).
    response_format: Option<Value>,
    /// A GBNF grammar (worker extension, `server::response_format`).
    grammar: Option<Value>,
    /// The constraint plugin (worker extension; default the built-in).
    constraint_plugin: Option<Value>,
    /// `{"include_usage": bool}` (streaming).
    stream_options: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PromptField {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    #[serde(default)]
    model: Option<String>,
    prompt: PromptField,
    #[serde(default)]
    stream: bool,
    /// The legacy shape: alternatives per token (0..=20), or null.
    #[serde(default)]
    logprobs: Option<Value>,
    #[serde(flatten)]
    sampling: SamplingFields,
}

/// OpenAI chat content: a string or a list of parts (`{"type":"text","text":...}`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ChatContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
struct ContentPart {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct InMessage {
    role: String,
    #[serde(default)]
    content: Option<ChatContent>,
    /// An assistant turn's tool calls.
    #[serde(default)]
    tool_calls: Option<Value>,
    /// A `tool` turn's call id.
    #[serde(default)]
    tool_call_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    #[serde(default)]
    model: Option<String>,
    messages: Vec<InMessage>,
    #[serde(default)]
    stream: bool,
    /// Extra chat-template variables (vLLM / llama-server), e.g. `{"enable_thinking": true}`.
    #[serde(default)]
    chat_template_kwargs: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    logprobs: Option<Value>,
    #[serde(default)]
    top_logprobs: Option<Value>,
    #[serde(default)]
    tools: Option<Value>,
    #[serde(default)]
    tool_choice: Option<Value>,
    /// Whether a choice may hold several calls (OpenAI's default: true).
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    #[serde(flatten)]
    sampling: SamplingFields,
}

fn in_range(field: &str, v: Option<f32>, lo: f32, hi: f32, default: f32) -> Result<f32, AppError> {
    match v {
        None => Ok(default),
        Some(x) if x.is_finite() && (lo..=hi).contains(&x) => Ok(x),
        Some(x) => Err(AppError::invalid(
            field,
            format!("{x} is outside {lo}..={hi}"),
        )),
    }
}

impl SamplingFields {
    fn into_params(self, state: &AppState, default_max: u32) -> Result<GenParams, AppError> {
        let limit = state.limits.request.max_tokens_out;
        let max_tokens = match self.max_completion_tokens.or(self.max_tokens) {
            None => default_max.min(limit),
            Some(0) => return Err(AppError::invalid("max_tokens", "must be at least 1")),
            Some(m) if m > limit => {
                return Err(AppError::invalid(
                    "max_tokens",
                    format!("{m} is above the limit {limit}"),
                ));
            }
            Some(m) => m,
        };
        let stop = match self.stop {
            None => Vec::new(),
            Some(StopField::One(s)) => vec![s],
            Some(StopField::Many(v)) => v,
        };
        if stop.len() > MAX_STOPS {
            return Err(AppError::invalid(
                "stop",
                format!("at most {MAX_STOPS} stop sequences"),
            ));
        }
        if stop.iter().any(String::is_empty) {
            return Err(AppError::invalid(
                "stop",
                "stop sequences must not be empty",
            ));
        }
        let sampler = openai_fields::sampler(self.sampler.as_ref())?;
        let extra = openai_fields::sampler_params(self.sampler_params.as_ref())?;
        let top_k = self.top_k.unwrap_or(0);
        if top_k as usize > state.model.vocab_size {
            return Err(AppError::invalid("top_k", "larger than the vocabulary"));
        }
        Ok(GenParams {
            max_tokens,
            temperature: in_range("temperature", self.temperature, 0.0, 2.0, 1.0)?,
            top_p: in_range("top_p", self.top_p, 0.0, 1.0, 1.0)?,
            top_k,
            repetition_penalty: in_range(
                "repetition_penalty",
                self.repetition_penalty,
                0.0,
                2.0,
                1.0,
            )?,
            min_p: in_range("min_p", self.min_p, 0.0, 1.0, 0.0)?,
            frequency_penalty: in_range(
                "frequency_penalty",
                self.frequency_penalty,
                -2.0,
                2.0,
                0.0,
            )?,
            presence_penalty: in_range("presence_penalty", self.presence_penalty, -2.0, 2.0, 0.0)?,
            stop,
            seed: self.seed,
            sampler: sampler.unwrap_or_else(|| GenParams::default().sampler),
            extra,
            constraint: super::response_format::constraint(
                self.response_format.as_ref(),
                self.grammar.as_ref(),
                self.constraint_plugin.as_ref(),
            )?,
            ..GenParams::default()
        })
    }
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}-{:032x}", rand::random::<u128>())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The model name a response reports: the one the request named when this worker serves it
/// (any name without `--served-model-name`, as llama-server does), else the stable id.
fn served_model(state: &AppState, model: Option<String>) -> Result<String, AppError> {
    let served = &state.model.served_names;
    match model {
        None => Ok(state.model.id.clone()),
        Some(m) if m.is_empty() => Ok(state.model.id.clone()),
        Some(m) if served.is_empty() || served.contains(&m) => Ok(m),
        Some(m) => Err(AppError::new(
            ErrorCode::ModelNotFound,
            format!(
                "the model `{m}` does not exist on this worker; it serves {}",
                served
                    .iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
        .with_field("model")),
    }
}

impl AppError {
    fn with_field(mut self, field: &str) -> AppError {
        self.field = Some(field.to_string());
        self
    }
}

fn reject_json(e: JsonRejection) -> AppError {
    AppError::invalid("body", e.body_text())
}

/// The body as `T`, after refusing fields the endpoint neither honours nor can ignore.
fn parse_body<T: serde::de::DeserializeOwned>(
    body: Result<Json<Value>, JsonRejection>,
    endpoint: Endpoint,
) -> Result<T, AppError> {
    let Json(value) = body.map_err(reject_json)?;
    let Some(map) = value.as_object() else {
        return Err(AppError::invalid("body", "must be a JSON object"));
    };
    openai_fields::check_fields(map, endpoint)?;
    serde_json::from_value(value).map_err(|e| AppError::invalid("body", e))
}

fn refuse_when_draining(state: &AppState) -> Result<(), AppError> {
    if state.shutting_down() {
        Err(AppError::new(
            ErrorCode::ShuttingDown,
            "the worker is shutting down",
        ))
    } else {
        Ok(())
    }
}

/// `POST /v1/completions`.
pub async fn completions(
    State(state): State<AppState>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, OpenAiError> {
    refuse_when_draining(&state)?;
    let req: CompletionRequest = parse_body(body, Endpoint::Completions)?;
    let model = served_model(&state, req.model.clone())?;
    let prompt = match req.prompt {
        PromptField::One(p) => p,
        PromptField::Many(mut v) if v.len() == 1 => v.remove(0),
        PromptField::Many(_) => {
            return Err(
                AppError::invalid("prompt", "exactly one prompt per request is supported").into(),
            );
        }
    };
    if prompt.is_empty() {
        return Err(AppError::invalid("prompt", "must not be empty").into());
    }
    if prompt.chars().count() > state.limits.request.max_prompt_chars {
        return Err(AppError::invalid("prompt", "too long").into());
    }
    let n = openai_fields::choices(req.sampling.n)?;
    let include_usage =
        openai_fields::include_usage(req.sampling.stream_options.as_ref(), req.stream)?;
    let logprobs = openai_fields::completion_logprobs(req.logprobs.as_ref())?;
    let mut params = req
        .sampling
        .into_params(&state, DEFAULT_COMPLETION_TOKENS)?;
    params.logprobs = logprobs;
    let id = new_id("cmpl");
    let subs = submit_n(&state, id.clone(), prompt, params, n).await?;
    let reply = Reply {
        id,
        created: unix_now(),
        model,
        flavour: Flavour::Completion,
        stream: req.stream,
        include_usage,
        logprobs: logprobs.is_some(),
        tool: None,
        harmony: false,
        tokenizer: state.plugins.tokenizer.clone(),
    };
    respond(reply, subs).await
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<AppState>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, OpenAiError> {
    refuse_when_draining(&state)?;
    let req: ChatRequest = parse_body(body, Endpoint::Chat)?;
    let model = served_model(&state, req.model.clone())?;
    if req.messages.is_empty() {
        return Err(AppError::invalid("messages", "at least one message is required").into());
    }
    let template = match &state.chat {
        None => return Err(AppError::invalid("messages", "the model has no chat template").into()),
        Some(Err(why)) => {
            return Err(AppError::new(ErrorCode::ChatTemplateFailed, why.to_string()).into());
        }
        Some(Ok(template)) => Arc::clone(template),
    };
    let lists_tools = req
        .tools
        .as_ref()
        .and_then(Value::as_array)
        .is_some_and(|l| !l.is_empty());
    let no_call = req.tool_choice.as_ref().and_then(Value::as_str) == Some("none");
    if template.is_harmony() && lists_tools && !no_call {
        return Err(AppError::invalid(
            "tools",
            "tool calls in GPT-OSS's harmony format (`to=functions.NAME`) are not supported yet: \
             send `tool_choice: \"none\"` (the tools are then only shown to the model)",
        )
        .into());
    }
    let tools = openai_tools::parse(
        req.tools.as_ref(),
        req.tool_choice.as_ref(),
        req.parallel_tool_calls.unwrap_or(true),
        template.call_format(),
    )?;
    openai_tools::check_marker_shows(state.plugins.tokenizer.clone(), &tools).await?;
    // Tools reach the model through its template; one that does not render them sees earlier
    // calls as JSON text (see `openai_tools`).
    let template_renders_tools = template.reads("tools");
    let messages: Vec<ChatMessage> = req
        .messages
        .into_iter()
        .map(|m| {
            let mut content = match m.content {
                None => String::new(),
                Some(ChatContent::Text(t)) => t,
                Some(ChatContent::Parts(parts)) => parts
                    .into_iter()
                    .filter(|p| p.kind == "text")
                    .filter_map(|p| p.text)
                    .collect::<Vec<_>>()
                    .join(""),
            };
            let tool_calls = m.tool_calls.filter(|c| !c.is_null());
            if let Some(calls) = &tool_calls
                && !template_renders_tools
                && content.is_empty()
            {
                content = calls.to_string();
            }
            ChatMessage {
                role: m.role,
                content,
                tool_calls,
                tool_call_id: m.tool_call_id,
            }
        })
        .collect();
    let total_chars: usize = messages.iter().map(|m| m.content.chars().count()).sum();
    if total_chars > state.limits.request.max_prompt_chars {
        return Err(AppError::invalid("messages", "too long").into());
    }
    let mut kwargs = req.chat_template_kwargs.unwrap_or_default();
    if template_renders_tools && !tools.list.is_empty() {
        kwargs.insert("tools".into(), Value::Array(tools.list.clone()));
    }
    let renderer = Arc::clone(&template);
    let rendered = tokio::task::spawn_blocking(move || {
        renderer.render_within(messages, true, kwargs, RENDER_DEADLINE)
    })
    .await
    .map_err(|e| AppError::new(ErrorCode::Internal, format!("chat template render: {e}")))?
    .map_err(|e| match e {
        TemplateError::Kwargs(_) => AppError::invalid("chat_template_kwargs", e),
        e if e.is_the_templates() => AppError::new(ErrorCode::ChatTemplateFailed, e.to_string()),
        e => AppError::invalid("messages", e),
    })?;
    let prompt = template.strip_bos(&rendered).to_string();
    let default_max = state.limits.request.max_tokens_out;
    let n = openai_fields::choices(req.sampling.n)?;
    let include_usage =
        openai_fields::include_usage(req.sampling.stream_options.as_ref(), req.stream)?;
    let logprobs = openai_fields::chat_logprobs(req.logprobs.as_ref(), req.top_logprobs.as_ref())?;
    let mut params = req.sampling.into_params(&state, default_max)?;
    params.logprobs = logprobs;
    if let Some(call) = tools.constraint {
        if params.constraint.is_some() {
            return Err(AppError::invalid(
                "response_format",
                "cannot constrain the output while `tool_choice` asks for a tool call",
            )
            .into());
        }
        params.constraint = Some(call);
        params.tool_trigger = tools.trigger;
    }
    let id = new_id("chatcmpl");
    let subs = submit_n(&state, id.clone(), prompt, params, n).await?;
    let reply = Reply {
        id,
        created: unix_now(),
        model,
        flavour: Flavour::Chat,
        stream: req.stream,
        include_usage,
        logprobs: logprobs.is_some(),
        harmony: template.is_harmony() && tools.mode.is_none(),
        tool: tools.mode,
        tokenizer: state.plugins.tokenizer.clone(),
    };
    respond(reply, subs).await
}

/// `GET /v1/models`: the one model this worker serves, under each name it answers to (its
/// stable id when `--served-model-name` is not given).
pub async fn models(State(state): State<AppState>) -> Json<Value> {
    let names = if state.model.served_names.is_empty() {
        std::slice::from_ref(&state.model.id)
    } else {
        state.model.served_names.as_slice()
    };
    let data: Vec<Value> = names
        .iter()
        .map(|name| {
            json!({
                "id": name,
                "object": "model",
                "created": 0,
                "owned_by": "worker-orcd",
                "context_length": state.model.context_length,
            })
        })
        .collect();
    Json(json!({"object": "list", "data": data}))
}
