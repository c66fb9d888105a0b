//! Parsing and validating an `/execute` body (worker spec, "HTTP API") into a [`JobRequest`].
//!
//! Every field is checked for type and range, and a refusal names the field (`prompt`,
//! `temperature`, `stop[2]`, `sampler_params.tau`), or `body` when the body is not a JSON
//! object, or `content-type` when it is not JSON. Decisions beyond the spec:
//! - unknown fields are refused (a typo such as `temprature` must not silently fall back to a
//!   default);
//! - `null` for an optional field means "absent" (its default applies); required fields must
//!   be strings;
//! - integers must be JSON integers (`5`, not `5.0` or `"5"`); floats accept any JSON number;
//! - besides the spec's fields: `sampler` (which sampler plugin, default `standard`),
//!   `sampler_params` (named numbers for a custom sampler, e.g. mirostat's `tau`),
//!   `presence_penalty` / `frequency_penalty` (-2.0-2.0, default 0.0);
//! - a field given twice is refused (JSON parsers disagree on which copy wins).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Longest job id, in bytes.
pub const MAX_JOB_ID_BYTES: usize = 256;
/// Most stop sequences (worker spec 1422).
pub const MAX_STOPS: usize = 4;
/// Longest stop sequence, in characters.
pub const MAX_STOP_CHARS: usize = 256;
/// Longest plugin name (the host's limit on `info().name`).
const MAX_SAMPLER_NAME: usize = 64;
/// Most entries in `sampler_params`.
pub const MAX_SAMPLER_PARAMS: usize = 16;
/// Longest `sampler_params` name.
pub const MAX_PARAM_NAME: usize = 64;
/// Largest body accepted, in bytes (the host refuses larger ones before calling the plugin).
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Tokens the penalties look back over.
pub const DEFAULT_PENALTY_WINDOW: u32 = 64;

/// The fields `/execute` accepts.
pub const FIELDS: &[&str] = &[
    "job_id",
    "prompt",
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "repetition_penalty",
    "min_p",
    "stop",
    "seed",
    "sampler",
    "sampler_params",
    "presence_penalty",
    "frequency_penalty",
    "response_format",
    "regex",
    "grammar",
    "constraint_plugin",
];

/// What the worker allows (the WIT `limits` record).
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    pub max_prompt_chars: u32,
    pub max_tokens_cap: u32,
    pub vocab_size: u32,
    pub context_length: u32,
    /// Loaded sampler plugins, the default first.
    pub samplers: Vec<String>,
}

/// A validated request (the WIT `job` record, sampling parameters flattened).
#[derive(Clone, Debug, PartialEq)]
pub struct JobRequest {
    pub job_id: String,
    pub prompt: String,
    pub max_tokens: u32,
    pub stop: Vec<String>,
    /// None: the worker picks the seed and reports it in `end`.
    pub seed: Option<u64>,
    pub sampler: String,
    pub temperature: f32,
    pub top_k: u32,
    pub top_p: f32,
    pub min_p: f32,
    pub repetition_penalty: f32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    pub penalty_window: u32,
    pub sampler_params: Vec<(String, f64)>,
    /// Constrained decoding (`response_format`, `regex`, `grammar`; `constraint_plugin`).
    pub constraint: Option<crate::constraint::ConstraintRequest>,
}

/// A refused request: HTTP 400 `INVALID_REQUEST`, the message naming `field`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    let mut field = field.into();
    // A client's key may be empty (`{"": 1}`); the error still names it, quoted.
    if field.is_empty() {
        field = "\"\"".into();
    }
    let message = format!("{field}: {}", message.into());
    Invalid { field, message }
}

