//! Request-handler conformance: every body of the corpora through `parse-execute` (refusals
//! must name the corpus field; accepted jobs must carry the expected values), stop-sequence
//! checks, and the SSE rendering of each event kind.

use std::path::Path;

use orcd_plugin_host::{
    EndEvent, ErrorEvent, ExecuteJob, HandlerSession, Limits, MetricsEvent, PluginError,
    PluginKind, StartedEvent, StreamEvent, TokenEvent,
};
use serde_json::Value;

use crate::corpus::{CorpusLimits, ValidCase, invalid_cases, valid_cases};
use crate::harness::{host_with, synthetic_facts, synthetic_vocab};
use crate::{KitError, Report};

/// Run every request-handler check against the component at `wasm`.
pub fn check_handler(wasm: &Path) -> Result<Report, KitError> {
    let (invalid_limits, invalid) = invalid_cases()?;
    let (valid_limits, valid) = valid_cases()?;
    let vocab = invalid_limits.vocab_size;
    let (host, info) = host_with(
        wasm,
        PluginKind::RequestHandler,
        synthetic_facts(vocab),
        &synthetic_vocab(vocab),
    )?;
    let mut report = Report::new(format!("{} ({})", info.label(), info.kind));
    let mut session = host.request_handler()?;

    let limits = to_limits(&invalid_limits);
    for case in &invalid {
        let got = session.parse_execute(case.body.as_bytes(), &case.content_type, &limits);
        let verdict = match got {
            Err(PluginError::InvalidRequest { field, message }) if field == case.field => {
                Ok(message)
            }
            Err(PluginError::InvalidRequest { field, message }) => Err(format!(
                "named `{field}`, expected `{}`: {message}",
                case.field
            )),
            Err(e) => {
                // A trap drops the instance; start a fresh one for the next case.
                session = host.request_handler()?;
                Err(format!("{}: {e}", e.code()))
            }
            Ok(_) => Err("accepted".into()),
        };
        report.record(format!("refuses: {}", case.name), verdict);
    }

    let limits = to_limits(&valid_limits);
    for case in &valid {
        let verdict = match session.parse_execute(case.body.as_bytes(), &case.content_type, &limits)
        {
            Ok(job) => expect(&job, case),
            Err(e) => {
                if !matches!(e, PluginError::InvalidRequest { .. }) {
                    session = host.request_handler()?;
                }
                Err(format!("{}: {e}", e.code()))
            }
        };
        report.record(format!("accepts: {}", case.name), verdict);
    }

    report.record("stop sequences", stops(&mut session));
    report.record("SSE events", events(&mut session));
    Ok(report)
}

fn to_limits(l: &CorpusLimits) -> Limits {
    Limits {
        max_prompt_chars: l.max_prompt_chars,
        max_tokens_cap: l.max_tokens_cap,
        vocab_size: l.vocab_size,
        context_length: l.context_length,
        samplers: l.samplers.clone(),
    }
}

/// Whether the job carries every value the case expects.
fn expect(job: &ExecuteJob, case: &ValidCase) -> Result<String, String> {
    let p = &job.params;
    for (key, want) in &case.expect {
        let got: Value = match key.as_str() {
            "max_tokens" => job.max_tokens.into(),
            "temperature" => f64::from(p.temperature).into(),
            "top_p" => f64::from(p.top_p).into(),
            "top_k" => p.top_k.into(),
            "min_p" => f64::from(p.min_p).into(),
            "repetition_penalty" => f64::from(p.repetition_penalty).into(),
            "stop" => job.stop.clone().into(),
            "seed" => job.seed.map_or(Value::Null, Value::from),
            "sampler" => job.sampler.clone().into(),
            other => return Err(format!("corpus expects unknown key `{other}`")),
        };
        let same = match (got.as_f64(), want.as_f64()) {
            (Some(g), Some(w)) if key != "seed" => (g - w).abs() <= 1e-6 * w.abs().max(1.0),
            _ => &got == want,
        };
        if !same {
            return Err(format!("{key}: got {got}, expected {want}"));
        }
    }
    Ok(format!(
        "job {} ({} values checked)",
        job.job_id,
        case.expect.len()
    ))
}

fn stops(session: &mut HandlerSession) -> Result<String, String> {
    let stops = vec!["END".to_string(), "\n\n".to_string()];
    let cases: [(&str, Option<(u32, u32)>); 4] = [
        ("no stop here", None),
        ("hello END", Some((0, 6))),
        ("a\n\nb END", Some((1, 1))),
        ("日本END", Some((0, 6))),
    ];
    for (text, want) in cases {
        let got = session
            .check_stop(text, &stops)
            .map_err(|e| format!("{}: {e}", e.code()))?
            .map(|h| (h.stop_index, h.offset));
        if got != want {
            return Err(format!("{text:?}: got {got:?}, expected {want:?}"));
        }
    }
    Ok("4 texts".into())
}

fn events(session: &mut HandlerSession) -> Result<String, String> {
    let cases = [
        (
            StreamEvent::Started(StartedEvent {
                job_id: "j".into(),
                model: "m".into(),
                started_at: "2026-11-27T07:00:00Z".into(),
            }),
            "started",
            &["job_id", "model", "started_at"][..],
        ),
        (
            StreamEvent::Token(TokenEvent {
                text: "a\n\nb".into(),
                index: 3,
            }),
            "token",
            &["t", "i"][..],
        ),
        (
            StreamEvent::Metrics(MetricsEvent {
                job_id: "j".into(),
                tokens_out: 5,
                decode_time_ms: 9,
                vram_bytes: 1 << 30,
            }),
            "metrics",
            &["job_id", "tokens_out", "decode_time_ms", "vram_bytes"][..],
        ),
        (
            StreamEvent::End(EndEvent {
                tokens_out: 5,
                decode_time_ms: 9,
                stop_reason: "max_tokens".into(),
                seed: 42,
            }),
            "end",
            &["tokens_out", "decode_time_ms", "stop_reason", "seed"][..],
        ),
        (
            StreamEvent::Error(ErrorEvent {
                code: "CANCELLED".into(),
                message: "cancelled".into(),
                retriable: false,
            }),
            "error",
            &["code", "message", "retriable"][..],
        ),
    ];
    for (event, name, keys) in cases {
        let text = session
            .render_event(&event)
            .map_err(|e| format!("{}: {e}", e.code()))?;
        let head = format!("event: {name}\ndata: ");
        let data = text
            .strip_prefix(&head)
            .and_then(|t| t.strip_suffix("\n\n"))
            .ok_or_else(|| format!("{name}: not `event: {name}\\ndata: ...\\n\\n`: {text:?}"))?;
        let json: Value =
            serde_json::from_str(data).map_err(|e| format!("{name}: data is not JSON: {e}"))?;
        let obj = json
            .as_object()
            .ok_or(format!("{name}: data is not an object"))?;
        if let Some(k) = keys.iter().find(|k| !obj.contains_key(**k)) {
            return Err(format!("{name}: data lacks `{k}`"));
        }
    }
    Ok("started, token, metrics, end, error".into())
}
