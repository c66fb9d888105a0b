//! What an OpenAI-style body may hold: every top-level field is either one the endpoint honours,
//! an OpenAI field the worker cannot honour but whose value changes nothing (`"logprobs": null`,
//! `"echo": false`), or refused with a 400 naming it. Nothing is silently ignored.
//!
//! The worker's extensions ride in the same body, the way vLLM takes its own (`extra_body` in
//! the `openai` client): `top_k`, `min_p`, `repetition_penalty`, `sampler`, `sampler_params`,
//! `grammar` and `constraint_plugin`.

use serde_json::{Map, Value};

use super::error::AppError;
use crate::job::MAX_TOP_LOGPROBS;

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
    // `include_usage`: usage in the stream's last chunk.
    "stream_options",
    // An opaque end-user id for the caller's own monitoring; it changes no output.
    "user",
];
/// Most choices (`n`) one request may ask for.
pub const MAX_CHOICES: u32 = 16;
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
            // `logprobs`: the legacy integer (alternatives per token).
            Endpoint::Completions => &["prompt", "logprobs"],
            Endpoint::Chat => &[
                "messages",
                "chat_template_kwargs",
                "logprobs",
                "top_logprobs",
                "tools",
                "tool_choice",
                "parallel_tool_calls",
            ],
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

/// `n`: how many choices, 1 by default, at most [`MAX_CHOICES`].
pub fn choices(n: Option<u32>) -> Result<usize, AppError> {
    match n {
        None => Ok(1),
        Some(n) if (1..=MAX_CHOICES).contains(&n) => Ok(n as usize),
        Some(n) => Err(AppError::invalid(
            "n",
            format!("{n} is outside 1..={MAX_CHOICES}"),
        )),
    }
}

/// `stream_options`: `{"include_usage": bool}`, only on a streamed request when it asks for
/// anything.
pub fn include_usage(v: Option<&Value>, stream: bool) -> Result<bool, AppError> {
    let field = "stream_options";
    let map = match v {
        None | Some(Value::Null) => return Ok(false),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(AppError::invalid(field, "must be an object")),
    };
    if let Some(k) = map.keys().find(|k| k.as_str() != "include_usage") {
        let shown: String = k.chars().take(64).collect();
        return Err(AppError::invalid(
            field,
            format!("unknown field `{shown}` (only `include_usage`)"),
        ));
    }
    let on = match map.get("include_usage") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(AppError::invalid(
                field,
                "`include_usage` must be a boolean",
            ));
        }
    };
    if on && !stream {
        return Err(AppError::invalid(field, "only with `stream: true`"));
    }
    Ok(on)
}

/// The legacy completions' `logprobs`: `null`, or how many alternatives each token lists
/// (0 ..= [`MAX_TOP_LOGPROBS`]; 0: the sampled token's only).
pub fn completion_logprobs(v: Option<&Value>) -> Result<Option<u32>, AppError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(k) if k <= u64::from(MAX_TOP_LOGPROBS) => Ok(Some(k as u32)),
            _ => Err(AppError::invalid(
                "logprobs",
                format!("must be an integer 0..={MAX_TOP_LOGPROBS}"),
            )),
        },
        Some(_) => Err(AppError::invalid(
            "logprobs",
            format!("must be null or an integer 0..={MAX_TOP_LOGPROBS} (alternatives per token)"),
        )),
    }
}

/// Chat's `logprobs` (a boolean) and `top_logprobs` (0 ..= [`MAX_TOP_LOGPROBS`], only with
/// `logprobs: true`).
pub fn chat_logprobs(
    logprobs: Option<&Value>,
    top: Option<&Value>,
) -> Result<Option<u32>, AppError> {
    let on = match logprobs {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(AppError::invalid("logprobs", "must be a boolean")),
    };
    let k = match top {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(k) if k <= u64::from(MAX_TOP_LOGPROBS) => Some(k as u32),
            _ => {
                return Err(AppError::invalid(
                    "top_logprobs",
                    format!("must be an integer 0..={MAX_TOP_LOGPROBS}"),
                ));
            }
        },
    };
    match (on, k) {
        (true, k) => Ok(Some(k.unwrap_or(0))),
        (false, Some(k)) if k > 0 => {
            Err(AppError::invalid("top_logprobs", "needs `logprobs: true`"))
        }
        (false, _) => Ok(None),
    }
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
            Ok(())
        );
        assert_eq!(
            check(
                json!({"prompt": "x", "top_logprobs": 5}),
                Endpoint::Completions
            ),
            Err("top_logprobs".into())
        );
        assert_eq!(
            check(
                json!({"prompt": "x", "tools": [{"type": "function"}]}),
                Endpoint::Completions
            ),
            Err("tools".into())
        );
        assert_eq!(
            check(json!({"messages": [], "prompt": "x"}), Endpoint::Chat),
            Err("prompt".into())
        );
        assert_eq!(
            check(
                json!({"messages": [], "stream_options": {"include_usage": true},
                    "logprobs": true, "top_logprobs": 2, "tool_choice": "required",
                    "chat_template_kwargs": {}}),
                Endpoint::Chat
            ),
            Ok(())
        );
    }

    #[test]
    fn choices_usage_and_logprobs_fields() {
        assert_eq!(choices(None).unwrap(), 1);
        assert_eq!(choices(Some(16)).unwrap(), 16);
        assert!(choices(Some(0)).is_err() && choices(Some(17)).is_err());
        assert!(include_usage(Some(&json!({"include_usage": true})), true).unwrap());
        assert!(!include_usage(Some(&json!({"include_usage": false})), false).unwrap());
        for (v, stream) in [
            (json!({"include_usage": true}), false),
            (json!({"include_usage": 1}), true),
            (json!({"continuous_usage_stats": true}), true),
        ] {
            let e = include_usage(Some(&v), stream).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("stream_options"));
        }
        assert_eq!(completion_logprobs(Some(&json!(3))).unwrap(), Some(3));
        assert_eq!(completion_logprobs(Some(&json!(0))).unwrap(), Some(0));
        assert_eq!(completion_logprobs(None).unwrap(), None);
        assert!(completion_logprobs(Some(&json!(21))).is_err());
        assert!(completion_logprobs(Some(&json!(true))).is_err());
        assert_eq!(chat_logprobs(Some(&json!(true)), None).unwrap(), Some(0));
        assert_eq!(
            chat_logprobs(Some(&json!(true)), Some(&json!(5))).unwrap(),
            Some(5)
        );
        assert_eq!(
            chat_logprobs(Some(&json!(false)), Some(&json!(0))).unwrap(),
            None
        );
        let e = chat_logprobs(None, Some(&json!(2))).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("top_logprobs"));
        let e = chat_logprobs(Some(&json!(1)), None).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("logprobs"));
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
