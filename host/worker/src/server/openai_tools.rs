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
//! - `"auto"`, or tools without `tool_choice` (OpenAI's default `auto`): refused with a 400
//!   naming `tool_choice`. Deciding whether to call needs the model's own tool-call markers,
//!   which differ per model; this worker does not guess them.
//!
//! The tools go to the chat template as `tools` when the template reads that variable (Hugging
//! Face's convention); for one that does not, the model sees no tool list, and an earlier
//! assistant turn's calls are given to it as JSON text.

use serde_json::{Map, Value, json};

use super::error::AppError;
use crate::job::{BUILTIN_CONSTRAINT, ConstraintSpec};

/// Most tools one request may list (OpenAI's bound).
pub const MAX_TOOLS: usize = 128;
const FIELD: &str = "tools";

/// How a choice's output becomes a tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolCallMode {
    /// The output is the arguments of a call of this function.
    Named(String),
    /// The output is `{"name", "arguments"}` of a call of any listed function.
    Choose,
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

/// The schema of `{"name": <one of the tools>, "arguments": <its parameters>}`; each tool's
/// `$defs` move to the root so that their `#/$defs/...` references still resolve.
fn choose_schema(tools: &[(String, Value)]) -> Result<Value, AppError> {
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
                            "two tools define `$defs/{k}`; with `tool_choice: \"required\"` their definitions share one namespace"
                        ),
                    ));
                }
            }
        }
        branches.push(json!({
            "type": "object",
            "properties": {"name": {"const": name}, "arguments": params},
            "required": ["name", "arguments"],
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

/// Check `tools` and `tool_choice` and decide how the answer is produced.
pub fn parse(tools: Option<&Value>, choice: Option<&Value>) -> Result<Tools, AppError> {
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
    let auto = || {
        AppError::invalid(
            choice_field,
            "`auto` (the default when tools are given) is not supported by this worker: send \
             `required`, a named function ({\"type\": \"function\", \"function\": {\"name\": ...}}) \
             or `none`",
        )
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
        })
    };
    match choice {
        None | Some(Value::Null) if parsed.is_empty() => Ok(Tools::default()),
        None | Some(Value::Null) => Err(auto()),
        Some(Value::String(s)) if s == "none" => Ok(Tools {
            list,
            ..Tools::default()
        }),
        Some(Value::String(s)) if s == "auto" => Err(auto()),
        Some(_) if parsed.is_empty() => Err(AppError::invalid(
            choice_field,
            "asks for a tool call but `tools` lists none",
        )),
        Some(Value::String(s)) if s == "required" => {
            if parsed.len() == 1 {
                return named(&parsed[0].0);
            }
            Ok(Tools {
                constraint: Some(constraint(&choose_schema(&parsed)?)),
                list,
                mode: Some(ToolCallMode::Choose),
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
                    "must be `none`, `required` or {\"type\": \"function\", \"function\": {\"name\": ...}}",
                )),
            }
        }
        Some(_) => Err(AppError::invalid(
            choice_field,
            "must be `none`, `required` or {\"type\": \"function\", \"function\": {\"name\": ...}}",
        )),
    }
}

/// A fresh tool-call id (`call_` and 24 hex digits, OpenAI's form).
pub fn call_id() -> String {
    format!("call_{:024x}", rand::random::<u128>() >> 32)
}

/// The call a finished `Choose` output names: `(name, arguments as JSON text)`; `None` when
/// the output is not a whole call (cut by `max_tokens`).
pub fn chosen_call(output: &str) -> Option<(String, String)> {
    let v: Value = serde_json::from_str(output).ok()?;
    let name = v.get("name")?.as_str()?.to_string();
    Some((name, v.get("arguments")?.to_string()))
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
        assert!(parse(None, None).unwrap().mode.is_none());
        let none = parse(Some(&tools), Some(&json!("none"))).unwrap();
        assert!(none.mode.is_none() && none.constraint.is_none() && none.list.len() == 2);
        let named = parse(
            Some(&tools),
            Some(&json!({"type": "function", "function": {"name": "get_weather"}})),
        )
        .unwrap();
        assert_eq!(named.mode, Some(ToolCallMode::Named("get_weather".into())));
        let spec: Value = serde_json::from_str(&named.constraint.unwrap().spec).unwrap();
        assert_eq!(spec["required"], json!(["city"]));
        let req = parse(Some(&tools), Some(&json!("required"))).unwrap();
        assert_eq!(req.mode, Some(ToolCallMode::Choose));
        let spec: Value = serde_json::from_str(&req.constraint.unwrap().spec).unwrap();
        assert_eq!(spec["anyOf"].as_array().unwrap().len(), 2);
        assert_eq!(spec["$defs"]["tz"]["enum"], json!(["UTC", "CET"]));
        assert!(
            spec["anyOf"][1]["properties"]["arguments"]
                .get("$defs")
                .is_none()
        );
        let one = parse(Some(&json!([weather()])), Some(&json!("required"))).unwrap();
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
            let e = parse(t.as_ref(), c.as_ref()).unwrap_err();
            assert_eq!(
                e.field.as_deref(),
                Some(field),
                "{t:?} {c:?}: {}",
                e.message
            );
        }
    }

    #[test]
    fn a_chosen_call_is_read_back() {
        assert_eq!(
            chosen_call(r#"{"name":"get_time","arguments":{"tz":"UTC"}}"#),
            Some(("get_time".into(), r#"{"tz":"UTC"}"#.into()))
        );
        assert_eq!(chosen_call(r#"{"name":"get_ti"#), None);
        assert!(call_id().starts_with("call_") && call_id().len() == 29);
    }
}
