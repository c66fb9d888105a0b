//! What an OpenAI-style body may hold: every top-level field is either one the endpoint honours,
//! an OpenAI field the worker cannot honour but whose value changes nothing (`"logprobs": null`,
//! `"echo": false`), or refused with a 400 naming it. Nothing is silently ignored.
//!
//! The worker's extensions ride in the same body, the way vLLM takes its own (`extra_body` in
//! the `openai` client): `top_k`, `min_p`, `repetition_penalty`, `sampler`, `sampler_params`,
//! `grammar` and `constraint_plugin`.

use serde_json::{Map, Value};

use super::error::AppError;

/// Fields both endpoints honour.
const COMMON: &[&str] = &[
    "model",
    "stream",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "n",
    "stop",
    "seed",
    "frequency_penalty",
    "presence_penalty",
    "top_k",
    "min_p",
    "repetition_penalty",
    "sampler",
    "sampler_params",
    // Constrained decoding (`server::response_format`).
    "response_format",
    "grammar",
    "constraint_plugin",
    // An opaque end-user id for the caller's own monitoring; it changes no output.
    "user",
];
/// Most entries in `sampler_params` (as `/execute`).
pub const MAX_SAMPLER_PARAMS: usize = 16;
/// Longest `sampler_params` name (as `/execute`).
pub const MAX_PARAM_NAME: usize = 64;
/// Longest sampler name (the plugin host's limit on plugin names).
const MAX_SAMPLER_NAME: usize = 64;

/// The OpenAI endpoint a body is for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Completions,
    Chat,
}

impl Endpoint {
    /// The fields only this endpoint honours.
    fn own(self) -> &'static [&'static str] {
        match self {
            Endpoint::Completions => &["prompt"],
            Endpoint::Chat => &["messages"],
        }
    }
}

/// Whether `v` is the value an OpenAI field the worker does not implement takes when it asks
/// for nothing (so accepting it changes nothing), by field; `None` for fields OpenAI does not
/// have.
fn neutral(field: &str, v: &Value) -> Option<bool> {
    let null = v.is_null();
    let empty = |v: &Value| {
        null || v.as_object().is_some_and(Map::is_empty) || v.as_array().is_some_and(Vec::is_empty)
    };
    Some(match field {
        "logprobs" => null || v == &Value::Bool(false) || v.as_u64() == Some(0),
        "top_logprobs" => null || v.as_u64() == Some(0),
        "echo" | "parallel_tool_calls" | "store" => null || v == &Value::Bool(false),
        "best_of" => null || v.as_u64() == Some(1),
        "suffix" | "prediction" | "audio" | "modalities" | "metadata" | "service_tier"
        | "reasoning_effort" | "web_search_options" => empty(v),
        "logit_bias" | "tools" | "functions" => empty(v),
        "tool_choice" | "function_call" => null || v == "none",
        "stream_options" => {
            empty(v)
                || v.get("include_usage")
                    .is_some_and(|u| u == &Value::Bool(false) || u.is_null())
        }
        _ => return None,
    })
}

/// Refuse any top-level field the endpoint neither honours nor can accept as a no-op.
pub fn check_fields(body: &Map<String, Value>, endpoint: Endpoint) -> Result<(), AppError> {
    for (key, value) in body {
        if COMMON.contains(&key.as_str()) || endpoint.own().contains(&key.as_str()) {
            continue;
        }
        let shown: String = key.chars().take(64).collect();
        match neutral(key, value) {
            Some(true) => {}
            Some(false) => {
                return Err(AppError::invalid(
                    &shown,
                    "not supported by this worker (only its no-op value is accepted)",
                ));
            }
            None => {
                return Err(AppError::invalid(
                    &shown,
                    "unknown field (the worker's own extensions are top_k, min_p, \
                     repetition_penalty, sampler and sampler_params)",
                ));
            }
        }
    }
    Ok(())
}

