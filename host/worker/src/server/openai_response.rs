//! The answer of the OpenAI routes: `n` choices, each one job's events, as one JSON body or as
//! an SSE stream of chunks ending with `data: [DONE]`. A choice carries its text (or its tool
//! calls, see `openai_tools`), its `logprobs` when asked for, and its finish reason; `usage`
//! counts the prompt once and every choice's tokens. With `stream_options.include_usage` the
//! stream's last chunk before `[DONE]` has `"choices": []` and the usage, as OpenAI sends it.
//! A chat answer in GPT-OSS's harmony format is split as it streams (see `harmony`): its
//! reasoning goes out as `reasoning_content`, its answer as `content`, as llama.cpp's server
//! sends them.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use serde_json::{Map, Value, json};

use super::error::AppError;
use super::harmony::{Channel, HarmonySplitter};
use super::openai::{OpenAiError, error_json};
use super::openai_logprobs::{LegacyLogprobs, Pieces, chat_content};
use super::openai_tools::ToolCallMode;
use super::submit::{CancelOnDrop, Submitted};
use super::tool_formats::{chosen_call, read_calls};
use crate::error_code::ErrorCode;
use crate::job::{JobEvent, StopReason, TokenLogprob};
use crate::plugins::Tokenizer;

/// The two response flavours.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum Flavour {
    Completion,
    Chat,
}

/// What the response looks like, fixed by the request.
pub struct Reply {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub flavour: Flavour,
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
    /// Whether choices carry `logprobs` (else `null`).
    pub logprobs: bool,
    /// How a chat choice's output becomes tool calls (`None`: text).
    pub tool: Option<ToolCallMode>,
    /// A chat answer in GPT-OSS's harmony format: split into `reasoning_content` and `content`
    /// (never with `tool`).
    pub harmony: bool,
    pub tokenizer: Arc<dyn Tokenizer>,
}

/// One choice as it builds up.
struct Choice {
    index: usize,
    text: String,
    /// The tool call's id, once its first delta went out (chat, tool mode).
    call_id: Option<String>,
    /// `tool_choice: "auto"`: the output is a call (its tokens came as `tool_call`).
    called: bool,
    /// Whether the chat role delta went out.
    role_sent: bool,
    logprobs: Vec<TokenLogprob>,
    legacy: LegacyLogprobs,
    tokens_out: u32,
    /// A harmony answer's splitter, and its reasoning and answer so far.
    harmony: Option<HarmonySplitter>,
    reasoning: String,
    content: String,
}

impl Choice {
    fn new(index: usize, harmony: bool) -> Choice {
        Choice {
            index,
            harmony: harmony.then(HarmonySplitter::new),
            reasoning: String::new(),
            content: String::new(),
            text: String::new(),
            call_id: None,
            called: false,
            role_sent: false,
            logprobs: Vec::new(),
            legacy: LegacyLogprobs::default(),
            tokens_out: 0,
        }
    }

    /// Adds a harmony split's deltas to the reasoning and the answer; returns them as one
    /// chat delta's fields (`reasoning_content`, `content`), empty when there were none.
    fn take_harmony(&mut self, parts: Vec<(Channel, String)>) -> Map<String, Value> {
        let mut reasoning = String::new();
        let mut content = String::new();
        for (channel, text) in parts {
            match channel {
                Channel::Reasoning => reasoning.push_str(&text),
                Channel::Content => content.push_str(&text),
            }
        }
        self.reasoning.push_str(&reasoning);
        self.content.push_str(&content);
        let mut delta = Map::new();
        if !reasoning.is_empty() {
            delta.insert("reasoning_content".into(), json!(reasoning));
        }
        if !content.is_empty() {
            delta.insert("content".into(), json!(content));
        }
        delta
    }
}

fn usage(prompt: u32, completion: u32) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion,
        "total_tokens": prompt + completion})
}

