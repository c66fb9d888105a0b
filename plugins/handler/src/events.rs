//! The SSE events of an `/execute` stream (worker spec, "HTTP API"), rendered as
//! `event: <name>\ndata: <json>\n\n` with the spec's JSON field names.

use serde::Serialize;

/// One event of the stream.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Started {
        job_id: String,
        model: String,
        /// RFC 3339.
        started_at: String,
    },
    Token {
        text: String,
        index: u32,
    },
    Metrics {
        job_id: String,
        tokens_out: u32,
        decode_time_ms: u64,
        vram_bytes: u64,
    },
    End {
        tokens_out: u32,
        decode_time_ms: u64,
        stop_reason: String,
        seed: u64,
    },
    Error {
        code: String,
        message: String,
        retriable: bool,
    },
}

#[derive(Serialize)]
struct StartedData<'a> {
    job_id: &'a str,
    model: &'a str,
    started_at: &'a str,
}

#[derive(Serialize)]
struct TokenData<'a> {
    t: &'a str,
    i: u32,
}

#[derive(Serialize)]
struct MetricsData<'a> {
    job_id: &'a str,
    tokens_out: u32,
    decode_time_ms: u64,
    vram_bytes: u64,
}

#[derive(Serialize)]
struct EndData<'a> {
    tokens_out: u32,
    decode_time_ms: u64,
    stop_reason: &'a str,
    seed: u64,
}

#[derive(Serialize)]
struct ErrorData<'a> {
    code: &'a str,
    message: &'a str,
    retriable: bool,
}

/// The event as SSE text. The JSON is on one line (serde_json escapes newlines in strings),
/// so the event never contains a blank line before its end.
pub fn render(event: &Event) -> String {
    let (name, data) = match event {
        Event::Started {
            job_id,
            model,
            started_at,
        } => (
            "started",
            serde_json::to_string(&StartedData {
                job_id,
                model,
                started_at,
            }),
        ),
        Event::Token { text, index } => (
            "token",
            serde_json::to_string(&TokenData { t: text, i: *index }),
        ),
        Event::Metrics {
            job_id,
            tokens_out,
            decode_time_ms,
            vram_bytes,
        } => (
            "metrics",
            serde_json::to_string(&MetricsData {
                job_id,
                tokens_out: *tokens_out,
                decode_time_ms: *decode_time_ms,
                vram_bytes: *vram_bytes,
            }),
        ),
        Event::End {
            tokens_out,
            decode_time_ms,
            stop_reason,
            seed,
        } => (
            "end",
            serde_json::to_string(&EndData {
                tokens_out: *tokens_out,
                decode_time_ms: *decode_time_ms,
                stop_reason,
                seed: *seed,
            }),
        ),
        Event::Error {
            code,
            message,
            retriable,
        } => (
            "error",
            serde_json::to_string(&ErrorData {
                code,
                message,
                retriable: *retriable,
            }),
        ),
    };
    // Serialising these plain structs of strings and integers cannot fail.
    let data = data.unwrap_or_else(|_| String::from("{}"));
    format!("event: {name}\ndata: {data}\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_event_uses_the_spec_names() {
        let e = Event::Token {
            text: "a\n\"b\"".into(),
            index: 3,
        };
        assert_eq!(
            render(&e),
            "event: token\ndata: {\"t\":\"a\\n\\\"b\\\"\",\"i\":3}\n\n"
        );
    }

    #[test]
    fn every_event_is_one_data_line() {
        let events = [
            Event::Started {
                job_id: "j".into(),
                model: "m".into(),
                started_at: "2026-11-27T07:00:00Z".into(),
            },
            Event::Metrics {
                job_id: "j".into(),
                tokens_out: 5,
                decode_time_ms: 12,
                vram_bytes: 1 << 30,
            },
            Event::End {
                tokens_out: 5,
                decode_time_ms: 12,
                stop_reason: "max_tokens".into(),
                seed: u64::MAX,
            },
            Event::Error {
                code: "CANCELLED".into(),
                message: "line1\n\nline2".into(),
                retriable: false,
            },
        ];
        for e in &events {
            let s = render(e);
            let lines: Vec<&str> = s.trim_end_matches("\n\n").split('\n').collect();
            assert_eq!(lines.len(), 2, "{s}");
            let json: serde_json::Value =
                serde_json::from_str(lines[1].strip_prefix("data: ").unwrap()).unwrap();
            assert!(json.is_object());
        }
        let end = render(&events[2]);
        assert!(end.starts_with("event: end\n"));
        assert!(end.contains("\"seed\":18446744073709551615"));
        assert!(end.contains("\"stop_reason\":\"max_tokens\""));
    }
}
