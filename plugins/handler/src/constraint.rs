//! The constraint fields of an `/execute` body: `response_format` (OpenAI's shape:
//! `{"type":"text"}`, `{"type":"json_object"}`, `{"type":"json_schema","json_schema":
//! {"name","schema","strict"}}`), `regex` (the whole output must match) and `grammar` (a GBNF
//! grammar, llama.cpp's notation), at most one of them; and `constraint_plugin`, the constraint
//! plugin that compiles it (default: the built-in `structured`). They become the `constraint`
//! world's kind and spec; whether the schema, expression or grammar can be enforced is the
//! constraint plugin's answer at admission (HTTP 400 naming the field), and whether the plugin
//! is loaded the host's (`PLUGIN_NOT_FOUND` naming `constraint_plugin`).

use serde_json::{Map, Value};

use crate::execute::Invalid;

/// Longest schema (as JSON text), expression or grammar, in bytes.
pub const MAX_SPEC_BYTES: usize = 256 << 10;
/// Longest plugin name (the host's limit on `info().name`).
const MAX_PLUGIN_NAME: usize = 64;

/// A constraint in the `constraint` world's terms (the WIT `constraint-request`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConstraintRequest {
    /// `json-schema`, `json-object`, `regex` or `gbnf`.
    pub kind: String,
    /// The schema as JSON text, the expression, the grammar, or empty.
    pub spec: String,
    /// The body field it came from.
    pub field: String,
    /// The constraint plugin the request names (`constraint_plugin`); `None` for the built-in.
    pub plugin: Option<String>,
}

fn invalid(field: &str, message: &str) -> Invalid {
    Invalid {
        field: field.to_string(),
        message: format!("{field}: {message}"),
    }
}

/// A non-empty string field of at most [`MAX_SPEC_BYTES`] (`regex`, `grammar`) as a request of
/// `kind`.
fn text_spec(
    obj: &Map<String, Value>,
    field: &str,
    kind: &str,
) -> Result<Option<ConstraintRequest>, Invalid> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(r)) if r.is_empty() => Err(invalid(field, "must not be empty")),
        Some(Value::String(r)) if r.len() > MAX_SPEC_BYTES => Err(invalid(
            field,
            &format!("longer than {MAX_SPEC_BYTES} bytes"),
        )),
        Some(Value::String(r)) => Ok(Some(ConstraintRequest {
            kind: kind.into(),
            spec: r.clone(),
            field: field.into(),
            plugin: None,
        })),
        Some(_) => Err(invalid(field, "must be a string")),
    }
}

/// The request's constraint, if it asks for one.
pub fn parse(obj: &Map<String, Value>) -> Result<Option<ConstraintRequest>, Invalid> {
    let format = match obj.get("response_format") {
        None | Some(Value::Null) => None,
        Some(v) => response_format(v)?,
    };
    let mut found = format.into_iter().collect::<Vec<_>>();
    found.extend(text_spec(obj, "regex", "regex")?);
    found.extend(text_spec(obj, "grammar", "gbnf")?);
    if found.len() > 1 {
        return Err(invalid(
            &found[1].field,
            &format!(
                "cannot be combined with {} (one constraint per request)",
                found[0].field
            ),
        ));
    }
    let plugin = match obj.get("constraint_plugin") {
        None | Some(Value::Null) => None,
        Some(Value::String(name))
            if !name.is_empty()
                && name.len() <= MAX_PLUGIN_NAME
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                }) =>
        {
            Some(name.clone())
        }
        Some(_) => {
            return Err(invalid(
                "constraint_plugin",
                &format!("must be a plugin name (1 to {MAX_PLUGIN_NAME} of [a-z0-9_-])"),
            ));
        }
    };
    match (found.pop(), plugin) {
        (None, Some(_)) => Err(invalid(
            "constraint_plugin",
            "names the plugin for a constraint, but the request has none (response_format, \
             regex or grammar)",
        )),
        (Some(c), plugin) => Ok(Some(ConstraintRequest { plugin, ..c })),
        (None, None) => Ok(None),
    }
}

