//! The contract versions a plugin may speak, and one dispatch point per plugin kind.
//!
//! A plugin is linked with the bindings of the version its exported interface names
//! (`worker:plugin/sampler-plugin@0.1.0` or `@0.2.0`). Sessions call through the enums here, so
//! the rest of the host sees only the newest contract: 0.1.0 results are adapted to 0.2.0
//! records, and what 0.1.0 lacks gets its 0.2.0 meaning (a 0.1.0 sampler has no `validate`: its
//! parameters are accepted at admission and checked by its `open`, as before).

use wasmtime::Store;
use wasmtime::component::{Resource, ResourceAny};

use crate::bindings::handler::exports::worker::plugin::handler_plugin as h2;
use crate::bindings::types::{Error, InvalidField, PluginInfo, SamplingParams};
use crate::bindings::v0_1_0::handler::exports::worker::plugin::handler_plugin as h1;
use crate::bindings::{constraint, handler, sampler, tokenizer, v0_1_0};
use crate::logits::LogitsHandle;
use crate::state::PluginState;

/// A contract version this host implements.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Contract {
    /// `worker:plugin@0.1.x`, frozen in `wit/since_v0.1.0/`.
    V0_1,
    /// `worker:plugin@0.2.x`, the current `wit/`.
    V0_2,
}

impl Contract {
    /// The versions this host loads, oldest first (for messages).
    pub const SUPPORTED: &'static str = "0.1.x, 0.2.x";

    /// The contract of a version string, semver-compatibly (`0.2.3` speaks 0.2).
    pub fn parse(version: &str) -> Option<Contract> {
        let mut parts = version.split('.');
        let (major, minor, patch) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || major != "0" || patch.parse::<u32>().is_err() {
            return None;
        }
        match minor {
            "1" => Some(Contract::V0_1),
            "2" => Some(Contract::V0_2),
            _ => None,
        }
    }
}

type S<'a> = &'a mut Store<PluginState>;

/// A sampler instance's exports.
pub(crate) enum SamplerBindings {
    V0_1(v0_1_0::sampler::Sampler),
    V0_2(sampler::Sampler),
}

impl SamplerBindings {
    pub fn info(&self, s: S) -> wasmtime::Result<PluginInfo> {
        match self {
            Self::V0_1(b) => b.worker_plugin_sampler_plugin().call_info(s),
            Self::V0_2(b) => b.worker_plugin_sampler_plugin().call_info(s),
        }
    }

    /// `validate`; a 0.1.0 sampler has none and accepts everything here.
    pub fn validate(
        &self,
        s: S,
        params: &SamplingParams,
    ) -> wasmtime::Result<Result<(), InvalidField>> {
        match self {
            Self::V0_1(_) => Ok(Ok(())),
            Self::V0_2(b) => b.worker_plugin_sampler_plugin().call_validate(s, params),
        }
    }

    pub fn open(
        &self,
        s: S,
        params: &SamplingParams,
        seed: u64,
    ) -> wasmtime::Result<Result<ResourceAny, Error>> {
        match self {
            Self::V0_1(b) => b
                .worker_plugin_sampler_plugin()
                .session()
                .call_open(s, params, seed),
            Self::V0_2(b) => b
                .worker_plugin_sampler_plugin()
                .session()
                .call_open(s, params, seed),
        }
    }

    pub fn sample(
        &self,
        s: S,
        session: ResourceAny,
        logits: Resource<LogitsHandle>,
        history: &[u32],
    ) -> wasmtime::Result<Result<u32, Error>> {
        match self {
            Self::V0_1(b) => b
                .worker_plugin_sampler_plugin()
                .session()
                .call_sample(s, session, logits, history),
            Self::V0_2(b) => b
                .worker_plugin_sampler_plugin()
                .session()
                .call_sample(s, session, logits, history),
        }
    }
}

/// A constraint instance's exports (the world exists from contract 0.2.0 on).
pub(crate) struct ConstraintBindings(pub constraint::Constraint);

