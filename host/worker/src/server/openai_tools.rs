//! `tools` and `tool_choice` of `/v1/chat/completions`: a tool call is produced through the
//! constraint machinery, so its arguments always parse and match the function's
//! `parameters` schema.
//!
//! - `tool_choice: "none"` (or no tools): plain text.
//! - a named function (`{"type": "function", "function": {"name": ...}}`), or `"required"` with
//!   one tool: the output is constrained to that function's `parameters` and becomes the
//!   call's `arguments` (streamed as they are generated).
//! - `"required"` with several tools: the output is constrained to
//!   `{"name": <one of them>, "arguments": <its parameters>}` and becomes one call (sent
//!   whole when the choice ends).
//! - `"auto"`, or tools without `tool_choice` (OpenAI's default `auto`): the model decides, by
//!   its own tool-call marker ([`CallFormat`], read off the chat template: Hermes/Qwen
//!   `<tool_call>`, Llama 3.x's bare `{"name": ..., "parameters": ...}`). The output is free
//!   text unless it begins with the marker; from the marker on it is constrained to
//!   `{"name": <one of the tools>, <arguments key>: <its parameters>}` like `"required"`
//!   (llama.cpp's "lazy grammar"). A template with no marker this worker knows is refused with a
//!   400 naming `tool_choice`: free text is never passed off as a call.
//!
//! How the switch stays within the constraint contract (`wit/constraint.wit`): a constraint
//! follows whole tokens from the start of what it constrains, so the call's constraint can only
//! start at a token boundary. Until the trigger is decided, a `regex` constraint
//! ([`trigger_regex`]) keeps the output either a prefix of the marker, the marker exactly, or
//! text that does not begin with it: a token that runs past the marker's end (`>\n{`) is
//! refused there, so the marker always ends on a token boundary. Once the output is plain text,
//! no constraint is left (nothing is masked); once it is the marker, the call's constraint takes
//! over (given the marker's tokens first when the marker is the call's own `{`). The
//! scheduler's side is `scheduler/sequence.rs` (`ToolPhase`).
//!
//! The tools go to the chat template as `tools` when the template reads that variable (Hugging
//! Face's convention); for one that does not, the model sees no tool list, and an earlier
//! assistant turn's calls are given to it as JSON text.

use serde_json::{Map, Value, json};

use super::error::AppError;
use crate::job::{BUILTIN_CONSTRAINT, ConstraintSpec, ToolTrigger};

/// Most tools one request may list (OpenAI's bound).
pub const MAX_TOOLS: usize = 128;
const FIELD: &str = "tools";

/// How a model family writes a tool call, as far as `tool_choice: "auto"` needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallFormat {
    /// The family, for messages.
    pub family: &'static str,
    /// The text a call begins with.
    pub marker: &'static str,
    /// Whether the marker is the call JSON's own first byte (kept) rather than a tag before
    /// it (dropped).
    pub marker_in_call: bool,
    /// The key of the call's arguments object.
    pub arguments_key: &'static str,
}

/// Hermes-style calls (Qwen 2.5 / 3, Hermes, SmolLM3): `<tool_call>{"name": ..., "arguments":
/// ...}</tool_call>`. The closing tag is not generated: the call ends with its JSON.
pub const HERMES: CallFormat = CallFormat {
    family: "Hermes/Qwen `<tool_call>`",
    marker: "<tool_call>",
    marker_in_call: false,
    arguments_key: "arguments",
};

/// Llama 3.1 / 3.2 custom tools: the answer is a bare `{"name": ..., "parameters": ...}`, so an
/// output that begins with `{` is a call.
pub const LLAMA3_JSON: CallFormat = CallFormat {
    family: "Llama 3.x JSON",
    marker: "{",
    marker_in_call: true,
    arguments_key: "parameters",
};

/// The tool-call format a chat template teaches its model, read off the template's text:
/// `<tool_call>` (Hermes/Qwen), or Llama 3.x's instruction to answer
/// `{"name": function name, "parameters": ...}`. `None`: no format this worker knows.
pub fn call_format(template: &str) -> Option<CallFormat> {
    if template.contains("<tool_call>") {
        Some(HERMES)
    } else if template.contains("\"parameters\": dictionary of argument name") {
        Some(LLAMA3_JSON)
    } else {
        None
    }
}

