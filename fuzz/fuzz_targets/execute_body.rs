//! Arbitrary bytes as an `/execute` body into the request-handler's parser (the code the
//! worker runs inside the `orcd` handler plugin), then its stop-sequence and SSE rendering on
//! what it accepted. Nothing may panic; an accepted job keeps every limit the host checks
//! (`check_job` in plugin-host) and the job-id rule of every endpoint; the stop search and the
//! held-back suffix land on character boundaries; every rendered event is one well-formed SSE
//! event whose data is JSON carrying the text back unchanged.
//!
//! The first byte picks the content type (the header is client input too).

#![no_main]

use libfuzzer_sys::fuzz_target;
use orcd_handler::events::{Event, render};
use orcd_handler::execute::{Limits, parse_execute};
use orcd_handler::stop::{check_stop, emit_boundary, held_back};

const CONTENT_TYPES: &[&str] = &[
    "application/json",
    "application/json; charset=utf-8",
    "",
    "text/plain",
    "APPLICATION/JSON",
    "application/json;charset=latin1",
];

fn limits() -> Limits {
    Limits {
        max_prompt_chars: 32_768,
        max_tokens_cap: 2048,
        vocab_size: 49_152,
        context_length: 8192,
        samplers: vec!["standard".into(), "mirostat".into()],
    }
}

fn check_event(event: &Event, text: &str) {
    let sse = render(event);
    assert!(sse.starts_with("event: "), "{sse:?}");
    assert!(sse.ends_with("\n\n"), "{sse:?}");
    let body = &sse[..sse.len() - 2];
    assert!(!body.contains("\n\n"), "{sse:?}");
    let data = body
        .split_once("\ndata: ")
        .map(|(_, d)| d)
        .expect("a data line");
    assert!(!data.contains('\n'), "{sse:?}");
    let json: serde_json::Value = serde_json::from_str(data).expect("data is JSON");
    if let Event::Token { .. } = event {
        assert_eq!(json["t"], text);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[pick as usize % CONTENT_TYPES.len()];
    let limits = limits();
    let job = match parse_execute(body, content_type, &limits) {
        Ok(job) => job,
        Err(invalid) => {
            assert!(!invalid.field.is_empty());
            assert!(invalid.message.starts_with(&invalid.field), "{invalid:?}");
            return;
        }
    };
    // The host's checks of a handler's job, and the worker's job-id rule.
    assert!(!job.job_id.is_empty() && job.job_id.len() <= 256);
    assert!(
        !job.job_id.chars().any(char::is_control),
        "{:?}",
        job.job_id
    );
    let chars = job.prompt.chars().count();
    assert!(chars >= 1 && chars <= limits.max_prompt_chars as usize);
    assert!((1..=limits.max_tokens_cap).contains(&job.max_tokens));
    assert!(job.stop.len() <= 4 && job.stop.iter().all(|s| !s.is_empty()));
    // Any sampler name within the host's bounds: whether it is loaded is the host's check at
    // admission (PLUGIN_NOT_FOUND), not the handler's.
    assert!(!job.sampler.is_empty() && job.sampler.len() <= 64);
    assert!((0.0..=2.0).contains(&job.temperature));
    assert!(job.top_k <= limits.vocab_size);
    assert!((0.0..=1.0).contains(&job.top_p) && (0.0..=1.0).contains(&job.min_p));
    assert!(job.repetition_penalty.is_finite() && job.repetition_penalty >= 0.0);
    assert!(job.presence_penalty.is_finite() && job.frequency_penalty.is_finite());
    assert!(job.sampler_params.iter().all(|(_, v)| v.is_finite()));

    // Stop handling over the prompt as if it were generated text.
    let text = job.prompt.as_str();
    if let Some(hit) = check_stop(text, &job.stop) {
        let at = hit.offset as usize;
        assert!(text.is_char_boundary(at));
        assert!(text[at..].starts_with(job.stop[hit.stop_index as usize].as_str()));
    }
    let held = held_back(text, &job.stop);
    assert!(held <= text.len() && text.is_char_boundary(text.len() - held));
    let (boundary, _) = emit_boundary(text, &job.stop);
    assert!(boundary <= text.len() && text.is_char_boundary(boundary));

    check_event(
        &Event::Token {
            text: text.to_string(),
            index: 0,
        },
        text,
    );
    check_event(
        &Event::Started {
            job_id: job.job_id.clone(),
            model: "m".into(),
            started_at: "2026-01-01T00:00:00.000Z".into(),
        },
        "",
    );
    check_event(
        &Event::Error {
            code: "INVALID_REQUEST".into(),
            message: text.to_string(),
            retriable: false,
        },
        "",
    );
});