impl ConstraintBindings {
    pub fn info(&self, s: S) -> wasmtime::Result<PluginInfo> {
        self.0.worker_plugin_constraint_plugin().call_info(s)
    }
    pub fn init(&self, s: S) -> wasmtime::Result<Result<(), Error>> {
        self.0.worker_plugin_constraint_plugin().call_init(s)
    }
    pub fn compile(
        &self,
        s: S,
        kind: &str,
        spec: &str,
    ) -> wasmtime::Result<Result<ResourceAny, Error>> {
        self.0
            .worker_plugin_constraint_plugin()
            .constraint()
            .call_compile(s, kind, spec)
    }
    pub fn allowed(&self, s: S, c: ResourceAny, remaining: u32) -> wasmtime::Result<Vec<u32>> {
        self.0
            .worker_plugin_constraint_plugin()
            .constraint()
            .call_allowed(s, c, remaining)
    }
    pub fn advance(&self, s: S, c: ResourceAny, token: u32) -> wasmtime::Result<Result<(), Error>> {
        self.0
            .worker_plugin_constraint_plugin()
            .constraint()
            .call_advance(s, c, token)
    }
    pub fn is_complete(&self, s: S, c: ResourceAny) -> wasmtime::Result<bool> {
        self.0
            .worker_plugin_constraint_plugin()
            .constraint()
            .call_is_complete(s, c)
    }
}

/// A tokenizer instance's exports (identical in both versions).
pub(crate) enum TokenizerBindings {
    V0_1(v0_1_0::tokenizer::Tokenizer),
    V0_2(tokenizer::Tokenizer),
}

/// One call on a tokenizer's exports, whichever version they are.
macro_rules! tokenizer_call {
    ($self:expr, $s:expr, $method:ident ( $($arg:expr),* )) => {
        match $self {
            TokenizerBindings::V0_1(b) => b.worker_plugin_tokenizer_plugin().$method($s $(, $arg)*),
            TokenizerBindings::V0_2(b) => b.worker_plugin_tokenizer_plugin().$method($s $(, $arg)*),
        }
    };
}

impl TokenizerBindings {
    pub fn info(&self, s: S) -> wasmtime::Result<PluginInfo> {
        tokenizer_call!(self, s, call_info())
    }
    pub fn init(&self, s: S) -> wasmtime::Result<Result<(), Error>> {
        tokenizer_call!(self, s, call_init())
    }
    pub fn encode(
        &self,
        s: S,
        text: &str,
        parse_special: bool,
        add_bos: bool,
    ) -> wasmtime::Result<Result<Vec<u32>, Error>> {
        tokenizer_call!(self, s, call_encode(text, parse_special, add_bos))
    }
    pub fn token_piece(&self, s: S, id: u32) -> wasmtime::Result<Result<Vec<u8>, Error>> {
        tokenizer_call!(self, s, call_token_piece(id))
    }
    pub fn decode(
        &self,
        s: S,
        ids: &[u32],
        skip_special: bool,
    ) -> wasmtime::Result<Result<Vec<u8>, Error>> {
        tokenizer_call!(self, s, call_decode(ids, skip_special))
    }
}

/// A request handler instance's exports; 0.1.0 records are adapted to 0.2.0's.
pub(crate) enum HandlerBindings {
    V0_1(v0_1_0::handler::RequestHandler),
    V0_2(handler::RequestHandler),
}

impl HandlerBindings {
    pub fn info(&self, s: S) -> wasmtime::Result<PluginInfo> {
        match self {
            Self::V0_1(b) => b.worker_plugin_handler_plugin().call_info(s),
            Self::V0_2(b) => b.worker_plugin_handler_plugin().call_info(s),
        }
    }