/// `sampler`: a plugin name, or `None` for the default. Whether it is loaded is checked at
/// admission (`PLUGIN_NOT_FOUND`).
pub fn sampler(v: Option<&Value>) -> Result<Option<String>, AppError> {
    let name = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s,
        Some(_) => return Err(AppError::invalid("sampler", "must be a string")),
    };
    let well_formed = !name.is_empty()
        && name.len() <= MAX_SAMPLER_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !well_formed {
        let shown: String = name.chars().take(MAX_SAMPLER_NAME).collect();
        return Err(AppError::invalid(
            "sampler",
            format!("{shown:?} is not a plugin name (1 to {MAX_SAMPLER_NAME} of [a-z0-9_-])"),
        ));
    }
    Ok(Some(name.clone()))
}

/// `sampler_params`: an object of named finite numbers, checked like `/execute`'s; the sampler's
/// own `validate` judges the names and values at admission.
pub fn sampler_params(v: Option<&Value>) -> Result<Vec<(String, f64)>, AppError> {
    let map = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(map)) => map,
        Some(_) => {
            return Err(AppError::invalid(
                "sampler_params",
                "must be an object of numbers",
            ));
        }
    };
    if map.len() > MAX_SAMPLER_PARAMS {
        return Err(AppError::invalid(
            "sampler_params",
            format!("at most {MAX_SAMPLER_PARAMS} entries, got {}", map.len()),
        ));
    }
    map.iter()
        .map(|(name, v)| {
            let well_named = !name.is_empty()
                && name.len() <= MAX_PARAM_NAME
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !well_named {
                return Err(AppError::invalid(
                    "sampler_params",
                    format!("names are 1 to {MAX_PARAM_NAME} of [a-z0-9_]"),
                ));
            }
            match v.as_f64() {
                Some(x) if x.is_finite() => Ok((name.clone(), x)),
                _ => Err(AppError::invalid(
                    &format!("sampler_params.{name}"),
                    "must be a finite number",
                )),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(body: Value, endpoint: Endpoint) -> Result<(), String> {
        check_fields(body.as_object().unwrap(), endpoint).map_err(|e| e.field.unwrap())
    }

    #[test]
    fn honoured_and_no_op_fields_pass_others_are_named() {
        let ok = json!({"model": "m", "prompt": "x", "max_tokens": 4, "sampler": "mirostat",
            "sampler_params": {"tau": 3.0}, "logprobs": null, "echo": false, "user": "u",
            "stream_options": null, "logit_bias": {}});
        assert_eq!(check(ok, Endpoint::Completions), Ok(()));
        let chat = json!({"messages": [], "tools": [], "tool_choice": "none",
            "response_format": {"type": "text"}, "max_completion_tokens": 3});
        assert_eq!(check(chat, Endpoint::Chat), Ok(()));
        assert_eq!(
            check(json!({"prompt": "x", "samplr": "m"}), Endpoint::Completions),
            Err("samplr".into())
        );
        assert_eq!(
            check(json!({"prompt": "x", "logprobs": 5}), Endpoint::Completions),
            Err("logprobs".into())
        );
        assert_eq!(
            check(json!({"messages": [], "prompt": "x"}), Endpoint::Chat),
            Err("prompt".into())
        );
        assert_eq!(
            check(
                json!({"messages": [], "stream_options": {"include_usage": true}}),
                Endpoint::Chat
            ),
            Err("stream_options".into())
        );
    }

    #[test]
    fn sampler_fields_are_checked_like_execute() {
        assert_eq!(sampler(None).unwrap(), None);
        assert_eq!(
            sampler(Some(&json!("typical"))).unwrap(),
            Some("typical".into())
        );
        assert!(sampler(Some(&json!(3))).is_err());
        assert!(sampler(Some(&json!("Beam Search"))).is_err());
        let mut got = sampler_params(Some(&json!({"tau": 5, "eta": 0.5}))).unwrap();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            got,
            vec![("eta".to_string(), 0.5), ("tau".to_string(), 5.0)]
        );
        let e = sampler_params(Some(&json!({"tau": "x"}))).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("sampler_params.tau"));
        assert!(sampler_params(Some(&json!([1]))).is_err());
        assert!(sampler_params(Some(&json!({"Bad": 1}))).is_err());
    }
}
