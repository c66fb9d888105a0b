//! The constraint fields of the OpenAI endpoints. `response_format`: `{"type":"text"}` (no
//! constraint), `{"type":"json_object"}` (any JSON object) and `{"type":"json_schema",
//! "json_schema":{"name","schema","strict","description"}}`; `grammar` (a worker extension, as
//! llama-server's `grammar` and vLLM's `guided_grammar`): a GBNF grammar in llama.cpp's
//! notation; `constraint_plugin` (a worker extension): the constraint plugin that compiles
//! either (default: the built-in). The plugin compiles the constraint at admission; one it
//! cannot enforce is a 400 naming the field (`strict: false` is enforced all the same: the
//! output always validates).

use serde_json::Value;

use super::error::AppError;
use crate::job::{BUILTIN_CONSTRAINT, ConstraintSpec};

const FIELD: &str = "response_format";
/// Longest schema, as JSON text.
const MAX_SCHEMA_BYTES: usize = 256 << 10;

/// Longest grammar, in bytes.
const MAX_GRAMMAR_BYTES: usize = 256 << 10;
/// Longest plugin name (the plugin host's limit).
const MAX_PLUGIN_NAME: usize = 64;

/// The request's constraint from `response_format`, `grammar` (at most one of them) and
/// `constraint_plugin`.
pub fn constraint(
    response_format: Option<&Value>,
    grammar: Option<&Value>,
    constraint_plugin: Option<&Value>,
) -> Result<Option<ConstraintSpec>, AppError> {
    let format = parse(response_format)?;
    let grammar = match grammar.filter(|g| !g.is_null()) {
        None => None,
        Some(Value::String(g)) if g.is_empty() => {
            return Err(AppError::invalid("grammar", "must not be empty"));
        }
        Some(Value::String(g)) if g.len() > MAX_GRAMMAR_BYTES => {
            return Err(AppError::invalid(
                "grammar",
                format!("longer than {MAX_GRAMMAR_BYTES} bytes"),
            ));
        }
        Some(Value::String(g)) => Some(ConstraintSpec {
            plugin: BUILTIN_CONSTRAINT.into(),
            kind: "gbnf".into(),
            spec: g.clone(),
            field: "grammar".into(),
        }),
        Some(_) => return Err(AppError::invalid("grammar", "must be a string")),
    };
    let spec = match (format, grammar) {
        (Some(_), Some(_)) => {
            return Err(AppError::invalid(
                "grammar",
                "cannot be combined with a response_format other than text",
            ));
        }
        (f, g) => f.or(g),
    };
    let plugin = match constraint_plugin.filter(|p| !p.is_null()) {
        None => None,
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
            return Err(AppError::invalid(
                "constraint_plugin",
                format!("must be a plugin name (1 to {MAX_PLUGIN_NAME} of [a-z0-9_-])"),
            ));
        }
    };
    match (spec, plugin) {
        (None, Some(_)) => Err(AppError::invalid(
            "constraint_plugin",
            "names the plugin for a constraint, but the request has none (response_format or \
             grammar)",
        )),
        (Some(spec), Some(plugin)) => Ok(Some(ConstraintSpec { plugin, ..spec })),
        (spec, None) => Ok(spec),
    }
}