impl Reply {
    fn object(&self, chunk: bool) -> &'static str {
        match (self.flavour, chunk) {
            (Flavour::Completion, _) => "text_completion",
            (Flavour::Chat, false) => "chat.completion",
            (Flavour::Chat, true) => "chat.completion.chunk",
        }
    }

    fn envelope(&self, chunk: bool, choices: Vec<Value>) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("object".into(), json!(self.object(chunk)));
        m.insert("created".into(), json!(self.created));
        m.insert("model".into(), json!(self.model));
        m.insert("choices".into(), Value::Array(choices));
        m
    }

    /// The finish reason of a choice that ended with `r` as a call.
    fn finish(&self, r: StopReason) -> &'static str {
        match (&self.tool, r) {
            (Some(_), StopReason::Eos | StopReason::StopSequence) => "tool_calls",
            _ => r.openai_finish_reason(),
        }
    }

    /// Whether `choice`'s text is held until it ends (calls whose names are known only then).
    fn buffered(&self, choice: &Choice) -> bool {
        match &self.tool {
            Some(ToolCallMode::Choose | ToolCallMode::Calls(_)) => true,
            Some(ToolCallMode::Auto(_)) => choice.called,
            _ => false,
        }
    }

    /// A choice's `logprobs` value for `lps` (the whole choice, or one chunk's tokens); `text`
    /// is the choice's text so far (legacy offsets).
    fn logprobs_value(
        &self,
        pieces: &mut Pieces,
        choice: &mut Choice,
        lps: &[TokenLogprob],
    ) -> Result<Value, AppError> {
        if !self.logprobs {
            return Ok(Value::Null);
        }
        Ok(match self.flavour {
            Flavour::Chat => json!({"content": chat_content(pieces, lps)?, "refusal": null}),
            Flavour::Completion => {
                choice.legacy.push(pieces, lps, &choice.text)?;
                choice.legacy.take()
            }
        })
    }

    /// The whole message of a finished chat choice.
    fn message(&self, choice: &Choice) -> (Value, bool) {
        if choice.harmony.is_some() {
            let mut m = json!({"role": "assistant", "content": choice.content});
            if !choice.reasoning.is_empty() {
                m["reasoning_content"] = json!(choice.reasoning);
            }
            return (m, false);
        }
        match &self.tool {
            None => (json!({"role": "assistant", "content": choice.text}), true),
            Some(ToolCallMode::Auto(_)) if !choice.called => {
                (json!({"role": "assistant", "content": choice.text}), false)
            }
            Some(mode) => {
                let calls = match mode {
                    ToolCallMode::Named(name) => Some(vec![(name.clone(), choice.text.clone())]),
                    ToolCallMode::Choose => chosen_call(&choice.text, "arguments").map(|c| vec![c]),
                    ToolCallMode::Calls(format) | ToolCallMode::Auto(format) => {
                        read_calls(&choice.text, *format)
                    }
                };
                match calls {
                    Some(calls) => {
                        let calls: Vec<Value> = calls
                            .into_iter()
                            .map(|(name, arguments)| {
                                json!({"id": mode.call_id(), "type": "function",
                                    "function": {"name": name, "arguments": arguments}})
                            })
                            .collect();
                        (
                            json!({"role": "assistant", "content": null, "tool_calls": calls}),
                            true,
                        )
                    }
                    // An output cut before its calls were whole: its text.
                    None => (json!({"role": "assistant", "content": choice.text}), false),
                }
            }
        }
    }
}

/// Answer `subs` (one per choice) as the request asked: a stream or one body.
pub async fn respond(reply: Reply, subs: Vec<Submitted>) -> Result<Response, OpenAiError> {
    if reply.stream {
        Ok(stream(reply, subs).into_response())
    } else {
        whole(reply, subs).await
    }
}