/// The regular expression an `auto` output follows until its trigger is decided: `marker`
/// exactly, a prefix of it, or any text that departs from it (and then anything). The one
/// thing it refuses is text that begins with the whole marker and goes on: the call's
/// constraint must start where the marker ends, on a token boundary.
pub fn trigger_regex(marker: &str) -> String {
    // Innermost first: after the whole marker, nothing more.
    let mut tail = String::new();
    for c in marker.chars().rev() {
        let lit = escape(c);
        tail = format!("(?:[^{lit}](?s:.)*|{lit}{tail})?");
    }
    tail
}

/// `c` as a regex literal (also inside a class).
fn escape(c: char) -> String {
    if c.is_ascii_alphanumeric() || c == '_' || c == '<' || c == '>' {
        c.to_string()
    } else if c.is_ascii_punctuation() {
        format!("\\{c}")
    } else {
        format!("\\x{{{:x}}}", c as u32)
    }
}

/// How a choice's output becomes a tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolCallMode {
    /// The output is the arguments of a call of this function.
    Named(String),
    /// The output is `{"name", "arguments"}` of a call of any listed function.
    Choose,
    /// `tool_choice: "auto"`: text, or (the job's `tool_call` tokens) a call
    /// `{"name", <format's arguments key>}` of any listed function.
    Auto(CallFormat),
}