/// The constraint `response_format` asks for, if any.
pub fn parse(v: Option<&Value>) -> Result<Option<ConstraintSpec>, AppError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let bad = |m: &str| AppError::invalid(FIELD, m);
    let obj = v
        .as_object()
        .ok_or_else(|| bad("must be an object with a `type`"))?;
    if let Some(k) = obj
        .keys()
        .find(|k| !["type", "json_schema"].contains(&k.as_str()))
    {
        let shown: String = k.chars().take(64).collect();
        return Err(bad(&format!("unknown field `{shown}`")));
    }
    let spec = |kind: &str, spec: String| ConstraintSpec {
        plugin: BUILTIN_CONSTRAINT.into(),
        kind: kind.into(),
        spec,
        field: FIELD.into(),
    };
    match obj.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(spec("json-object", String::new()))),
        Some("json_schema") => {
            let js = obj
                .get("json_schema")
                .and_then(Value::as_object)
                .ok_or_else(|| bad("`json_schema` must be an object"))?;
            if let Some(k) = js
                .keys()
                .find(|k| !["name", "schema", "strict", "description"].contains(&k.as_str()))
            {
                let shown: String = k.chars().take(64).collect();
                return Err(bad(&format!("unknown field `json_schema.{shown}`")));
            }
            let name_ok = js.get("name").and_then(Value::as_str).is_some_and(|n| {
                !n.is_empty()
                    && n.len() <= 64
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            });
            if !name_ok {
                return Err(bad(
                    "`json_schema.name` must be 1-64 of a-z, A-Z, 0-9, _ and -",
                ));
            }
            if !matches!(js.get("strict"), None | Some(Value::Null | Value::Bool(_))) {
                return Err(bad("`json_schema.strict` must be a boolean"));
            }
            let schema = js
                .get("schema")
                .filter(|s| s.is_object() || s.is_boolean())
                .ok_or_else(|| bad("`json_schema.schema` must be a JSON Schema object"))?;
            let text = schema.to_string();
            if text.len() > MAX_SCHEMA_BYTES {
                return Err(bad(&format!(
                    "the schema is longer than {MAX_SCHEMA_BYTES} bytes"
                )));
            }
            Ok(Some(spec("json-schema", text)))
        }
        _ => Err(bad("`type` must be `text`, `json_object` or `json_schema`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shapes_and_refusals() {
        assert_eq!(parse(None).unwrap(), None);
        assert_eq!(parse(Some(&json!({"type": "text"}))).unwrap(), None);
        let o = parse(Some(&json!({"type": "json_object"})))
            .unwrap()
            .unwrap();
        assert_eq!(o.kind, "json-object");
        let s = parse(Some(&json!({"type": "json_schema", "json_schema":
            {"name": "person", "strict": true, "schema": {"type": "object"}}})))
        .unwrap()
        .unwrap();
        assert_eq!(
            (s.kind.as_str(), s.spec.as_str()),
            ("json-schema", r#"{"type":"object"}"#)
        );
        for bad in [
            json!("json"),
            json!({"type": "xml"}),
            json!({"type": "json_schema"}),
            json!({"type": "json_schema", "json_schema": {"schema": {}}}),
            json!({"type": "json_schema", "json_schema": {"name": "a b", "schema": {}}}),
            json!({"type": "json_schema", "json_schema": {"name": "a", "schema": {}, "strict": "yes"}}),
        ] {
            let e = parse(Some(&bad)).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(FIELD), "{bad}");
        }
    }

    #[test]
    fn grammar_and_constraint_plugin() {
        let g = json!("root ::= \"a\"");
        let c = constraint(None, Some(&g), None).unwrap().unwrap();
        assert_eq!(
            (c.kind.as_str(), c.field.as_str(), c.plugin.as_str()),
            ("gbnf", "grammar", BUILTIN_CONSTRAINT)
        );
        let mine = json!("mine");
        let c = constraint(Some(&json!({"type": "json_object"})), None, Some(&mine))
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.kind.as_str(), c.plugin.as_str()),
            ("json-object", "mine")
        );
        assert_eq!(constraint(None, Some(&Value::Null), None).unwrap(), None);
        for (f, g, p, field) in [
            (None, Some(json!(3)), None, "grammar"),
            (None, Some(json!("")), None, "grammar"),
            (
                Some(json!({"type": "json_object"})),
                Some(g.clone()),
                None,
                "grammar",
            ),
            (None, None, Some(mine.clone()), "constraint_plugin"),
            (
                None,
                Some(g.clone()),
                Some(json!("Not Ok")),
                "constraint_plugin",
            ),
        ] {
            let e = constraint(f.as_ref(), g.as_ref(), p.as_ref()).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{f:?} {g:?} {p:?}");
        }
    }
}
