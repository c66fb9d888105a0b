//! Longer than 600 lines with its unit tests (the code is the first ~420): the formats
//! themselves are in `tool_formats.rs`.
//!
//! `tools` and `tool_choice` of `/v1/chat/completions`: a tool call is produced through the
//! constraint machinery, so its arguments always parse and match the function's
//! `parameters` schema.
//!
//! - `tool_choice: "none"` (or no tools): plain text.
//! - a named function (`{"type": "function", "function": {"name": ...}}`): exactly one call of
//!   it; the output is constrained to that function's `parameters` and becomes the call's
//!   `arguments` (streamed as they are generated).
//! - `"required"`: at least one call. With a chat template whose tool-call format this worker
//!   knows ([`CallFormat`](super::tool_formats::CallFormat)), the output is the model's own calls from the first byte (see
//!   below, without the choice to answer in text); with none, one tool is a named call and
//!   several constrain the output to `{"name": <one of them>, "arguments": <its parameters>}`,
//!   one call (sent whole when the choice ends).
//! - `"auto"`, or tools without `tool_choice` (OpenAI's default `auto`): the model decides, by
//!   its own tool-call marker ([`CallFormat`], read off the chat template: Hermes/Qwen
//!   `<tool_call>`, Mistral's `[TOOL_CALLS]` list, Llama 3.x's bare `{"name": ...,
//!   "parameters": ...}`). The output is free text unless it begins with the marker; from the
//!   marker on it is constrained to the format's calls ([`calls_regex`](super::tool_formats::calls_regex)), each
//!   `{"name": <one of the tools>, <arguments key>: <its parameters>}` (llama.cpp's "lazy
//!   grammar"). A template with no marker this worker knows, or a format it does not produce,
//!   is refused with a 400 naming `tool_choice` (and the format): free text is never passed
//!   off as a call.
//!
//! Several calls per choice (`parallel_tool_calls`, default true) where the format has them:
//! Hermes/Qwen writes one `<tool_call>...</tool_call>` block per call, Mistral a JSON list
//! after `[TOOL_CALLS]`. Llama 3.x takes one call per turn (its template raises on an
//! assistant turn with more), so it always gets one. `parallel_tool_calls: false` keeps one.
//! The calls are one `regex` constraint over the whole calls text, marker and tags included
//! (the calls' schema compiled to a regular expression by the built-in constraint plugin's own
//! library, then repeated): each step masks with one automaton, as a single call does.
//!
//! How the switch stays within the constraint contract (`wit/constraint.wit`): a constraint
//! follows whole tokens from the start of what it constrains, so the calls' constraint can only
//! start at a token boundary. Until the trigger is decided, a `regex` constraint
//! ([`trigger_regex`](super::tool_formats::trigger_regex)) keeps the output either a prefix of the marker, the marker exactly, or
//! text that does not begin with it: a token that runs past the marker's end (`>\n{`) is
//! refused there, so the marker always ends on a token boundary. Once the output is plain text,
//! no constraint is left (nothing is masked); once it is the marker, the calls' constraint
//! takes over, given the marker's tokens first. The scheduler's side is
//! `scheduler/sequence.rs` (`ToolPhase`).
//!
//! The tools go to the chat template as `tools` when the template reads that variable (Hugging
//! Face's convention); for one that does not, the model sees no tool list, and an earlier
//! assistant turn's calls are given to it as JSON text.

use serde_json::{Map, Value, json};

use super::error::AppError;
use crate::error_code::ErrorCode;
use crate::job::{BUILTIN_CONSTRAINT, ConstraintSpec, ToolTrigger};

use super::tool_formats::{CallFormat, Layout, calls_regex, trigger_regex};

/// Most tools one request may list (OpenAI's bound).
pub const MAX_TOOLS: usize = 128;
const FIELD: &str = "tools";

/// How a choice's output becomes tool calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolCallMode {
    /// The output is the arguments of one call of this function.
    Named(String),
    /// The output is `{"name", "arguments"}` of one call of any listed function (`required`
    /// under a template with no known format).
    Choose,
    /// `required` under a template with a known format: the output is the model's calls
    /// (`calls_regex`), the marker first.
    Calls(CallFormat),
    /// `tool_choice: "auto"`: text, or (the job's `tool_call` tokens) the model's calls.
    Auto(CallFormat),
}

