//! A job: one generation request as the scheduler sees it, and the events it streams back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::error_code::ErrorCode;

/// The sampler plugin used when a request names none.
pub const DEFAULT_SAMPLER: &str = "standard";
/// Tokens the repetition penalties look back over (llama.cpp's `penalty_last_n`).
pub const DEFAULT_PENALTY_WINDOW: u32 = 64;

/// Sampling and length parameters of one request (worker spec 1420-1422), already validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GenParams {
    /// Tokens to generate at most (before the context bound).
    pub max_tokens: u32,
    /// 0.0 = greedy.
    pub temperature: f32,
    /// 1.0 = off.
    pub top_p: f32,
    /// 0 = off.
    pub top_k: u32,
    /// 1.0 = off.
    pub repetition_penalty: f32,
    /// 0.0 = off.
    pub min_p: f32,
    /// OpenAI-style penalties (0.0 = off); `/execute` leaves them off.
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    /// How many of the latest tokens the penalties look at.
    pub penalty_window: u32,
    /// The sampler plugin that picks tokens (`standard` unless the request names another).
    pub sampler: String,
    /// Extra named numbers for custom samplers (mirostat `tau`, ...).
    pub extra: Vec<(String, f64)>,
    /// At most 4 stop sequences.
    pub stop: Vec<String>,
    /// The RNG seed; `None` lets the worker pick one (reported in `end`).
    pub seed: Option<u64>,
    /// Constrained decoding: what the output must satisfy (`response_format`, `regex`); with
    /// `tool_trigger`, what the output must satisfy once the trigger fired.
    pub constraint: Option<ConstraintSpec>,
    /// `tool_choice: "auto"`: the output is free unless it begins with this trigger, and
    /// `constraint` applies from the trigger on (a tool call).
    pub tool_trigger: Option<ToolTrigger>,
    /// Log-probabilities of each generated token and of the `k` most likely alternatives
    /// (`Some(k)`, k <= [`MAX_TOP_LOGPROBS`]); `None`: off.
    pub logprobs: Option<u32>,
}

/// Most alternatives a token's log-probabilities list (OpenAI's `top_logprobs` bound).
pub const MAX_TOP_LOGPROBS: u32 = 20;

/// One generated token's log-probability under the model's raw distribution (the log-softmax
/// of its logits, before penalties, the constraint mask, temperature and the sampler), and the
/// most likely alternatives, best first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenLogprob {
    pub id: u32,
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
    /// Byte offset in the generated text where this token's text starts.
    pub offset: u32,
}

/// The constraint plugin requests use (the built-in `structured`).
pub const BUILTIN_CONSTRAINT: &str = "structured";

/// The constraint a request puts on its output, compiled by a constraint plugin at admission.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConstraintSpec {
    /// The constraint plugin (`structured`, the built-in, unless the request names another).
    pub plugin: String,
    /// `json-schema`, `json-object`, `regex` or `gbnf` (the constraint world's kinds).
    pub kind: String,
    /// The schema as JSON text, the expression, or empty for `json-object`.
    pub spec: String,
    /// The request field it came from (`response_format`, `regex`), named when it is refused.
    pub field: String,
}

/// The start of a tool call in a model family's output (`tool_choice: "auto"`). While the
/// output is a prefix of `marker` it is held back; once it is exactly `marker` (at a token
/// boundary: the trigger constraint refuses a token that runs past it) the calls' constraint
/// takes over, given the marker's tokens first (its language begins with the marker); once it
/// is anything else it is plain text and no constraint applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolTrigger {
    /// The text the calls begin with (`<tool_call>`, `[TOOL_CALLS]`, or `{` for Llama 3.x's
    /// bare JSON).
    pub marker: String,
    /// The regular expression (the `regex` constraint kind) the output follows until the
    /// trigger is decided: the marker exactly, or any text that does not begin with it.
    pub regex: String,
}

