//! [`HandlerSession`]: the request handler's view of one `/execute` request: parse and
//! validate the body, check stop sequences, render SSE events.
//!
//! Everything the handler returns is checked against the worker's limits before the host acts
//! on it: a handler that accepts a request the limits forbid, or renders something that is not
//! an SSE event, fails with `PLUGIN_INVALID_OUTPUT`.

use std::sync::Arc;

use wasmtime::Store;

use crate::bindings::handler::exports::worker::plugin::handler_plugin::{
    Job, Limits, StopHit, StreamEvent,
};
use crate::host::Inner;
use crate::plugin::LoadedPlugin;
use crate::state::{PluginState, guarded_call};
use crate::versions::HandlerBindings;
use crate::{PluginError, PluginInfo};

/// Largest request body passed to the handler, in bytes.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Most stop sequences a job may carry (worker spec 1422).
const MAX_STOPS: usize = 4;
/// Largest rendered event, in bytes.
const MAX_EVENT_BYTES: usize = 1 << 20;
/// Longest job id.
const MAX_JOB_ID: usize = 256;

/// The request handler for one request.
pub struct HandlerSession {
    inner: Arc<Inner>,
    plugin: Arc<LoadedPlugin>,
    /// None after a failure: a trapped instance is dropped.
    live: Option<(Store<PluginState>, HandlerBindings)>,
}

impl HandlerSession {
    pub(crate) fn open(inner: Arc<Inner>, plugin: Arc<LoadedPlugin>) -> Result<Self, PluginError> {
        let mut store = inner.store(&plugin);
        let pre = &plugin.pre;
        let bindings = guarded_call(&mut store, inner.call_budget(), |s| {
            pre.handler(s)
                .unwrap_or_else(|| Err(wasmtime::Error::msg("not a request-handler plugin")))
        })?;
        Ok(HandlerSession {
            inner,
            plugin,
            live: Some((store, bindings)),
        })
    }

    /// The plugin serving this session.
    pub fn plugin(&self) -> &PluginInfo {
        &self.plugin.info
    }

    /// Parse and validate an `/execute` body. A refused body is
    /// [`PluginError::InvalidRequest`] naming the field.
    pub fn parse_execute(
        &mut self,
        body: &[u8],
        content_type: &str,
        limits: &Limits,
    ) -> Result<Job, PluginError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(PluginError::InvalidRequest {
                field: "body".into(),
                message: format!(
                    "{} bytes is over the {MAX_BODY_BYTES}-byte limit",
                    body.len()
                ),
            });
        }
        let parsed = self.call(|b, s| b.parse_execute(s, body, content_type, limits))?;
        match parsed {
            Ok(job) => {
                check_job(&job, limits).map_err(|reason| self.invalid(reason))?;
                Ok(job)
            }
            Err(invalid) => Err(PluginError::InvalidRequest {
                field: crate::tokenizer_session::cap(&invalid.field, 128),
                message: crate::tokenizer_session::cap(&invalid.message, 1024),
            }),
        }
    }

    /// The earliest stop sequence in `text`, if any (see the WIT `check-stop`).
    pub fn check_stop(
        &mut self,
        text: &str,
        stops: &[String],
    ) -> Result<Option<StopHit>, PluginError> {
        if stops.is_empty() {
            return Ok(None);
        }
        let hit = self.call(|b, s| b.check_stop(s, text, stops))?;
        if let Some(h) = &hit {
            let offset = h.offset as usize;
            if h.stop_index as usize >= stops.len()
                || offset > text.len()
                || !text.is_char_boundary(offset)
            {
                return Err(self.invalid(format!(
                    "check-stop returned stop {} at byte {} for {} stops and {} bytes of text",
                    h.stop_index,
                    h.offset,
                    stops.len(),
                    text.len()
                )));
            }
        }
        Ok(hit)
    }

    /// Render one SSE event (`event: <name>\ndata: <json>\n\n`).
    pub fn render_event(&mut self, event: &StreamEvent) -> Result<String, PluginError> {
        let text = self.call(|b, s| b.render_event(s, event))?;
        let well_formed = text.len() <= MAX_EVENT_BYTES
            && text.starts_with("event: ")
            && text.contains("\ndata: ")
            && text.ends_with("\n\n")
            && !text[..text.len() - 2].contains("\n\n");
        if !well_formed {
            let shown = crate::tokenizer_session::cap(&text, 80);
            return Err(self.invalid(format!(
                "render-event returned a malformed event: {shown:?}"
            )));
        }
        Ok(text)
    }

    fn invalid(&mut self, reason: String) -> PluginError {
        self.live = None;
        PluginError::invalid_output(self.plugin.label.to_string(), reason)
    }

    fn call<R>(
        &mut self,
        f: impl FnOnce(&HandlerBindings, &mut Store<PluginState>) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let Some((store, bindings)) = self.live.as_mut() else {
            return Err(PluginError::Trap {
                plugin: self.plugin.label.to_string(),
                reason: "the instance was dropped after an earlier failure".into(),
            });
        };
        let bindings = &*bindings;
        match guarded_call(store, self.inner.call_budget(), |s| f(bindings, s)) {
            Ok(v) => Ok(v),
            Err(e) => {
                self.live = None;
                Err(e)
            }
        }
    }
}

/// Whether a job the handler accepted keeps the worker's limits.
fn check_job(job: &Job, limits: &Limits) -> Result<(), String> {
    let p = &job.params;
    let checks: [(bool, &str); 12] = [
        (
            !job.job_id.is_empty()
                && job.job_id.len() <= MAX_JOB_ID
                && !job.job_id.chars().any(char::is_control),
            "job_id",
        ),
        (
            !job.prompt.is_empty()
                && job.prompt.chars().count() <= limits.max_prompt_chars as usize,
            "prompt",
        ),
        (
            (1..=limits.max_tokens_cap).contains(&job.max_tokens),
            "max_tokens",
        ),
        (
            job.stop.len() <= MAX_STOPS && job.stop.iter().all(|s| !s.is_empty()),
            "stop",
        ),
        // Whether the sampler is loaded is the host's check at admission (PLUGIN_NOT_FOUND).
        (
            !job.sampler.is_empty() && job.sampler.len() <= 64,
            "sampler",
        ),
        ((0.0..=2.0).contains(&p.temperature), "temperature"),
        (p.top_k <= limits.vocab_size, "top_k"),
        ((0.0..=1.0).contains(&p.top_p), "top_p"),
        ((0.0..=1.0).contains(&p.min_p), "min_p"),
        (
            p.repetition_penalty.is_finite() && p.repetition_penalty >= 0.0,
            "repetition_penalty",
        ),
        (
            p.presence_penalty.is_finite() && p.frequency_penalty.is_finite(),
            "presence_penalty/frequency_penalty",
        ),
        (p.extra.iter().all(|(_, v)| v.is_finite()), "extra"),
    ];
    match checks.iter().find(|(ok, _)| !ok) {
        Some((_, field)) => Err(format!(
            "accepted a job whose `{field}` breaks the worker's limits"
        )),
        None => Ok(()),
    }
}

impl std::fmt::Debug for HandlerSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerSession")
            .field("plugin", &self.plugin.label)
            .field("live", &self.live.is_some())
            .finish()
    }
}
