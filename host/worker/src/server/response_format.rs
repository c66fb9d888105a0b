//! `response_format` of the OpenAI endpoints: `{"type":"text"}` (no constraint),
//! `{"type":"json_object"}` (any JSON object) and `{"type":"json_schema","json_schema":
//! {"name","schema","strict","description"}}`, as the constraint the built-in constraint
//! plugin compiles at admission. A schema the plugin cannot enforce is a 400 naming
//! `response_format` (`strict: false` is enforced all the same: the output always validates).

use serde_json::Value;

use super::error::AppError;
use crate::job::{BUILTIN_CONSTRAINT, ConstraintSpec};

const FIELD: &str = "response_format";
/// Longest schema, as JSON text.
const MAX_SCHEMA_BYTES: usize = 256 << 10;

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
}