impl ToolCallMode {
    /// The id of a call this mode produced: `call_` and 24 hex digits (OpenAI's form), or 9
    /// letters and digits for Mistral's list form (its template refuses any other id when the
    /// call comes back in the conversation).
    pub fn call_id(&self) -> String {
        match self {
            ToolCallMode::Calls(f) | ToolCallMode::Auto(f) if f.layout == Layout::List => {
                short_call_id()
            }
            _ => call_id(),
        }
    }
}

/// A request's tools, checked.
#[derive(Debug, Default)]
pub struct Tools {
    /// The `tools` list as the chat template receives it (empty: none).
    pub list: Vec<Value>,
    /// `None`: plain text.
    pub mode: Option<ToolCallMode>,
    /// The constraint that produces the calls.
    pub constraint: Option<ConstraintSpec>,
    /// `auto`: the trigger before which the output is free.
    pub trigger: Option<ToolTrigger>,
}

fn well_named(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// One `tools[i]`: its function's name and parameters schema.
fn tool(i: usize, v: &Value) -> Result<(String, Value), AppError> {
    let at = format!("{FIELD}[{i}]");
    let bad = |field: &str, m: &str| AppError::invalid(field, m);
    let obj = v.as_object().ok_or_else(|| bad(&at, "must be an object"))?;
    if let Some(k) = obj
        .keys()
        .find(|k| !["type", "function"].contains(&k.as_str()))
    {
        let shown: String = k.chars().take(64).collect();
        return Err(bad(&format!("{at}.{shown}"), "unknown field"));
    }
    if obj.get("type").and_then(Value::as_str) != Some("function") {
        return Err(bad(&format!("{at}.type"), "must be `function`"));
    }
    let f = obj
        .get("function")
        .and_then(Value::as_object)
        .ok_or_else(|| bad(&format!("{at}.function"), "must be an object"))?;
    if let Some(k) = f
        .keys()
        .find(|k| !["name", "description", "parameters", "strict"].contains(&k.as_str()))
    {
        let shown: String = k.chars().take(64).collect();
        return Err(bad(&format!("{at}.function.{shown}"), "unknown field"));
    }
    let name = f
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| well_named(n))
        .ok_or_else(|| {
            bad(
                &format!("{at}.function.name"),
                "must be 1-64 of a-z, A-Z, 0-9, _ and -",
            )
        })?;
    if !matches!(
        f.get("description"),
        None | Some(Value::Null | Value::String(_))
    ) {
        return Err(bad(
            &format!("{at}.function.description"),
            "must be a string",
        ));
    }
    if !matches!(f.get("strict"), None | Some(Value::Null | Value::Bool(_))) {
        return Err(bad(&format!("{at}.function.strict"), "must be a boolean"));
    }
    let parameters = match f.get("parameters") {
        None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
        Some(p @ Value::Object(_)) => p.clone(),
        Some(_) => {
            return Err(bad(
                &format!("{at}.function.parameters"),
                "must be a JSON Schema object",
            ));
        }
    };
    Ok((name.to_string(), parameters))
}

/// The schema of `{"name": <one of the tools>, <key>: <its parameters>}` (`key`: `arguments`,
/// or the format's); each tool's `$defs` move to the root so that their `#/$defs/...`
/// references still resolve.
fn choose_schema(tools: &[(String, Value)], key: &str) -> Result<Value, AppError> {
    let mut defs = Map::new();
    let mut branches = Vec::new();
    for (name, params) in tools {
        let mut params = params.clone();
        if let Some(Value::Object(d)) = params.as_object_mut().and_then(|p| p.remove("$defs")) {
            for (k, v) in d {
                if defs.insert(k.clone(), v).is_some() {
                    return Err(AppError::invalid(
                        FIELD,
                        format!(
                            "two tools define `$defs/{k}`; when the model chooses the tool their definitions share one namespace"
                        ),
                    ));
                }
            }
        }
        let mut properties = Map::new();
        properties.insert("name".into(), json!({ "const": name }));
        properties.insert(key.into(), params);
        branches.push(json!({
            "type": "object",
            "properties": properties,
            "required": ["name", key],
            "additionalProperties": false,
        }));
    }
    let mut schema = json!({ "anyOf": branches });
    if !defs.is_empty() {
        schema["$defs"] = Value::Object(defs);
    }
    Ok(schema)
}