    pub fn parse_execute(
        &self,
        s: S,
        body: &[u8],
        content_type: &str,
        limits: &h2::Limits,
    ) -> wasmtime::Result<Result<h2::Job, h2::Invalid>> {
        match self {
            Self::V0_1(b) => {
                let limits = h1::Limits::from(limits.clone());
                let out = b.worker_plugin_handler_plugin().call_parse_execute(
                    s,
                    body,
                    content_type,
                    &limits,
                )?;
                Ok(out.map(Into::into).map_err(Into::into))
            }
            Self::V0_2(b) => {
                b.worker_plugin_handler_plugin()
                    .call_parse_execute(s, body, content_type, limits)
            }
        }
    }

    pub fn check_stop(
        &self,
        s: S,
        text: &str,
        stops: &[String],
    ) -> wasmtime::Result<Option<h2::StopHit>> {
        match self {
            Self::V0_1(b) => Ok(b
                .worker_plugin_handler_plugin()
                .call_check_stop(s, text, stops)?
                .map(Into::into)),
            Self::V0_2(b) => b
                .worker_plugin_handler_plugin()
                .call_check_stop(s, text, stops),
        }
    }

    pub fn render_event(&self, s: S, event: &h2::StreamEvent) -> wasmtime::Result<String> {
        match self {
            Self::V0_1(b) => b
                .worker_plugin_handler_plugin()
                .call_render_event(s, &event_v0_1(event.clone())),
            Self::V0_2(b) => b.worker_plugin_handler_plugin().call_render_event(s, event),
        }
    }
}

/// `From` between two records of the same name and fields in two contract versions.
macro_rules! same_record {
    ($from:ident => $to:ident :: $name:ident { $($field:ident),* $(,)? }) => {
        impl From<$from::$name> for $to::$name {
            fn from(v: $from::$name) -> Self {
                $to::$name { $($field: v.$field),* }
            }
        }
    };
}

same_record!(h2 => h1::Limits { max_prompt_chars, max_tokens_cap, vocab_size, context_length, samplers });
// A 0.1.0 handler knows no constraint fields: its jobs are unconstrained.
impl From<h1::Job> for h2::Job {
    fn from(v: h1::Job) -> Self {
        h2::Job {
            job_id: v.job_id,
            prompt: v.prompt,
            max_tokens: v.max_tokens,
            stop: v.stop,
            seed: v.seed,
            sampler: v.sampler,
            params: v.params,
            constraint: None,
        }
    }
}
same_record!(h1 => h2::Invalid { field, message });
same_record!(h1 => h2::StopHit { stop_index, offset });
same_record!(h2 => h1::StartedEvent { job_id, model, started_at });
same_record!(h2 => h1::TokenEvent { text, index });
same_record!(h2 => h1::MetricsEvent { job_id, tokens_out, decode_time_ms, vram_bytes });
same_record!(h2 => h1::EndEvent { tokens_out, decode_time_ms, stop_reason, seed });
same_record!(h2 => h1::ErrorEvent { code, message, retriable });

fn event_v0_1(e: h2::StreamEvent) -> h1::StreamEvent {
    match e {
        h2::StreamEvent::Started(v) => h1::StreamEvent::Started(v.into()),
        h2::StreamEvent::Token(v) => h1::StreamEvent::Token(v.into()),
        h2::StreamEvent::Metrics(v) => h1::StreamEvent::Metrics(v.into()),
        h2::StreamEvent::End(v) => h1::StreamEvent::End(v.into()),
        h2::StreamEvent::Error(v) => h1::StreamEvent::Error(v.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_semver_compatibly() {
        assert_eq!(Contract::parse("0.1.0"), Some(Contract::V0_1));
        assert_eq!(Contract::parse("0.1.7"), Some(Contract::V0_1));
        assert_eq!(Contract::parse("0.2.0"), Some(Contract::V0_2));
        assert_eq!(Contract::parse("0.3.0"), None);
        assert_eq!(Contract::parse("1.1.0"), None);
        assert_eq!(Contract::parse("0.2"), None);
        assert_eq!(Contract::parse("0.2.0.1"), None);
        assert_eq!(Contract::parse(""), None);
    }
}
