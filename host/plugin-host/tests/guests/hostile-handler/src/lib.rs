//! Built against the frozen contract 0.1.0 (`wit/since_v0.1.0`), so the host tests also prove
//! that 0.1.0 plugins of this kind still load and run.
//!
//! A request handler that answers wrongly on request, so the host's output checks can be
//! tested: the body `bad-job` gives a job over the limits, `spin` never returns, any other body
//! is refused naming the field `prompt`; `check-stop` reports an offset past the text;
//! `render-event` returns text that is not an SSE event.

wit_bindgen::generate!({ path: "../../../../../wit/since_v0.1.0", world: "request-handler" });

use std::hint::black_box;

use exports::worker::plugin::handler_plugin::{Guest, Invalid, Job, Limits, StopHit, StreamEvent};
use worker::plugin::types::{PluginInfo, SamplingParams};

struct Plugin;

impl Guest for Plugin {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "liar".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "answers wrongly, for host tests".into(),
        }
    }

    fn parse_execute(body: Vec<u8>, _content_type: String, limits: Limits) -> Result<Job, Invalid> {
        match body.as_slice() {
            b"bad-job" => Ok(Job {
                job_id: "j".into(),
                prompt: "p".into(),
                max_tokens: limits.max_tokens_cap + 1,
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
            }),
            b"spin" => {
                let mut n = 0u64;
                loop {
                    n = black_box(n.wrapping_add(1));
                }
            }
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

    fn render_event(_event: StreamEvent) -> String {
        "data: not an event".into()
    }
}

export!(Plugin);