fn constraint(schema: &Value) -> ConstraintSpec {
    ConstraintSpec {
        plugin: BUILTIN_CONSTRAINT.into(),
        kind: "json-schema".into(),
        spec: schema.to_string(),
        field: FIELD.into(),
    }
}

/// The constraint of a choice's calls in `format` (see [`calls_regex`](super::tool_formats::calls_regex)): the tools' choice
/// schema compiled to a regex by the built-in constraint plugin's library (a schema it cannot
/// enforce is a 400 naming `tools`, as the plugin's own refusal would be).
fn calls_constraint(
    tools: &[(String, Value)],
    format: CallFormat,
    several: bool,
) -> Result<ConstraintSpec, AppError> {
    let schema = choose_schema(tools, format.arguments_key)?;
    let call = orcd_constraint::schema::schema_regex(&schema)
        .map_err(|e| AppError::invalid(FIELD, e.to_string()))?;
    Ok(ConstraintSpec {
        plugin: BUILTIN_CONSTRAINT.into(),
        kind: "regex".into(),
        spec: calls_regex(format, &call, several),
        field: FIELD.into(),
    })
}

/// Check `tools` and `tool_choice` and decide how the answer is produced; `several`:
/// `parallel_tool_calls` (more than one call allowed where the format has them); `format` is
/// the chat template's tool-call format.
pub fn parse(
    tools: Option<&Value>,
    choice: Option<&Value>,
    several: bool,
    format: Option<CallFormat>,
) -> Result<Tools, AppError> {
    let list: Vec<Value> = match tools {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err(AppError::invalid(FIELD, "must be an array")),
    };
    if list.len() > MAX_TOOLS {
        return Err(AppError::invalid(
            FIELD,
            format!("at most {MAX_TOOLS} tools, got {}", list.len()),
        ));
    }
    let parsed = list
        .iter()
        .enumerate()
        .map(|(i, v)| tool(i, v))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, (name, _)) in parsed.iter().enumerate() {
        if parsed[..i].iter().any(|(n, _)| n == name) {
            return Err(AppError::invalid(
                FIELD,
                format!("the function `{name}` is listed twice"),
            ));
        }
    }
    let choice_field = "tool_choice";
    let refused = |f: CallFormat| {
        AppError::invalid(
            choice_field,
            format!(
                "this model's chat template writes tool calls in the {} form, which this \
                 worker does not produce: send a named function \
                 ({{\"type\": \"function\", \"function\": {{\"name\": ...}}}}) or `none`",
                f.family
            ),
        )
    };
    let auto = || -> Result<Tools, AppError> {
        let Some(format) = format else {
            return Err(AppError::invalid(
                choice_field,
                "`auto` (the default when tools are given) needs the model's tool-call marker, \
                 and this model's chat template shows none this worker knows (Hermes/Qwen \
                 `<tool_call>`, Mistral `[TOOL_CALLS]` list, Llama 3.x JSON): send `required`, \
                 a named function ({\"type\": \"function\", \"function\": {\"name\": ...}}) \
                 or `none`",
            ));
        };
        if format.layout == Layout::Refused {
            return Err(refused(format));
        }
        Ok(Tools {
            constraint: Some(calls_constraint(&parsed, format, several)?),
            trigger: Some(ToolTrigger {
                marker: format.marker.to_string(),
                regex: trigger_regex(format.marker),
            }),
            list: list.clone(),
            mode: Some(ToolCallMode::Auto(format)),
        })
    };
    let named = |name: &str| -> Result<Tools, AppError> {
        let Some((_, params)) = parsed.iter().find(|(n, _)| n == name) else {
            let shown: String = name.chars().take(64).collect();
            return Err(AppError::invalid(
                choice_field,
                format!("names `{shown}`, which is not in `tools`"),
            ));
        };
        Ok(Tools {
            list: list.clone(),
            mode: Some(ToolCallMode::Named(name.to_string())),
            constraint: Some(constraint(params)),
            trigger: None,
        })
    };
    match choice {
        None | Some(Value::Null) if parsed.is_empty() => Ok(Tools::default()),
        Some(Value::String(s)) if s == "none" || (s == "auto" && parsed.is_empty()) => Ok(Tools {
            list,
            ..Tools::default()
        }),
        None | Some(Value::Null) => auto(),
        Some(Value::String(s)) if s == "auto" => auto(),
        Some(_) if parsed.is_empty() => Err(AppError::invalid(
            choice_field,
            "asks for a tool call but `tools` lists none",
        )),
        Some(Value::String(s)) if s == "required" => match format {
            Some(f) if f.layout == Layout::Refused => Err(refused(f)),
            // The model's own calls, from the marker on.
            Some(f) => Ok(Tools {
                constraint: Some(calls_constraint(&parsed, f, several)?),
                list,
                mode: Some(ToolCallMode::Calls(f)),
                trigger: None,
            }),
            None if parsed.len() == 1 => named(&parsed[0].0),
            None => Ok(Tools {
                constraint: Some(constraint(&choose_schema(&parsed, "arguments")?)),
                list,
                mode: Some(ToolCallMode::Choose),
                trigger: None,
            }),
        },
        Some(Value::Object(o)) => {
            let name = (o.get("type").and_then(Value::as_str) == Some("function"))
                .then(|| o.get("function")?.get("name")?.as_str())
                .flatten();
            match name {
                Some(n) if o.len() == 2 => named(n),
                _ => Err(AppError::invalid(
                    choice_field,
                    "must be `none`, `auto`, `required` or {\"type\": \"function\", \"function\": {\"name\": ...}}",
                )),
            }
        }
        Some(_) => Err(AppError::invalid(
            choice_field,
            "must be `none`, `auto`, `required` or {\"type\": \"function\", \"function\": {\"name\": ...}}",
        )),
    }
}