/// Parse and validate an `/execute` body sent with `content_type`.
pub fn parse_execute(
    body: &[u8],
    content_type: &str,
    limits: &Limits,
) -> Result<JobRequest, Invalid> {
    check_content_type(content_type)?;
    if body.len() > MAX_BODY_BYTES {
        return Err(invalid(
            "body",
            format!(
                "{} bytes is over the {MAX_BODY_BYTES}-byte limit",
                body.len()
            ),
        ));
    }
    let text = std::str::from_utf8(body).map_err(|e| invalid("body", format!("not UTF-8: {e}")))?;
    let body: Body =
        serde_json::from_str(text).map_err(|e| invalid("body", format!("invalid JSON: {e}")))?;
    let obj = match body {
        Body::Object(obj) => obj,
        Body::Duplicate(key) => {
            let shown: String = key.chars().take(MAX_PARAM_NAME).collect();
            return Err(invalid(shown, "appears more than once"));
        }
        Body::NotObject => return Err(invalid("body", "must be a JSON object")),
    };
    if let Some(unknown) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        let shown: String = unknown.chars().take(MAX_PARAM_NAME).collect();
        return Err(invalid(
            shown,
            format!("unknown field; accepted fields: {}", FIELDS.join(", ")),
        ));
    }

    let job_id = required_string(&obj, "job_id")?;
    if job_id.is_empty() || job_id.len() > MAX_JOB_ID_BYTES {
        return Err(invalid(
            "job_id",
            format!("must be 1 to {MAX_JOB_ID_BYTES} bytes long"),
        ));
    }
    if job_id.chars().any(char::is_control) {
        return Err(invalid("job_id", "must not contain control characters"));
    }
    let prompt = required_string(&obj, "prompt")?;
    let chars = prompt.chars().count();
    if chars == 0 || chars > limits.max_prompt_chars as usize {
        return Err(invalid(
            "prompt",
            format!(
                "must be 1 to {} characters long, got {chars}",
                limits.max_prompt_chars
            ),
        ));
    }

    let token_limit = limits.max_tokens_cap.min(limits.context_length).max(1);
    let max_tokens = match integer(&obj, "max_tokens")? {
        None => token_limit,
        Some(n) if (1..=token_limit as u64).contains(&n) => n as u32,
        Some(n) => {
            return Err(invalid(
                "max_tokens",
                format!("must be in 1..={token_limit}, got {n}"),
            ));
        }
    };
    let temperature = float(&obj, "temperature", 0.0, 2.0)?.unwrap_or(1.0);
    let top_p = float(&obj, "top_p", 0.0, 1.0)?.unwrap_or(1.0);
    let min_p = float(&obj, "min_p", 0.0, 1.0)?.unwrap_or(0.0);
    let repetition_penalty = float(&obj, "repetition_penalty", 0.0, 2.0)?.unwrap_or(1.0);
    let presence_penalty = float(&obj, "presence_penalty", -2.0, 2.0)?.unwrap_or(0.0);
    let frequency_penalty = float(&obj, "frequency_penalty", -2.0, 2.0)?.unwrap_or(0.0);
    let top_k = match integer(&obj, "top_k")? {
        None => 0,
        Some(k) if k <= limits.vocab_size as u64 => k as u32,
        Some(k) => {
            return Err(invalid(
                "top_k",
                format!(
                    "must be in 0..={} (the vocabulary size), got {k}",
                    limits.vocab_size
                ),
            ));
        }
    };
    let seed = integer(&obj, "seed")?;
    let stop = stops(&obj)?;
    let sampler = sampler(&obj, limits)?;
    let sampler_params = sampler_params(&obj)?;
    let constraint = crate::constraint::parse(&obj)?;

    Ok(JobRequest {
        job_id,
        prompt,
        max_tokens,
        stop,
        seed,
        sampler,
        temperature,
        top_k,
        top_p,
        min_p,
        repetition_penalty,
        presence_penalty,
        frequency_penalty,
        penalty_window: DEFAULT_PENALTY_WINDOW,
        sampler_params,
        constraint,
    })
}

/// A parsed body: serde_json's own map keeps the last of two equal keys, which would let a
/// proxy and the worker read different prompts, so the top-level object is read here and a
/// repeated field is refused.
enum Body {
    Object(Map<String, Value>),
    Duplicate(String),
    NotObject,
}

impl<'de> Deserialize<'de> for Body {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(BodyVisitor)
    }
}

struct BodyVisitor;

impl<'de> Visitor<'de> for BodyVisitor {
    type Value = Body;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Body, A::Error> {
        let mut obj = Map::new();
        let mut duplicate = None;
        while let Some(key) = map.next_key::<String>()? {
            let value: Value = map.next_value()?;
            if obj.contains_key(&key) {
                duplicate.get_or_insert(key);
            } else {
                obj.insert(key, value);
            }
        }
        Ok(duplicate.map_or(Body::Object(obj), Body::Duplicate))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Body, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Body::NotObject)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Body, E> {
        Ok(Body::NotObject)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Body, E> {
        Ok(Body::NotObject)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Body, E> {
        Ok(Body::NotObject)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Body, E> {
        Ok(Body::NotObject)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Body, E> {
        Ok(Body::NotObject)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Body, E> {
        Ok(Body::NotObject)
    }
}

/// `application/json`, any case, optionally with parameters; a charset must be UTF-8.
fn check_content_type(content_type: &str) -> Result<(), Invalid> {
    let mut parts = content_type.split(';');
    let media = parts.next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/json") {
        let shown: String = content_type.chars().take(64).collect();
        return Err(invalid(
            "content-type",
            format!("must be application/json, got {shown:?}"),
        ));
    }
    for param in parts {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        if name.trim().eq_ignore_ascii_case("charset") {
            let v = value.trim().trim_matches('"');
            if !v.eq_ignore_ascii_case("utf-8") && !v.eq_ignore_ascii_case("utf8") {
                return Err(invalid("content-type", "charset must be utf-8"));
            }
        }
    }
    Ok(())
}

/// The field, treating `null` as absent.
fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn required_string(obj: &Map<String, Value>, name: &str) -> Result<String, Invalid> {
    match obj.get(name) {
        None => Err(invalid(name, "is required")),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v) => Err(invalid(
            name,
            format!("must be a string, got {}", type_name(v)),
        )),
    }
}

fn integer(obj: &Map<String, Value>, name: &str) -> Result<Option<u64>, Invalid> {
    match field(obj, name) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) => Ok(Some(v)),
            None if n.is_i64() => Err(invalid(name, format!("must not be negative, got {n}"))),
            None => Err(invalid(
                name,
                format!("must be a whole number without a fraction, got {n}"),
            )),
        },
        Some(v) => Err(invalid(
            name,
            format!("must be an integer, got {}", type_name(v)),
        )),
    }
}