async fn whole(reply: Reply, subs: Vec<Submitted>) -> Result<Response, OpenAiError> {
    let mut pieces = Pieces::new(reply.tokenizer.clone());
    let mut choices = Vec::with_capacity(subs.len());
    let mut prompt_tokens = 0;
    let mut completion_tokens = 0;
    // Every job runs concurrently in the scheduler; reading them in turn waits for the last.
    let mut subs = subs;
    for (index, sub) in subs.iter_mut().enumerate() {
        let mut choice = Choice::new(index, reply.harmony && reply.flavour == Flavour::Chat);
        let stop = loop {
            match sub.events.recv().await {
                Some(JobEvent::Token {
                    t,
                    logprobs,
                    tool_call,
                    ..
                }) => {
                    choice.called |= tool_call;
                    choice.text.push_str(&t);
                    choice.logprobs.extend(logprobs);
                }
                Some(JobEvent::End {
                    tokens_out,
                    tokens_in,
                    stop_reason,
                    ..
                }) => {
                    sub.guard.disarm();
                    prompt_tokens = tokens_in;
                    completion_tokens += tokens_out;
                    choice.tokens_out = tokens_out;
                    break stop_reason;
                }
                Some(JobEvent::Error { code, message, .. }) => {
                    sub.guard.disarm();
                    return Err(AppError::job_ended(code, message).into());
                }
                Some(JobEvent::Started { .. } | JobEvent::Metrics { .. }) => {}
                None => {
                    return Err(AppError::new(ErrorCode::Internal, "the scheduler stopped").into());
                }
            }
        };
        if let Some(mut h) = choice.harmony.take() {
            let mut parts = h.push(&choice.text);
            parts.extend(h.finish());
            choice.take_harmony(parts);
            choice.harmony = Some(h);
        }
        let lps = std::mem::take(&mut choice.logprobs);
        let logprobs = reply.logprobs_value(&mut pieces, &mut choice, &lps)?;
        let value = match reply.flavour {
            Flavour::Completion => json!({"index": index, "text": choice.text,
                "logprobs": logprobs, "finish_reason": stop.openai_finish_reason()}),
            Flavour::Chat => {
                let (message, is_call) = reply.message(&choice);
                let finish = if is_call {
                    reply.finish(stop)
                } else {
                    stop.openai_finish_reason()
                };
                json!({"index": index, "message": message, "logprobs": logprobs,
                    "finish_reason": finish})
            }
        };
        choices.push(value);
    }
    let mut body = reply.envelope(false, choices);
    body.insert("usage".into(), usage(prompt_tokens, completion_tokens));
    Ok(Json(Value::Object(body)).into_response())
}

/// One choice's job events, tagged with the choice's index.
type ChoiceEvents = std::pin::Pin<Box<dyn Stream<Item = (usize, JobEvent)> + Send>>;

/// The state of a streamed answer.
struct Streaming {
    reply: Reply,
    pieces: Pieces,
    events: futures_util::stream::SelectAll<ChoiceEvents>,
    guards: Vec<CancelOnDrop>,
    choices: Vec<Choice>,
    /// Data lines ready to send.
    out: std::collections::VecDeque<String>,
    finished: usize,
    prompt_tokens: u32,
    done: bool,
}

impl Streaming {
    fn chunk(&self, choice: Value) -> String {
        Value::Object(self.reply.envelope(true, vec![choice])).to_string()
    }

    /// A chat delta for `choice`: the role on its first, the text as `content` or as the tool
    /// call's `arguments`.
    fn chat_delta(&mut self, i: usize, text: &str) -> Map<String, Value> {
        let mut delta = Map::new();
        let choice = &mut self.choices[i];
        if !choice.role_sent {
            choice.role_sent = true;
            delta.insert("role".into(), json!("assistant"));
        }
        match &self.reply.tool {
            None => {
                delta.insert("content".into(), json!(text));
            }
            Some(ToolCallMode::Auto(_)) if !choice.called => {
                delta.insert("content".into(), json!(text));
            }
            Some(ToolCallMode::Named(name)) => {
                let call = match &choice.call_id {
                    None => {
                        let id = super::openai_tools::call_id();
                        choice.call_id = Some(id.clone());
                        json!({"index": 0, "id": id, "type": "function",
                            "function": {"name": name, "arguments": text}})
                    }
                    Some(_) => json!({"index": 0, "function": {"arguments": text}}),
                };
                delta.insert("tool_calls".into(), json!([call]));
            }
            // Sent whole at the end (the names are known only once the output is complete).
            Some(ToolCallMode::Choose | ToolCallMode::Calls(_) | ToolCallMode::Auto(_)) => {}
        }
        delta
    }

