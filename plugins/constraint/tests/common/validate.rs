//! A JSON Schema validator for the keywords the fixtures use, written from the specification
//! independently of the plugin's compiler, so a test checks outputs against the schema rather
//! than against the plugin's own reading of it.

use serde_json::Value;

/// `Err(path: why)` for the first violation of `schema` by `v`.
pub fn validate(root: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let fail = |why: &str| Err(format!("{at}: {why}"));
    let Some(s) = schema.as_object() else {
        return if schema == &Value::Bool(false) {
            fail("false schema")
        } else {
            Ok(())
        };
    };
    if let Some(Value::String(r)) = s.get("$ref") {
        let target = if r == "#" {
            root
        } else {
            root.pointer(&r[1..]).ok_or("bad ref")?
        };
        return validate(root, target, v, at);
    }
    if let Some(c) = s.get("const")
        && c != v
    {
        return fail("const");
    }
    if let Some(Value::Array(e)) = s.get("enum")
        && !e.contains(v)
    {
        return fail("enum");
    }
    if let Some(Value::Array(alts)) = s.get("anyOf")
        && !alts.iter().any(|a| validate(root, a, v, at).is_ok())
    {
        return fail("anyOf");
    }
    if let Some(t) = s.get("type") {
        let types: Vec<&str> = match t {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let ok = types.iter().any(|t| match *t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            _ => false,
        });
        if !ok {
            return fail(&format!("type {t}"));
        }
    }
    if let Some(n) = v.as_f64() {
        if s.get("minimum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n < m)
        {
            return fail("minimum");
        }
        if s.get("maximum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n > m)
        {
            return fail("maximum");
        }
    }
    if let Some(text) = v.as_str() {
        let len = text.chars().count() as u64;
        if s.get("minLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| len < m)
        {
            return fail("minLength");
        }
        if s.get("maxLength")
            .and_then(Value::as_u64)
            .is_some_and(|m| len > m)
        {
            return fail("maxLength");
        }
        if s.get("format").and_then(Value::as_str) == Some("date") {
            let b = text.as_bytes();
            let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
            let ok = b.len() == 10
                && digits(0..4)
                && b[4] == b'-'
                && digits(5..7)
                && b[7] == b'-'
                && digits(8..10);
            let month: u32 = text.get(5..7).and_then(|m| m.parse().ok()).unwrap_or(0);
            let day: u32 = text.get(8..10).and_then(|m| m.parse().ok()).unwrap_or(0);
            if !ok || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
                return fail("format date");
            }
        }
    }
    if let Some(items) = v.as_array() {
        let n = items.len() as u64;
        if s.get("minItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| n < m)
        {
            return fail("minItems");
        }
        if s.get("maxItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| n > m)
        {
            return fail("maxItems");
        }
        if let Some(item) = s.get("items") {
            for (i, x) in items.iter().enumerate() {
                validate(root, item, x, &format!("{at}[{i}]"))?;
            }
        }
    }
    if let Some(obj) = v.as_object() {
        let props = s.get("properties").and_then(Value::as_object);
        if let Some(Value::Array(req)) = s.get("required") {
            for r in req.iter().filter_map(Value::as_str) {
                if !obj.contains_key(r) {
                    return fail(&format!("required {r}"));
                }
            }
        }
        for (k, x) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(ps) => validate(root, ps, x, &format!("{at}.{k}"))?,
                None => match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => return fail(&format!("additional {k}")),
                    Some(a) => validate(root, a, x, &format!("{at}.{k}"))?,
                    None => {}
                },
            }
        }
    }
    Ok(())
}