fn float(obj: &Map<String, Value>, name: &str, lo: f64, hi: f64) -> Result<Option<f32>, Invalid> {
    match field(obj, name) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(v) if v.is_finite() && (lo..=hi).contains(&v) => Ok(Some(v as f32)),
            _ => Err(invalid(
                name,
                format!("must be in {lo:.1}..={hi:.1}, got {n}"),
            )),
        },
        Some(v) => Err(invalid(
            name,
            format!("must be a number, got {}", type_name(v)),
        )),
    }
}

fn stops(obj: &Map<String, Value>) -> Result<Vec<String>, Invalid> {
    let items = match field(obj, "stop") {
        None => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(v) => {
            return Err(invalid(
                "stop",
                format!("must be an array of strings, got {}", type_name(v)),
            ));
        }
    };
    if items.len() > MAX_STOPS {
        return Err(invalid(
            "stop",
            format!("at most {MAX_STOPS} stop sequences, got {}", items.len()),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let name = format!("stop[{i}]");
            match item {
                Value::String(s) if s.is_empty() => Err(invalid(name, "must not be empty")),
                Value::String(s) if s.chars().count() > MAX_STOP_CHARS => Err(invalid(
                    name,
                    format!("must be at most {MAX_STOP_CHARS} characters"),
                )),
                Value::String(s) => Ok(s.clone()),
                v => Err(invalid(
                    name,
                    format!("must be a string, got {}", type_name(v)),
                )),
            }
        })
        .collect()
}

fn sampler(obj: &Map<String, Value>, limits: &Limits) -> Result<String, Invalid> {
    let name = match field(obj, "sampler") {
        None => {
            return Ok(limits
                .samplers
                .first()
                .cloned()
                .unwrap_or_else(|| "standard".to_string()));
        }
        Some(Value::String(s)) => s,
        Some(v) => {
            return Err(invalid(
                "sampler",
                format!("must be a string, got {}", type_name(v)),
            ));
        }
    };
    // Whether it is loaded is the host's check (PLUGIN_NOT_FOUND); the name only has to be
    // one a plugin could have.
    let well_formed = !name.is_empty()
        && name.len() <= MAX_SAMPLER_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if well_formed {
        Ok(name.clone())
    } else {
        let shown: String = name.chars().take(MAX_SAMPLER_NAME).collect();
        Err(invalid(
            "sampler",
            format!("{shown:?} is not a plugin name (1 to {MAX_SAMPLER_NAME} of [a-z0-9_-])"),
        ))
    }
}

fn sampler_params(obj: &Map<String, Value>) -> Result<Vec<(String, f64)>, Invalid> {
    let map = match field(obj, "sampler_params") {
        None => return Ok(Vec::new()),
        Some(Value::Object(map)) => map,
        Some(v) => {
            return Err(invalid(
                "sampler_params",
                format!("must be an object of numbers, got {}", type_name(v)),
            ));
        }
    };
    if map.len() > MAX_SAMPLER_PARAMS {
        return Err(invalid(
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
                return Err(invalid(
                    "sampler_params",
                    format!("names are 1 to {MAX_PARAM_NAME} of [a-z0-9_]"),
                ));
            }
            match v.as_f64() {
                Some(x) if x.is_finite() => Ok((name.clone(), x)),
                _ => Err(invalid(
                    format!("sampler_params.{name}"),
                    format!("must be a number, got {}", type_name(v)),
                )),
            }
        })
        .collect()
}

#[cfg(test)]
#[path = "execute_tests.rs"]
mod tests;