/// Refuse a format whose marker the output cannot show: the trigger and the calls'
/// constraint read the output's text, and a control token (Mistral Nemo's vocabulary holds
/// `[TOOL_CALLS]` as one) streams as nothing, so the model's calls would come out as text.
/// The marker must tokenize (special tokens parsed, as a model writes them) into tokens whose
/// pieces spell it.
pub async fn check_marker_shows(
    tokenizer: std::sync::Arc<dyn crate::plugins::Tokenizer>,
    tools: &Tools,
) -> Result<(), AppError> {
    let format = match &tools.mode {
        Some(ToolCallMode::Auto(f) | ToolCallMode::Calls(f)) => *f,
        _ => return Ok(()),
    };
    let shown = tokio::task::spawn_blocking(move || {
        let mut spelled = Vec::new();
        for id in tokenizer.encode_with(format.marker, true, false)? {
            spelled.extend(tokenizer.piece(id)?);
        }
        Ok::<_, crate::plugins::PluginFailure>(spelled == format.marker.as_bytes())
    })
    .await
    .map_err(|e| AppError::new(ErrorCode::Internal, format!("tokenizer task failed: {e}")))??;
    if shown {
        return Ok(());
    }
    Err(AppError::invalid(
        "tool_choice",
        format!(
            "this model's vocabulary holds the {} marker `{}` as a control token, which its \
             output stream does not show, so its calls cannot be read: send a named function \
             ({{\"type\": \"function\", \"function\": {{\"name\": ...}}}}) or `none`",
            format.family, format.marker
        ),
    ))
}

/// A fresh tool-call id (`call_` and 24 hex digits, OpenAI's form).
pub fn call_id() -> String {
    format!("call_{:024x}", rand::random::<u128>() >> 32)
}