impl Default for GenParams {
    fn default() -> Self {
        GenParams {
            max_tokens: 2048,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            repetition_penalty: 1.0,
            min_p: 0.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            penalty_window: DEFAULT_PENALTY_WINDOW,
            sampler: DEFAULT_SAMPLER.to_string(),
            extra: Vec::new(),
            stop: Vec::new(),
            seed: None,
            constraint: None,
            tool_trigger: None,
            logprobs: None,
        }
    }
}

/// Why a generation ended normally.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// `max_tokens` reached.
    MaxTokens,
    /// The model produced an end-of-generation token.
    Eos,
    /// The output ended with a stop sequence (cut before it).
    #[serde(rename = "stop")]
    StopSequence,
    /// The sequence filled the model's context.
    ContextLength,
}

impl StopReason {
    /// The wire spelling (`end.stop_reason`).
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::MaxTokens => "max_tokens",
            StopReason::Eos => "eos",
            StopReason::StopSequence => "stop",
            StopReason::ContextLength => "context_length",
        }
    }

    /// The OpenAI `finish_reason` for this stop.
    pub fn openai_finish_reason(self) -> &'static str {
        match self {
            StopReason::MaxTokens | StopReason::ContextLength => "length",
            StopReason::Eos | StopReason::StopSequence => "stop",
        }
    }
}

/// What a job streams back to its HTTP task, in order: `Started`, `Token`*, `Metrics`*, then
/// exactly one of `End` / `Error`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum JobEvent {
    Started {
        job_id: String,
        model: String,
        /// RFC 3339.
        started_at: String,
    },
    Token {
        /// Complete UTF-8 text (never a split character).
        t: String,
        /// Index of this `token` event in the job's stream (0-based).
        i: u32,
        /// The log-probabilities of the tokens whose text this event completes (only when the
        /// request asked for them).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        logprobs: Vec<TokenLogprob>,
        /// Whether this text is part of a tool call (`tool_choice: "auto"` after the trigger):
        /// the call's JSON, the trigger marker not included.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        tool_call: bool,
    },
    Metrics {
        job_id: String,
        tokens_out: u32,
        decode_time_ms: u64,
        vram_bytes: u64,
    },
    End {
        tokens_out: u32,
        /// Prompt tokens (not in the spec's event; the OpenAI usage block needs it).
        tokens_in: u32,
        decode_time_ms: u64,
        stop_reason: StopReason,
        seed: u64,
    },
    Error {
        code: ErrorCode,
        message: String,
        retriable: bool,
    },
}

impl JobEvent {
    /// An `error` event for `code`.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> JobEvent {
        JobEvent::Error {
            code,
            message: message.into(),
            retriable: code.retriable(),
        }
    }

    /// `end` and `error` close the stream.
    pub fn is_terminal(&self) -> bool {
        matches!(self, JobEvent::End { .. } | JobEvent::Error { .. })
    }
}

/// Set by `/cancel`, by a client that went away, or by shutdown; read by the scheduler between
/// steps.
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A tokenized request handed to the scheduler.
#[derive(Debug)]
pub struct Job {
    pub id: String,
    pub prompt_tokens: Vec<u32>,
    pub params: GenParams,
    /// The seed in force (the request's or one the worker picked).
    pub seed: u64,
    pub cancel: CancelFlag,
    /// When the HTTP request was accepted; the inference timeout counts from here.
    pub accepted_at: Instant,
    pub events: mpsc::UnboundedSender<JobEvent>,
    /// The request's compiled constraint (when `params.constraint` is set).
    pub constraint: Option<Box<dyn crate::plugins::ConstraintSession>>,
    /// The compiled trigger constraint (when `params.tool_trigger` is set): it masks the output
    /// until the trigger is decided; `constraint` waits for the trigger.
    pub trigger: Option<Box<dyn crate::plugins::ConstraintSession>>,
    /// `n` > 1: the job id of the choice whose prompt KV this job copies instead of
    /// prefilling it (the request's first choice), when the device can copy KV.
    pub shares_prompt_of: Option<String>,
}