/// A request's tools, checked.
#[derive(Debug, Default)]
pub struct Tools {
    /// The `tools` list as the chat template receives it (empty: none).
    pub list: Vec<Value>,
    /// `None`: plain text.
    pub mode: Option<ToolCallMode>,
    /// The constraint that produces the call.
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

/// Check `tools` and `tool_choice` and decide how the answer is produced; `format` is the chat
/// template's tool-call format (for `auto`).
pub fn parse(
    tools: Option<&Value>,
    choice: Option<&Value>,
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
    let auto = || -> Result<Tools, AppError> {
        let Some(format) = format else {
            return Err(AppError::invalid(
                choice_field,
                "`auto` (the default when tools are given) needs the model's tool-call marker, \
                 and this model's chat template shows none this worker knows (Hermes/Qwen \
                 `<tool_call>`, Llama 3.x JSON): send `required`, a named function \
                 ({\"type\": \"function\", \"function\": {\"name\": ...}}) or `none`",
            ));
        };
        Ok(Tools {
            constraint: Some(constraint(&choose_schema(&parsed, format.arguments_key)?)),
            trigger: Some(ToolTrigger {
                marker: format.marker.to_string(),
                marker_in_call: format.marker_in_call,
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
        Some(Value::String(s)) if s == "required" => {
            if parsed.len() == 1 {
                return named(&parsed[0].0);
            }
            Ok(Tools {
                constraint: Some(constraint(&choose_schema(&parsed, "arguments")?)),
                list,
                mode: Some(ToolCallMode::Choose),
                trigger: None,
            })
        }
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

/// A fresh tool-call id (`call_` and 24 hex digits, OpenAI's form).
pub fn call_id() -> String {
    format!("call_{:024x}", rand::random::<u128>() >> 32)
}

/// The call a finished `Choose` (or `Auto`) output names: `(name, arguments as JSON text)`,
/// the arguments under `key`; `None` when the output is not a whole call (cut by
/// `max_tokens`).
pub fn chosen_call(output: &str, key: &str) -> Option<(String, String)> {
    let v: Value = serde_json::from_str(output).ok()?;
    let name = v.get("name")?.as_str()?.to_string();
    Some((name, v.get(key)?.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(parse(None, None, None).unwrap().mode.is_none());
        let none = parse(Some(&tools), Some(&json!("none")), None).unwrap();
        assert!(none.mode.is_none() && none.constraint.is_none() && none.list.len() == 2);
        let named = parse(
            Some(&tools),
            Some(&json!({"type": "function", "function": {"name": "get_weather"}})),
            None,
        )
        .unwrap();
        assert_eq!(named.mode, Some(ToolCallMode::Named("get_weather".into())));
        let spec: Value = serde_json::from_str(&named.constraint.unwrap().spec).unwrap();
        assert_eq!(spec["required"], json!(["city"]));
        let req = parse(Some(&tools), Some(&json!("required")), None).unwrap();
        assert_eq!(req.mode, Some(ToolCallMode::Choose));
        let spec: Value = serde_json::from_str(&req.constraint.unwrap().spec).unwrap();
        assert_eq!(spec["anyOf"].as_array().unwrap().len(), 2);
        assert_eq!(spec["$defs"]["tz"]["enum"], json!(["UTC", "CET"]));
        assert!(
            spec["anyOf"][1]["properties"]["arguments"]
                .get("$defs")
                .is_none()
        );
        let one = parse(Some(&json!([weather()])), Some(&json!("required")), None).unwrap();
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
            let e = parse(t.as_ref(), c.as_ref(), None).unwrap_err();
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
            let auto = parse(Some(&tools), choice.as_ref(), Some(LLAMA3_JSON)).unwrap();
            assert_eq!(auto.mode, Some(ToolCallMode::Auto(LLAMA3_JSON)));
            let trigger = auto.trigger.unwrap();
            assert_eq!(
                (trigger.marker.as_str(), trigger.marker_in_call),
                ("{", true)
            );
            let spec: Value = serde_json::from_str(&auto.constraint.unwrap().spec).unwrap();
            let keys: Vec<&String> = spec["anyOf"][0]["properties"]
                .as_object()
                .unwrap()
                .keys()
                .collect();
            assert_eq!(keys, ["name", "parameters"], "the family's key, name first");
        }
        // No tools: `auto` is plain text.
        let none = parse(None, Some(&json!("auto")), None).unwrap();
        assert!(none.mode.is_none() && none.trigger.is_none());
        let t = "{% for m in messages %}<tool_call>{% endfor %}";
        assert_eq!(call_format(t), Some(HERMES));
        assert_eq!(call_format("{{ messages }}"), None);
    }

    /// The trigger regex as the constraint plugin reads it (regex-syntax, whole match).
    fn matches(re: &str, text: &str) -> bool {
        let re = regex_automata::dfa::regex::Regex::new(&format!("^(?:{re})$")).unwrap();
        re.is_match(text)
    }

    #[test]
    fn the_trigger_regex_stops_at_the_marker_or_departs_from_it() {
        let re = trigger_regex("<tool_call>");
        for ok in [
            "",
            "<",
            "<tool",
            "<tool_call>",
            "Hello",
            "<b>bold</b>",
            "<toolbox\n",
            "日本",
        ] {
            assert!(matches(&re, ok), "{ok:?}");
        }
        for refused in ["<tool_call>\n", "<tool_call>{", "<tool_call><tool_call>"] {
            assert!(!matches(&re, refused), "{refused:?}");
        }
        let re = trigger_regex("{");
        assert!(matches(&re, "{") && matches(&re, "Sure") && matches(&re, ""));
        assert!(!matches(&re, "{\"name\""));
        let re = trigger_regex("<|python_tag|>");
        assert!(matches(&re, "<|python") && matches(&re, "<|python_tag|>"));
        assert!(!matches(&re, "<|python_tag|>x"));
    }

    #[test]
    fn a_chosen_call_is_read_back() {
        assert_eq!(
            chosen_call(
                r#"{"name":"get_time","arguments":{"tz":"UTC"}}"#,
                "arguments"
            ),
            Some(("get_time".into(), r#"{"tz":"UTC"}"#.into()))
        );
        assert_eq!(chosen_call(r#"{"name":"get_ti"#, "arguments"), None);
        assert_eq!(
            chosen_call(r#"{"name":"f","parameters":{}}"#, "parameters"),
            Some(("f".into(), "{}".into()))
        );
        assert!(call_id().starts_with("call_") && call_id().len() == 29);
    }
}
