//! Built against the frozen contract 0.1.0 (`wit/since_v0.1.0`), so the host tests also prove
//! that 0.1.0 plugins of this kind still load and run.
//!
//! A request handler that answers wrongly on request, so the host's output checks can be
//! tested: the body `bad-job` gives a job over the limits, `bad-id` a job whose id holds a
//! newline, `huge` a job with a 4 MiB prompt, `bad-utf8` a refusal whose message is not UTF-8,
//! and a body naming an attack (see the `attacks` crate: `spin`, `bomb`, `panic`, `sleep`,
//! `env`, ...) runs it, reporting a probe's finding as a refusal of the field `probe-ok` (the
//! sandbox held) or `probe-breach`; any other body is refused naming the field `prompt`.
//! `check-stop` reports an offset past the text; `render-event` returns text that is not an SSE
//! event, or for a token `huge` 2 MiB, or for a token `bad-utf8` bytes that are not UTF-8.

wit_bindgen::generate!({ path: "../../../../../wit/since_v0.1.0", world: "request-handler" });

use exports::worker::plugin::handler_plugin::{Guest, Invalid, Job, Limits, StopHit, StreamEvent};
use worker::plugin::types::{PluginInfo, SamplingParams};

struct Plugin;

fn job(job_id: &str, prompt: String, max_tokens: u32) -> Job {
    Job {
        job_id: job_id.into(),
        prompt,
        max_tokens,
        stop: Vec::new(),
        seed: None,
        sampler: "standard".into(),
        params: SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            penalty_window: 0,
            extra: Vec::new(),
        },
    }
}

impl Guest for Plugin {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "liar".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "answers wrongly, for host tests".into(),
        }
    }

    fn parse_execute(body: Vec<u8>, _content_type: String, limits: Limits) -> Result<Job, Invalid> {
        let word = String::from_utf8_lossy(&body);
        if let Some(attack) = attacks::Attack::from_word(&word) {
            let (field, message) = match attacks::run(attack) {
                Ok(finding) => ("probe-ok", finding),
                Err(finding) => ("probe-breach", finding),
            };
            return Err(Invalid {
                field: field.into(),
                message,
            });
        }
        match body.as_slice() {
            b"bad-job" => Ok(job("j", "p".into(), limits.max_tokens_cap + 1)),
            b"bad-id" => Ok(job("j\n2026-01-01 INFO forged", "p".into(), 1)),
            // Over the prompt limit, under the hostcall copy limit (past that, wasmtime traps first).
            b"huge" => Ok(job("j", "x".repeat(1 << 20), 1)),
            b"bad-utf8" => Err(Invalid {
                field: "prompt".into(),
                message: attacks::invalid_utf8(),
            }),
            _ => Err(Invalid {
                field: "prompt".into(),
                message: "refused".into(),
            }),
        }
    }

    fn check_stop(text: String, _stops: Vec<String>) -> Option<StopHit> {
        Some(StopHit {
            stop_index: 0,
            offset: text.len() as u32 + 1,
        })
    }

    fn render_event(event: StreamEvent) -> String {
        match event {
            StreamEvent::Token(t) if t.text == "huge" => {
                format!("event: token\ndata: {}\n\n", "x".repeat(2 << 20))
            }
            StreamEvent::Token(t) if t.text == "bad-utf8" => attacks::invalid_utf8(),
            _ => "data: not an event".into(),
        }
    }
}

export!(Plugin);