    fn on_token(
        &mut self,
        i: usize,
        t: String,
        lps: Vec<TokenLogprob>,
        tool_call: bool,
    ) -> Result<(), AppError> {
        self.choices[i].called |= tool_call;
        self.choices[i].text.push_str(&t);
        if let Some(h) = self.choices[i].harmony.as_mut() {
            let parts = h.push(&t);
            return self.harmony_chunk(i, parts, lps, None);
        }
        let buffered = self.reply.buffered(&self.choices[i]);
        if buffered && lps.is_empty() {
            return Ok(());
        }
        let logprobs = {
            let reply = &self.reply;
            reply.logprobs_value(&mut self.pieces, &mut self.choices[i], &lps)?
        };
        let index = self.choices[i].index;
        let value = match self.reply.flavour {
            Flavour::Completion => {
                json!({"index": index, "text": t, "logprobs": logprobs, "finish_reason": null})
            }
            Flavour::Chat => {
                let delta = self.chat_delta(i, if buffered { "" } else { &t });
                json!({"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": null})
            }
        };
        let line = self.chunk(value);
        self.out.push_back(line);
        Ok(())
    }

    /// A harmony choice's chunk: the split's deltas (and the token's logprobs); none when
    /// there is nothing to send. With `finish`, the choice's last chunk (always sent).
    fn harmony_chunk(
        &mut self,
        i: usize,
        parts: Vec<(Channel, String)>,
        lps: Vec<TokenLogprob>,
        finish: Option<&str>,
    ) -> Result<(), AppError> {
        let mut delta = self.choices[i].take_harmony(parts);
        if delta.is_empty() && lps.is_empty() && finish.is_none() {
            return Ok(());
        }
        let logprobs = if lps.is_empty() && finish.is_some() {
            Value::Null
        } else {
            let reply = &self.reply;
            reply.logprobs_value(&mut self.pieces, &mut self.choices[i], &lps)?
        };
        if !self.choices[i].role_sent {
            self.choices[i].role_sent = true;
            delta.insert("role".into(), json!("assistant"));
        }
        let index = self.choices[i].index;
        let line = self.chunk(json!({"index": index, "delta": delta, "logprobs": logprobs,
            "finish_reason": finish}));
        self.out.push_back(line);
        Ok(())
    }

    fn on_end(&mut self, i: usize, stop: StopReason, tokens_in: u32, tokens_out: u32) {
        self.guards[i].disarm();
        self.prompt_tokens = tokens_in;
        self.choices[i].tokens_out = tokens_out;
        let index = self.choices[i].index;
        let mut finish = stop.openai_finish_reason();
        if let Some(h) = self.choices[i].harmony.as_mut() {
            let parts = h.finish();
            if let Err(e) = self.harmony_chunk(i, parts, Vec::new(), Some(finish)) {
                self.fail(e.code, &e.message);
                return;
            }
            self.finish_choice();
            return;
        }
        let value = match self.reply.flavour {
            Flavour::Completion => {
                json!({"index": index, "text": "", "logprobs": null, "finish_reason": finish})
            }
            Flavour::Chat => {
                let mut delta = Map::new();
                if self.reply.buffered(&self.choices[i]) {
                    let (message, is_call) = self.reply.message(&self.choices[i]);
                    if let Some(Value::Array(calls)) = message.get("tool_calls") {
                        // One chunk per call, each whole, tagged with its `index` (as OpenAI
                        // streams several calls); the finish reason follows alone.
                        for (k, call) in calls.iter().enumerate() {
                            let mut call_delta = Map::new();
                            if !self.choices[i].role_sent {
                                self.choices[i].role_sent = true;
                                call_delta.insert("role".into(), json!("assistant"));
                            }
                            call_delta.insert(
                                "tool_calls".into(),
                                json!([{"index": k, "id": call["id"], "type": "function",
                                    "function": call["function"]}]),
                            );
                            let line = self.chunk(json!({"index": index, "delta": call_delta,
                                "logprobs": null, "finish_reason": null}));
                            self.out.push_back(line);
                        }
                    } else {
                        delta.insert("content".into(), message["content"].clone());
                    }
                    if is_call {
                        finish = self.reply.finish(stop);
                    }
                } else if matches!(self.reply.tool, Some(ToolCallMode::Named(_))) {
                    finish = self.reply.finish(stop);
                }
                if !self.choices[i].role_sent {
                    self.choices[i].role_sent = true;
                    delta.insert("role".into(), json!("assistant"));
                }
                json!({"index": index, "delta": delta, "logprobs": null, "finish_reason": finish})
            }
        };
        let line = self.chunk(value);
        self.out.push_back(line);
        self.finish_choice();
    }