/// `response_format`: `text` (no constraint), `json_object` or `json_schema`.
fn response_format(v: &Value) -> Result<Option<ConstraintRequest>, Invalid> {
    const FIELD: &str = "response_format";
    let Some(obj) = v.as_object() else {
        return Err(invalid(FIELD, "must be an object with a `type`"));
    };
    if let Some(k) = obj
        .keys()
        .find(|k| !["type", "json_schema"].contains(&k.as_str()))
    {
        let shown: String = k.chars().take(64).collect();
        return Err(invalid(FIELD, &format!("unknown field `{shown}`")));
    }
    let request = |kind: &str, spec: String| ConstraintRequest {
        kind: kind.into(),
        spec,
        field: FIELD.into(),
        plugin: None,
    };
    match obj.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(request("json-object", String::new()))),
        Some("json_schema") => {
            let Some(js) = obj.get("json_schema").and_then(Value::as_object) else {
                return Err(invalid(FIELD, "`json_schema` must be an object"));
            };
            for k in js.keys() {
                if !["name", "schema", "strict", "description"].contains(&k.as_str()) {
                    let shown: String = k.chars().take(64).collect();
                    return Err(invalid(
                        FIELD,
                        &format!("unknown field `json_schema.{shown}`"),
                    ));
                }
            }
            match js.get("name").and_then(Value::as_str) {
                Some(n)
                    if !n.is_empty()
                        && n.len() <= 64
                        && n.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') => {}
                _ => {
                    return Err(invalid(
                        FIELD,
                        "`json_schema.name` must be 1-64 of a-z, A-Z, 0-9, _ and -",
                    ));
                }
            }
            if !matches!(js.get("strict"), None | Some(Value::Null | Value::Bool(_))) {
                return Err(invalid(FIELD, "`json_schema.strict` must be a boolean"));
            }
            let Some(schema) = js.get("schema").filter(|s| s.is_object() || s.is_boolean()) else {
                return Err(invalid(
                    FIELD,
                    "`json_schema.schema` must be a JSON Schema object",
                ));
            };
            let spec = schema.to_string();
            if spec.len() > MAX_SPEC_BYTES {
                return Err(invalid(
                    FIELD,
                    &format!("the schema is longer than {MAX_SPEC_BYTES} bytes"),
                ));
            }
            Ok(Some(request("json-schema", spec)))
        }
        _ => Err(invalid(
            FIELD,
            "`type` must be `text`, `json_object` or `json_schema`",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_v(v: Value) -> Result<Option<ConstraintRequest>, Invalid> {
        parse(v.as_object().unwrap())
    }

    #[test]
    fn the_three_shapes_and_regex() {
        assert_eq!(parse_v(json!({})).unwrap(), None);
        assert_eq!(
            parse_v(json!({"response_format": {"type": "text"}})).unwrap(),
            None
        );
        let o = parse_v(json!({"response_format": {"type": "json_object"}}))
            .unwrap()
            .unwrap();
        assert_eq!((o.kind.as_str(), o.spec.as_str()), ("json-object", ""));
        let s = parse_v(
            json!({"response_format": {"type": "json_schema", "json_schema":
            {"name": "p", "strict": true, "schema": {"type": "object"}}}}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (s.kind.as_str(), s.spec.as_str(), s.field.as_str()),
            ("json-schema", r#"{"type":"object"}"#, "response_format")
        );
        let r = parse_v(json!({"regex": "[0-9]+"})).unwrap().unwrap();
        assert_eq!((r.kind.as_str(), r.field.as_str()), ("regex", "regex"));
        assert_eq!(r.plugin, None);
        let g = parse_v(json!({"grammar": "root ::= \"a\"", "constraint_plugin": "mine"}))
            .unwrap()
            .unwrap();
        assert_eq!(
            (g.kind.as_str(), g.field.as_str(), g.plugin.as_deref()),
            ("gbnf", "grammar", Some("mine"))
        );
    }

    #[test]
    fn refusals_name_the_field() {
        for (body, field) in [
            (
                json!({"response_format": {"type": "yaml"}}),
                "response_format",
            ),
            (json!({"response_format": "json"}), "response_format"),
            (
                json!({"response_format": {"type": "json_schema"}}),
                "response_format",
            ),
            (
                json!({"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}}),
                "response_format",
            ),
            (
                json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": 3}}}),
                "response_format",
            ),
            (
                json!({"response_format": {"type": "json_object", "extra": 1}}),
                "response_format",
            ),
            (json!({"regex": 5}), "regex"),
            (json!({"regex": ""}), "regex"),
            (
                json!({"regex": "a", "response_format": {"type": "json_object"}}),
                "regex",
            ),
            (
                json!({"regex": "a", "grammar": "root ::= \"a\""}),
                "grammar",
            ),
            (json!({"grammar": 3}), "grammar"),
            (json!({"grammar": ""}), "grammar"),
            (json!({"constraint_plugin": "mine"}), "constraint_plugin"),
            (
                json!({"regex": "a", "constraint_plugin": "No Pe"}),
                "constraint_plugin",
            ),
        ] {
            assert_eq!(parse_v(body.clone()).unwrap_err().field, field, "{body}");
        }
    }
}