/// A fresh 9-character id of letters and digits (the form Mistral's templates require).
fn short_call_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..9)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::tool_formats::tests::matches;
    use crate::server::tool_formats::{
        HERMES, LLAMA3_JSON, MISTRAL_ARGS, MISTRAL_LIST, call_format, read_calls,
    };

    fn weather() -> Value {
        json!({"type": "function", "function": {"name": "get_weather", "parameters":
            {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})
    }

    fn time() -> Value {
        json!({"type": "function", "function": {"name": "get_time", "description": "now",
            "parameters": {"type": "object", "properties": {"tz": {"$ref": "#/$defs/tz"}},
            "required": ["tz"], "$defs": {"tz": {"enum": ["UTC", "CET"]}}}}})
    }

    #[test]
    fn modes_follow_tool_choice() {
        let tools = json!([weather(), time()]);
        assert!(parse(None, None, true, None).unwrap().mode.is_none());
        let none = parse(Some(&tools), Some(&json!("none")), true, None).unwrap();
        assert!(none.mode.is_none() && none.constraint.is_none() && none.list.len() == 2);
        let named = parse(
            Some(&tools),
            Some(&json!({"type": "function", "function": {"name": "get_weather"}})),
            true,
            None,
        )
        .unwrap();
        assert_eq!(named.mode, Some(ToolCallMode::Named("get_weather".into())));
        let spec: Value = serde_json::from_str(&named.constraint.unwrap().spec).unwrap();
        assert_eq!(spec["required"], json!(["city"]));
        let req = parse(Some(&tools), Some(&json!("required")), true, None).unwrap();
        assert_eq!(req.mode, Some(ToolCallMode::Choose));
        let spec: Value = serde_json::from_str(&req.constraint.unwrap().spec).unwrap();
        assert_eq!(spec["anyOf"].as_array().unwrap().len(), 2);
        assert_eq!(spec["$defs"]["tz"]["enum"], json!(["UTC", "CET"]));
        assert!(
            spec["anyOf"][1]["properties"]["arguments"]
                .get("$defs")
                .is_none()
        );
        let one = parse(
            Some(&json!([weather()])),
            Some(&json!("required")),
            true,
            None,
        )
        .unwrap();
        assert_eq!(one.mode, Some(ToolCallMode::Named("get_weather".into())));
    }

    #[test]
    fn refusals_name_the_field() {
        let tools = json!([weather()]);
        for (t, c, field) in [
            (Some(tools.clone()), None, "tool_choice"),
            (Some(tools.clone()), Some(json!("auto")), "tool_choice"),
            (None, Some(json!("required")), "tool_choice"),
            (
                Some(tools.clone()),
                Some(json!({"type": "function", "function": {"name": "nope"}})),
                "tool_choice",
            ),
            (Some(json!({})), None, "tools"),
            (
                Some(json!([weather(), weather()])),
                Some(json!("none")),
                "tools",
            ),
            (
                Some(json!([{"type": "retrieval"}])),
                Some(json!("none")),
                "tools[0].type",
            ),
            (
                Some(json!([{"type": "function", "function": {"name": "a b"}}])),
                Some(json!("none")),
                "tools[0].function.name",
            ),
            (
                Some(json!([{"type": "function", "function": {"name": "f", "params": {}}}])),
                Some(json!("none")),
                "tools[0].function.params",
            ),
        ] {
            let e = parse(t.as_ref(), c.as_ref(), true, None).unwrap_err();
            assert_eq!(
                e.field.as_deref(),
                Some(field),
                "{t:?} {c:?}: {}",
                e.message
            );
        }
    }

    #[test]
    fn auto_follows_the_templates_format() {
        let tools = json!([weather(), time()]);
        for choice in [None, Some(json!("auto"))] {
            let auto = parse(Some(&tools), choice.as_ref(), true, Some(LLAMA3_JSON)).unwrap();
            assert_eq!(auto.mode, Some(ToolCallMode::Auto(LLAMA3_JSON)));
            let trigger = auto.trigger.unwrap();
            assert_eq!(trigger.marker, "{");
            let spec = auto.constraint.unwrap();
            assert_eq!(spec.kind, "regex");
            assert!(matches(
                &spec.spec,
                r#"{"name":"get_weather","parameters":{"city":"Oslo"}}"#
            ));
            assert!(
                !matches(
                    &spec.spec,
                    r#"{"name":"get_weather","arguments":{"city":"Oslo"}}"#
                ),
                "the family's key"
            );
        }
        // No tools: `auto` is plain text.
        let none = parse(None, Some(&json!("auto")), true, None).unwrap();
        assert!(none.mode.is_none() && none.trigger.is_none());
        let t = "{% for m in messages %}<tool_call>{% endfor %}";
        assert_eq!(call_format(t), Some(HERMES));
        assert_eq!(call_format("{{ messages }}"), None);
    }

    /// The calls' regex of `format` over the weather and time tools.
    fn calls_spec(choice: &str, several: bool, format: CallFormat) -> ConstraintSpec {
        let tools = json!([weather(), time()]);
        let t = parse(Some(&tools), Some(&json!(choice)), several, Some(format)).unwrap();
        t.constraint.unwrap()
    }

    const PARIS: &str = r#"{"name":"get_weather","arguments":{"city":"Paris"}}"#;
    const UTC: &str = r#"{"name":"get_time","arguments":{"tz":"UTC"}}"#;

    #[test]
    fn hermes_calls_are_tagged_blocks_one_or_several() {
        let several = calls_spec("auto", true, HERMES);
        assert_eq!(several.kind, "regex");
        let one = calls_spec("auto", false, HERMES);
        let block = |c: &str| format!("<tool_call>\n{c}\n</tool_call>");
        let two = format!("{}\n{}", block(PARIS), block(UTC));
        for (text, in_several, in_one) in [
            (block(PARIS), true, true),
            (format!("<tool_call>{PARIS}</tool_call>"), true, true),
            (two.clone(), true, false),
            (format!("{two}\n{}", block(PARIS)), true, false),
            // The closing tag is part of each call.
            (format!("<tool_call>{PARIS}"), false, false),
            // Each call follows its own tool's schema.
            (
                block(r#"{"name":"get_time","arguments":{"tz":"PST"}}"#),
                false,
                false,
            ),
            (String::new(), false, false),
        ] {
            assert_eq!(matches(&several.spec, &text), in_several, "{text:?}");
            assert_eq!(matches(&one.spec, &text), in_one, "{text:?}");
        }
        let calls = read_calls(&two, HERMES).unwrap();
        assert_eq!(
            calls,
            [
                ("get_weather".to_string(), r#"{"city":"Paris"}"#.to_string()),
                ("get_time".to_string(), r#"{"tz":"UTC"}"#.to_string())
            ]
        );
        assert_eq!(read_calls(&format!("<tool_call>{PARIS}"), HERMES), None);
        assert_eq!(read_calls("<tool_call>{\"name\":", HERMES), None);
        // `required` under a known format: the same calls, no trigger.
        let tools = json!([weather(), time()]);
        let req = parse(Some(&tools), Some(&json!("required")), true, Some(HERMES)).unwrap();
        assert_eq!(req.mode, Some(ToolCallMode::Calls(HERMES)));
        assert!(req.trigger.is_none());
        assert_eq!(req.constraint.unwrap().spec, several.spec);
    }

    #[test]
    fn mistral_calls_are_one_list() {
        let several = calls_spec("auto", true, MISTRAL_LIST);
        let one = calls_spec("required", false, MISTRAL_LIST);
        for (text, in_several, in_one) in [
            (format!("[TOOL_CALLS][{PARIS}]"), true, true),
            (format!("[TOOL_CALLS][{PARIS}, {UTC}]"), true, false),
            (format!("[TOOL_CALLS][{PARIS},{UTC},{PARIS}]"), true, false),
            ("[TOOL_CALLS][]".to_string(), false, false),
            (format!("[{PARIS}]"), false, false),
        ] {
            assert_eq!(matches(&several.spec, &text), in_several, "{text:?}");
            assert_eq!(matches(&one.spec, &text), in_one, "{text:?}");
        }
        let calls = read_calls(&format!("[TOOL_CALLS][{PARIS}, {UTC}]"), MISTRAL_LIST).unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1].0, "get_time");
        assert_eq!(read_calls("[TOOL_CALLS][]", MISTRAL_LIST), None);
        let id = ToolCallMode::Auto(MISTRAL_LIST).call_id();
        assert!(
            id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric()),
            "{id}"
        );
        assert!(ToolCallMode::Auto(HERMES).call_id().starts_with("call_"));
        assert!(call_id().starts_with("call_") && call_id().len() == 29);
    }

    #[test]
    fn formats_are_read_off_templates_and_unproduced_ones_refused_by_name() {
        assert_eq!(
            call_format("{{ '[TOOL_CALLS][' }}{{ tool_call.function|tojson }}"),
            Some(MISTRAL_LIST)
        );
        let later = "[TOOL_CALLS]{{ name }}[ARGS]{{ arguments }}";
        assert_eq!(call_format(later), Some(MISTRAL_ARGS));
        let tools = json!([weather()]);
        for choice in ["auto", "required"] {
            let e =
                parse(Some(&tools), Some(&json!(choice)), true, Some(MISTRAL_ARGS)).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("tool_choice"));
            assert!(e.message.contains("[ARGS]"), "{}", e.message);
        }
        // A named function still works: it needs no format.
        let named = json!({"type": "function", "function": {"name": "get_weather"}});
        assert!(parse(Some(&tools), Some(&named), true, Some(MISTRAL_ARGS)).is_ok());
        // Llama 3.x takes one call per turn whatever `parallel_tool_calls` says.
        let llama = parse(Some(&tools), None, true, Some(LLAMA3_JSON)).unwrap();
        let re = llama.constraint.unwrap().spec;
        let call = r#"{"name":"get_weather","parameters":{"city":"Oslo"}}"#;
        assert!(matches(&re, call) && !matches(&re, &format!("{call}{call}")));
    }

    /// A vocabulary with `[TOOL_CALLS]` as one token (id 5) whose piece is `shown`, every
    /// other byte a token of its own.
    struct Vocab {
        shown: &'static str,
    }
    impl crate::plugins::Tokenizer for Vocab {
        fn encode(&self, text: &str) -> Result<Vec<u32>, crate::plugins::PluginFailure> {
            self.encode_with(text, true, false)
        }
        fn encode_with(
            &self,
            text: &str,
            _: bool,
            _: bool,
        ) -> Result<Vec<u32>, crate::plugins::PluginFailure> {
            Ok(match text {
                "[TOOL_CALLS]" => vec![5],
                t => t.bytes().map(|b| 256 + b as u32).collect(),
            })
        }
        fn decode(&self, _: &[u32]) -> Result<Vec<u8>, crate::plugins::PluginFailure> {
            unreachable!("not used")
        }
        fn piece(&self, id: u32) -> Result<Vec<u8>, crate::plugins::PluginFailure> {
            Ok(match id {
                5 => self.shown.as_bytes().to_vec(),
                b => vec![(b - 256) as u8],
            })
        }
        fn decoder(
            &self,
        ) -> Result<Box<dyn crate::plugins::StreamDecoder>, crate::plugins::PluginFailure> {
            unreachable!("not used")
        }
        fn is_end_of_generation(&self, _: u32) -> bool {
            false
        }
        fn kind(&self) -> String {
            "test".into()
        }
    }

    #[tokio::test]
    async fn a_marker_the_output_cannot_show_is_refused() {
        let tools = json!([weather()]);
        let auto = |f| parse(Some(&tools), None, true, Some(f)).unwrap();
        // Mistral Nemo: `[TOOL_CALLS]` is a control token, streamed as nothing.
        let hidden = std::sync::Arc::new(Vocab { shown: "" });
        let e = check_marker_shows(hidden.clone(), &auto(MISTRAL_LIST))
            .await
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("tool_choice"));
        assert!(e.message.contains("[TOOL_CALLS]"), "{}", e.message);
        // Hermes' marker is spelled byte by byte here: shown.
        check_marker_shows(hidden, &auto(HERMES)).await.unwrap();
        let shown = std::sync::Arc::new(Vocab {
            shown: "[TOOL_CALLS]",
        });
        check_marker_shows(shown, &auto(MISTRAL_LIST))
            .await
            .unwrap();
    }
}
