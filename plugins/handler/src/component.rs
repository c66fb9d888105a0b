//! The `request-handler` world's exports over the plain-Rust modules (Wasm builds only).

use crate::{events, execute, stop};

wit_bindgen::generate!({
    path: "../../wit",
    world: "request-handler",
});

use exports::worker::plugin::handler_plugin::{
    ConstraintRequest, Guest, Invalid, Job, Limits, StopHit, StreamEvent,
};
use worker::plugin::types::{PluginInfo, SamplingParams};

struct Handler;

impl Guest for Handler {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "orcd".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "validates /execute bodies, finds stop sequences, renders SSE events"
                .to_string(),
        }
    }

    fn parse_execute(body: Vec<u8>, content_type: String, limits: Limits) -> Result<Job, Invalid> {
        let limits = execute::Limits {
            max_prompt_chars: limits.max_prompt_chars,
            max_tokens_cap: limits.max_tokens_cap,
            vocab_size: limits.vocab_size,
            context_length: limits.context_length,
            samplers: limits.samplers,
        };
        match execute::parse_execute(&body, &content_type, &limits) {
            Ok(j) => Ok(Job {
                job_id: j.job_id,
                prompt: j.prompt,
                max_tokens: j.max_tokens,
                stop: j.stop,
                seed: j.seed,
                sampler: j.sampler,
                params: SamplingParams {
                    temperature: j.temperature,
                    top_k: j.top_k,
                    top_p: j.top_p,
                    min_p: j.min_p,
                    repetition_penalty: j.repetition_penalty,
                    presence_penalty: j.presence_penalty,
                    frequency_penalty: j.frequency_penalty,
                    penalty_window: j.penalty_window,
                    extra: j.sampler_params,
                },
                constraint: j.constraint.map(|c| ConstraintRequest {
                    kind: c.kind,
                    spec: c.spec,
                    field: c.field,
                    plugin: c.plugin,
                }),
            }),
            Err(e) => Err(Invalid {
                field: e.field,
                message: e.message,
            }),
        }
    }

    fn check_stop(text: String, stops: Vec<String>) -> Option<StopHit> {
        stop::check_stop(&text, &stops).map(|h| StopHit {
            stop_index: h.stop_index,
            offset: h.offset,
        })
    }

    fn render_event(event: StreamEvent) -> String {
        let e = match event {
            StreamEvent::Started(s) => events::Event::Started {
                job_id: s.job_id,
                model: s.model,
                started_at: s.started_at,
            },
            StreamEvent::Token(t) => events::Event::Token {
                text: t.text,
                index: t.index,
            },
            StreamEvent::Metrics(m) => events::Event::Metrics {
                job_id: m.job_id,
                tokens_out: m.tokens_out,
                decode_time_ms: m.decode_time_ms,
                vram_bytes: m.vram_bytes,
            },
            StreamEvent::End(e) => events::Event::End {
                tokens_out: e.tokens_out,
                decode_time_ms: e.decode_time_ms,
                stop_reason: e.stop_reason,
                seed: e.seed,
            },
            StreamEvent::Error(e) => events::Event::Error {
                code: e.code,
                message: e.message,
                retriable: e.retriable,
            },
        };
        events::render(&e)
    }
}

export!(Handler);