    /// One more choice has ended; after the last, the usage chunk and `[DONE]`.
    fn finish_choice(&mut self) {
        self.finished += 1;
        if self.finished == self.choices.len() {
            if self.reply.include_usage {
                let total: u32 = self.choices.iter().map(|c| c.tokens_out).sum();
                let mut body = self.reply.envelope(true, Vec::new());
                body.insert("usage".into(), usage(self.prompt_tokens, total));
                self.out.push_back(Value::Object(body).to_string());
            }
            self.out.push_back("[DONE]".into());
            self.done = true;
        }
    }

    fn fail(&mut self, code: ErrorCode, message: &str) {
        self.out
            .push_back(error_json(code, message, None).to_string());
        self.out.push_back("[DONE]".into());
        self.done = true;
    }

    /// Take the next event of any choice and turn it into data lines.
    async fn pull(&mut self) {
        match self.events.next().await {
            Some((
                i,
                JobEvent::Token {
                    t,
                    logprobs,
                    tool_call,
                    ..
                },
            )) => {
                if let Err(e) = self.on_token(i, t, logprobs, tool_call) {
                    self.fail(e.code, &e.message);
                }
            }
            Some((
                i,
                JobEvent::End {
                    stop_reason,
                    tokens_in,
                    tokens_out,
                    ..
                },
            )) => self.on_end(i, stop_reason, tokens_in, tokens_out),
            Some((i, JobEvent::Error { code, message, .. })) => {
                // This choice is over; the others are cancelled when the stream drops.
                self.guards[i].disarm();
                self.fail(code, &message);
            }
            Some((_, JobEvent::Started { .. } | JobEvent::Metrics { .. })) => {}
            None => self.fail(ErrorCode::Internal, "the scheduler stopped"),
        }
    }
}

fn stream(
    reply: Reply,
    subs: Vec<Submitted>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let n = subs.len();
    let mut guards = Vec::with_capacity(n);
    let mut streams = Vec::with_capacity(n);
    for (i, sub) in subs.into_iter().enumerate() {
        guards.push(sub.guard);
        let rx = sub.events;
        let s: ChoiceEvents =
            Box::pin(futures_util::stream::unfold(rx, move |mut rx| async move {
                rx.recv().await.map(|ev| ((i, ev), rx))
            }));
        streams.push(s);
    }
    let harmony = reply.harmony && reply.flavour == Flavour::Chat;
    let mut state = Streaming {
        pieces: Pieces::new(reply.tokenizer.clone()),
        reply,
        events: futures_util::stream::select_all(streams),
        guards,
        choices: (0..n).map(|i| Choice::new(i, harmony)).collect(),
        out: std::collections::VecDeque::new(),
        finished: 0,
        prompt_tokens: 0,
        done: false,
    };
    // Chat streams open with each choice's role (with `auto` too: whether a choice calls is
    // known only later).
    let opens_with_role = matches!(state.reply.tool, None | Some(ToolCallMode::Auto(_)));
    if state.reply.flavour == Flavour::Chat && opens_with_role {
        for i in 0..n {
            let delta = state.chat_delta(i, "");
            let line = state.chunk(json!({"index": i, "delta": delta, "logprobs": null,
                "finish_reason": null}));
            state.out.push_back(line);
        }
    }
    let body = futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(line) = s.out.pop_front() {
                return Some((Ok(Event::default().data(line)), s));
            }
            if s.done {
                return None;
            }
            s.pull().await;
        }
    });
    // Comment lines while nothing else is sent, so a vanished client is noticed while its job
    // waits (SSE clients, the OpenAI SDK's included, skip them).
    Sse::new(body).keep_alive(KeepAlive::new().interval(std::time::Duration::from_millis(500)))
}
